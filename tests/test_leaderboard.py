import json

import yaml

from search.leaderboard import leaderboard, render
from tal_core.config import load_config


def sweep_folder(root, trials):
    """A sweep folder: sweep.json and each trial's config, metrics and history."""
    (root / "trials").mkdir(parents=True)
    state = {"searched": ["train.lr"], "trials": {}}
    for trial_id, (lr, val, status) in trials.items():
        folder = root / "trials" / trial_id
        folder.mkdir()
        (folder / "config.yaml").write_text(yaml.safe_dump(load_config(None, {"train.lr": lr}).model_dump(mode="json")))
        (folder / "metrics.json").write_text(json.dumps({"val_mAP": val, "val_mAP@0.5": val + 0.1, "best_epoch": 2}))
        (folder / "history.jsonl").write_text("".join(json.dumps({"epoch": e, "epoch_seconds": 1.5}) + "\n"
                                                      for e in (1, 2)))
        state["trials"][trial_id] = {"status": status, "epochs": 2}
    (root / "sweep.json").write_text(json.dumps(state))
    return root


def test_rows_best_first_with_searched_values_and_durations(tmp_path):
    table = leaderboard(sweep_folder(tmp_path, {"a": (0.001, 0.3, "FINISHED"), "b": (0.01, 0.6, "STOPPED_EARLY")}))
    assert list(table["trial_id"]) == ["b", "a"] and list(table["train.lr"]) == [0.01, 0.001]
    assert list(table["status"]) == ["STOPPED_EARLY", "FINISHED"] and list(table["duration_s"]) == [3.0, 3.0]
    assert list(leaderboard(tmp_path, sort="train.lr")["trial_id"]) == ["b", "a"]


def test_every_format_renders_the_same_rows(tmp_path):
    table = leaderboard(sweep_folder(tmp_path, {"a": (0.001, 0.3, "FINISHED"), "b": (0.01, 0.6, "FINISHED")}))
    text = render(table, "table").splitlines()
    assert text[0].split()[:3] == ["trial_id", "status", "epochs"] and text[1].split()[0] == "b"
    assert "0.6000" in text[1]
    assert render(table, "csv").splitlines()[1].startswith("b,FINISHED")
    assert [row["trial_id"] for row in json.loads(render(table, "json"))] == ["b", "a"]


def test_refit_trials_carry_their_own_status(tmp_path):
    sweep_folder(tmp_path, {"a": (0.001, 0.3, "FINISHED")})
    (tmp_path / "trials" / "r1").mkdir()
    (tmp_path / "trials" / "r1" / "metrics.json").write_text(json.dumps({"val_mAP": 0.4}))
    (tmp_path / "refit.json").write_text(json.dumps({"trials": {"r1": {"status": "FINISHED", "epochs": 2}}}))
    table = leaderboard(tmp_path)
    assert dict(zip(table["trial_id"], table["status"], strict=True)) == {"r1": "FINISHED", "a": "FINISHED"}


def test_a_trial_that_chose_among_decodings_shows_its_choice(tmp_path):
    sweep_folder(tmp_path, {"a": (0.001, 0.3, "FINISHED"), "b": (0.01, 0.6, "FINISHED")})
    metrics = tmp_path / "trials" / "b" / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "decoding": {
        "chosen": "flicker", "val_mAP": {"config": 0.5, "flicker": 0.6}, "out_of_fold_val_mAP": 0.58}}))
    table = leaderboard(tmp_path)
    chosen = dict(zip(table["trial_id"], table["decoding"], strict=True))
    assert chosen["b"] == "flicker" and chosen["a"] != chosen["a"]  # NaN: trial a chose nothing
