"""Bad input, every command: exit 2, one line naming the cause, no traceback, nothing written outside --out.

Each case is (name, setup, argv, expected words). ``setup(tmp)`` writes what the case needs under ``tmp/in``;
``{tmp}``, ``{data}`` in argv are filled in. The command runs in-process from ``tmp/cwd`` (an empty folder
that must stay empty); any exception other than SystemExit(2) would be a bug and fails the test.
"""

import json
import os
from pathlib import Path

import pytest

from talsearch.cli import main

GT = {"taxonomy": {"actions": ["a"], "scenes": [], "views": []},
      "database": {"v": {"subset": "val", "duration": 10.0, "annotations": [{"segment": [1.0, 4.0], "label": "a"}]}}}


def write(path: Path, text) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text if isinstance(text, str) else json.dumps(text))


def gt_and(pred):
    def setup(tmp):
        write(tmp / "in" / "gt.json", GT)
        write(tmp / "in" / "pred.json", pred)
    return setup


def det(**item):
    return {"results": {"v": [{"label": "a", "score": 0.5, "segment": [1.0, 4.0], **item}]}}


def nothing(tmp):
    (tmp / "in").mkdir(parents=True, exist_ok=True)


def sweep_folder(tmp, trials=(), npz: bytes | None = None):
    (tmp / "in" / "sweep" / "trials").mkdir(parents=True)
    for trial in trials:
        write(tmp / "in" / "sweep" / "trials" / trial / "metrics.json", {"val_mAP": 0.5})
        if npz is not None:
            write(tmp / "in" / "sweep" / "trials" / trial / "predictions" / "val.npz", npz)


def run_folder(content: bytes | None):
    def setup(tmp):
        (tmp / "in" / "run").mkdir(parents=True)
        if content is not None:
            write(tmp / "in" / "run" / "last.pt", content)
    return setup


def sweep_config(text):
    return lambda tmp: write(tmp / "in" / "sweep.yaml", text)


EVAL = ["evaluate", "--gt", "{tmp}/in/gt.json", "--pred", "{tmp}/in/pred.json"]
TRAIN = ["train", "--data", "{data}", "--out", "{tmp}/out"]
SUBMIT = ["submit", "--gt", "{tmp}/in/gt.json", "--pred", "{tmp}/in/pred.json", "--subset", "val"]
ENSEMBLE = ["ensemble", "--data", "{data}", "--out", "{tmp}/out", "--sweep"]
SWEEP = ["sweep", "--data", "{data}", "--out", "{tmp}/out", "--config", "{tmp}/in/sweep.yaml"]

CASES = [
    # evaluate
    ("evaluate: ground truth missing", nothing, EVAL, ["gt.json", "not found"]),
    ("evaluate: ground truth not JSON", lambda t: write(t / "in" / "gt.json", "{oops"), EVAL, ["gt.json", "JSON"]),
    ("evaluate: ground truth not an object", lambda t: write(t / "in" / "gt.json", "[1, 2]"), EVAL, ["gt.json"]),
    ("evaluate: detections missing", lambda t: write(t / "in" / "gt.json", GT), EVAL, ["pred.json", "not found"]),
    ("evaluate: detections is a folder", lambda t: (write(t / "in" / "gt.json", GT), (t / "in" / "pred.json").mkdir()),
     EVAL, ["pred.json", "folder"]),
    ("evaluate: detections not JSON", gt_and("{nope"), EVAL, ["pred.json", "JSON"]),
    ("evaluate: results not an object", gt_and({"results": []}), EVAL, ["pred.json", "results"]),
    ("evaluate: NaN score", gt_and('{"results": {"v": [{"label": "a", "score": NaN, "segment": [1, 2]}]}}'),
     EVAL, ["results.v[0].score"]),
    ("evaluate: infinite time", gt_and('{"results": {"v": [{"label": "a", "score": 1, "segment": [1, Infinity]}]}}'),
     EVAL, ["results.v[0].segment", "finite"]),
    ("evaluate: boolean score", gt_and(det(score=True)), EVAL, ["results.v[0].score"]),
    ("evaluate: reversed segment", gt_and(det(segment=[5.0, 2.0])), EVAL, ["results.v[0].segment", "reversed"]),
    ("evaluate: segment of three", gt_and(det(segment=[1, 2, 3])), EVAL, ["results.v[0].segment"]),
    ("evaluate: label a list", gt_and(det(label=["a"])), EVAL, ["results.v[0].label"]),
    ("evaluate: subset without ground truth", gt_and(det()), [*EVAL, "--subset", "test"], ["subset 'test'"]),
    ("evaluate: tIoU above 1", gt_and(det()), [*EVAL, "--tiou", "1.5"], ["tIoU"]),
    # submit
    ("submit: --out is a folder", lambda t: (gt_and(det())(t), (t / "out").mkdir()), [*SUBMIT, "--out", "{tmp}/out"],
     ["out"]),
    ("submit: detections missing", lambda t: write(t / "in" / "gt.json", GT), [*SUBMIT, "--out", "{tmp}/out/s.csv"],
     ["pred.json"]),
    # synth
    ("synth: zero size", nothing, ["synth", "{tmp}/out", "--size", "0"], ["--size", "positive"]),
    ("synth: negative video count", nothing, ["synth", "{tmp}/out", "--videos", "-3"], ["--videos"]),
    ("synth: val share of 1.5", nothing, ["synth", "{tmp}/out", "--val-share", "1.5"], ["--val-share"]),
    ("synth: unknown preset", nothing, ["synth", "{tmp}/out", "--preset", "bogus"], ["--preset", "bogus"]),
    # weights, refit, replay, import-360x
    ("weights: checkpoint missing", nothing, ["weights", "--check", "{tmp}/in/none.pth", "--backbone", "tiny"],
     ["none.pth", "not found"]),
    ("weights: not a checkpoint", lambda t: write(t / "in" / "w.pth", "junk"),
     ["weights", "--check", "{tmp}/in/w.pth", "--backbone", "tiny"], ["w.pth", "not a readable checkpoint"]),
    ("refit: not a sweep folder", nothing, ["refit", "{tmp}/in"], ["no sweep.json"]),
    ("replay: not a sweep or a table", lambda t: write(t / "in" / "t.json", "[1, 2]"),
     ["replay", "{tmp}/in/t.json"], ["t.json", "not a replay table"]),
    ("replay: a bad reduction factor", lambda t: write(t / "in" / "t.json", "[1, 2]"),
     ["replay", "{tmp}/in", "--reduction-factor", "0"], ["--reduction-factor"]),
    ("import-360x: source missing", nothing, ["import-360x", "{tmp}/in/none", "{tmp}/out"], ["none", "scenes.csv"]),
    # train
    ("train: data folder missing", nothing, ["train", "--data", "{tmp}/in/none", "--out", "{tmp}/out"],
     ["annotations.json", "not found"]),
    ("train: unknown config key", nothing, [*TRAIN, "--set", "model.shfit=0.1"], ["model.shfit"]),
    ("train: infinite loss weight", nothing, [*TRAIN, "--set", "loss.action_weight=.inf"], ["loss.action_weight"]),
    ("train: negative learning rate", nothing, [*TRAIN, "--set", "train.lr=-1"], ["train.lr"]),
    ("train: override without =", nothing, [*TRAIN, "--set", "train.lr"], ["train.lr", "key=value"]),
    ("train: config file missing", nothing, [*TRAIN, "--config", "{tmp}/in/none.yaml"], ["none.yaml"]),
    ("train: config not a mapping", lambda t: write(t / "in" / "c.yaml", "- 1\n- 2\n"),
     [*TRAIN, "--config", "{tmp}/in/c.yaml"], ["c.yaml", "mapping"]),
    ("train: config not YAML", lambda t: write(t / "in" / "c.yaml", "a: [1, 2\n"),
     [*TRAIN, "--config", "{tmp}/in/c.yaml"], ["c.yaml", "YAML"]),
    ("train: --out is a file", lambda t: write(t / "out", "x"), TRAIN, ["is a file"]),
    ("train: --resume with nothing to resume", nothing, [*TRAIN, "--resume"], ["no run to resume"]),
    ("train: --resume from an empty last.pt", run_folder(b""),
     ["train", "--data", "{data}", "--out", "{tmp}/in/run", "--resume"], ["last.pt", "checkpoint"]),
    ("train: --resume from a truncated last.pt", run_folder(b"PK\x03\x04garbage"),
     ["train", "--data", "{data}", "--out", "{tmp}/in/run", "--resume"], ["last.pt", "checkpoint"]),
    ("train: unknown view", nothing, [*TRAIN, "--set", "data.view=top"], ["view", "top"]),
    ("train: weights file missing", nothing, [*TRAIN, "--set", "model.pretrained={tmp}/in/w.pt"],
     ["model.pretrained", "w.pt"]),
    # leaderboard
    ("leaderboard: not a sweep folder", nothing, ["leaderboard", "{tmp}/in"], ["sweep.json"]),
    ("leaderboard: unknown format", nothing, ["leaderboard", "{tmp}/in", "--format", "xml"], ["--format"]),
    # ensemble
    ("ensemble: mistyped sweep path", nothing, [*ENSEMBLE, "{tmp}/in/swep"], ["swep", "no such sweep folder"]),
    ("ensemble: folder without trials", nothing, [*ENSEMBLE, "{tmp}/in"], ["no trials folder"]),
    ("ensemble: no finished trial", lambda t: sweep_folder(t), [*ENSEMBLE, "{tmp}/in/sweep"], ["no finished trial"]),
    ("ensemble: truncated predictions", lambda t: sweep_folder(t, ["t1"], b"PK\x03\x04broken"),
     [*ENSEMBLE, "{tmp}/in/sweep"], ["t1", "val.npz"]),
    ("ensemble: unknown selection", nothing, [*ENSEMBLE, "{tmp}/in", "--selection", "best"], ["--selection"]),
    # sweep (all caught before Ray starts)
    ("sweep: unknown space key", sweep_config("space:\n  model.shfit: {type: float, low: 0, high: 1}\n"), SWEEP,
     ["model.shfit"]),
    ("sweep: range outside the key's limits", sweep_config("space:\n  model.shift_fraction: {type: float, low: 0, high: 0.9}\n"),
     SWEEP, ["model.shift_fraction"]),
    ("sweep: unknown metric", sweep_config("search: {metric: val_map}\n"), SWEEP, ["search.metric", "val_map"]),
    ("sweep: grid over a range", sweep_config("search: {sampler: grid}\nspace:\n  train.lr: {type: float, low: 0.001, high: 0.01}\n"),
     SWEEP, ["search.sampler=grid", "train.lr"]),
    ("sweep: data folder missing", sweep_config("space:\n  train.lr: {type: categorical, values: [0.001]}\n"),
     ["sweep", "--data", "{tmp}/in/none", "--out", "{tmp}/out", "--config", "{tmp}/in/sweep.yaml"], ["not found"]),
    ("sweep: no space", sweep_config("train: {epochs: 1}\n"), SWEEP, ["sweep.yaml", "no 'space' to search"]),
    # importers, ui
    ("import-activitynet: source not JSON", lambda t: write(t / "in" / "a.json", "{"),
     ["import-activitynet", "{tmp}/in/a.json", "{tmp}/in", "{tmp}/out"], ["a.json", "JSON"]),
    ("import-activitynet: no database", lambda t: write(t / "in" / "a.json", {"taxonomy": []}),
     ["import-activitynet", "{tmp}/in/a.json", "{tmp}/in", "{tmp}/out"], ["a.json", "database"]),
    ("ui: port out of range", nothing, ["ui", "--port", "70000"], ["--port", "65535"]),
    ("ui: --optuna on a folder holding no sweep", nothing, ["ui", "--optuna", "{tmp}/in", "--port", "1"],
     ["optuna.db", "no Optuna study"]),
    # the frame cache
    ("cache: no such folder", nothing, ["cache", "ls", "--dir", "{tmp}/in/missing"],
     ["missing", "no such frame cache folder"]),
    ("cache: prune without --older-than", nothing, ["cache", "prune", "--dir", "{tmp}/in"], ["--older-than"]),
]


@pytest.mark.parametrize("name, setup, argv, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_naming_the_cause(name, setup, argv, words, tmp_path, tiny_data, capsys, monkeypatch):
    setup(tmp_path)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = {p for p in tmp_path.rglob("*") if "out" not in p.relative_to(tmp_path).parts}
    args = [a.format(tmp=tmp_path, data=tiny_data) for a in argv]
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert all(word in last for word in words), last
    after = {p for p in tmp_path.rglob("*") if "out" not in p.relative_to(tmp_path).parts}
    assert after == before, sorted(str(p) for p in after - before)
    assert not os.listdir(cwd)


def test_the_corpus_covers_every_command():
    from talsearch.cli import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)
    covered = {c[2][0] for c in CASES}
    assert commands - covered <= {"demo", "ui", "import-activitynet"}, commands - covered
