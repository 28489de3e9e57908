import json
from pathlib import Path

import numpy as np
import pytest

from ensemble.align import STORAGE, align, common_grid, member_cells
from ensemble.candidates import CandidateError, collect
from ensemble.run import run_ensemble
from tal_core.data.annotations import write_annotations
from tal_core.scoring.predictions import IntervalPredictions, save_predictions

ACTIONS = ("a", "b")
DURATION = 12.0


def make_data(tmp_path, n_videos=10, seed=0):
    rng = np.random.default_rng(seed)
    database, truth = {}, {}
    for i in range(n_videos):
        start = float(rng.integers(0, 4))
        segs = [(start, start + 3.0, "a"), (start + 5.0, start + 8.0, "b")]
        truth[f"v{i}"] = segs
        database[f"v{i}"] = {"subset": "val", "duration": DURATION, "scene": None, "views": {"front": "x.mp4"},
                             "annotations": [{"segment": [s, e], "label": lbl} for s, e, lbl in segs]}
    write_annotations({"taxonomy": {"actions": list(ACTIONS), "scenes": [], "views": ["front"]},
                       "database": database}, tmp_path / "data")
    return truth


def member_probs(truth, interval, good_on, rng, noise=0.0, late=0.0):
    """Interval probabilities that know the truth for classes in good_on, else guess background; the first and
    last ``late`` seconds of every action look like background."""
    starts = np.arange(0, DURATION, interval)
    ends = np.minimum(starts + interval, DURATION)
    probs = np.zeros((len(starts), 3))
    probs[:, 0] = 1.0
    for s, e, label in truth:
        k = ACTIONS.index(label) + 1
        inside = (starts >= s + late) & (ends <= e - late)
        probs[inside] = 0.0
        if label in good_on:
            probs[inside, k] = 1.0
        else:  # unsure: background a little above the actions
            probs[inside] = [0.4, 0.3, 0.3]
    probs = (1 - noise) * probs + noise * rng.dirichlet(np.ones(3), size=len(starts))
    return starts, ends, probs / probs.sum(axis=1, keepdims=True)


def write_member(sweep, name, truth, interval, good_on, noise, seed, val_map=0.5, late=0.0, modalities=None):
    rng = np.random.default_rng(seed)
    vids = sorted(truth)
    parts = [member_probs(truth[v], interval, good_on, rng, noise, late) for v in vids]
    config = {} if modalities is None else {"data.modalities": modalities}
    meta = {"actions": list(ACTIONS), "scenes": [], "interval_seconds": interval, "config": config}
    pred = IntervalPredictions.from_videos(vids, [p[0] for p in parts], [p[1] for p in parts],
                                           [p[2] for p in parts], np.zeros((len(vids), 0)), meta)
    save_predictions(pred, sweep / "trials" / name / "predictions" / "val.npz")
    (sweep / "trials" / name / "metrics.json").write_text(json.dumps({"val_mAP": val_map}))


def test_mixed_interval_lengths_align_exactly():
    grid = common_grid([(np.array([0.0, 1.0, 2.0]), np.array([1.0, 2.0, 2.5])),
                        (np.array([0.0, 1.5]), np.array([1.5, 2.5]))])
    assert grid[0].tolist() == [0.0, 1.0, 1.5, 2.0] and grid[1].tolist() == [1.0, 1.5, 2.0, 2.5]
    assert member_cells(np.array([0.0, 1.5]), np.array([1.5, 2.5]), grid[0]).tolist() == [0, 0, 1, 1]


def test_complementary_members_beat_either_and_noise_gets_no_weight(tmp_path):
    truth = make_data(tmp_path)
    sweep = tmp_path / "sweep"
    write_member(sweep, "good_a", truth, 1.0, {"a"}, 0.05, 1)
    write_member(sweep, "good_b", truth, 0.5, {"b"}, 0.05, 2)
    write_member(sweep, "noise", truth, 1.0, set(), 1.0, 3)
    result = run_ensemble(str(sweep), tmp_path / "data", tmp_path / "out", overrides=["eval.decode=merge", f"tracking.uri=sqlite:///{tmp_path}/m.db"],
                          folds=3)
    spec = json.loads((tmp_path / "out" / "ensemble.json").read_text())
    weights = {m["run_id"]: m["weight"] for m in spec["members"]}
    assert weights.get("noise", 0.0) < 0.05
    assert {"good_a", "good_b"} <= set(weights)
    assert result["ensemble"]["val_mAP"] > result["best_single"]["val_mAP"] + 0.2
    assert result["ensemble"]["oof_val_mAP"] >= result["best_single"]["oof_val_mAP"]
    # the nested figure chooses the procedure inside each outer fold: still well above any single member
    assert result["best_single"]["oof_val_mAP"] + 0.1 < result["ensemble"]["nested_oof_val_mAP"] <= 1.0
    # the gain is that difference, with a bootstrap interval over the val videos that stays above zero
    gain = json.loads((tmp_path / "out" / "metrics.json").read_text())["gain"]
    assert gain["mAP"] == pytest.approx(result["ensemble"]["nested_oof_val_mAP"] - result["best_single"]["oof_val_mAP"])
    assert 0 < gain["low"] <= gain["mAP"] <= gain["high"] and gain["level"] == 0.9
    assert set(result["ensemble"]["per_class_AP"]) == {"a", "b"}
    assert abs(sum(weights.values()) - 1) < 1e-9
    # the written detections reproduce the reported val mAP
    from tal_core.data.annotations import load_ground_truth
    from tal_core.scoring.formats import ground_truth_segments, read_detections
    from tal_core.scoring.metrics import average_precision

    gt = ground_truth_segments(load_ground_truth(tmp_path / "data"), "val")
    again = average_precision(gt, read_detections(tmp_path / "out" / "detections" / "val.json"))
    assert again.mean == pytest.approx(result["ensemble"]["val_mAP"])


def test_two_sweeps_are_ensembled_together_and_a_trial_in_both_is_refused(tmp_path):
    """``--sweep A B``: the trials of both are candidates (e.g. a video sweep and an audio sweep); the members
    that complement each other come from both; a trial name in both sweeps stops it, naming both."""
    import subprocess

    from helpers import TALSEARCH

    truth = make_data(tmp_path)
    write_member(tmp_path / "seen", "good_a", truth, 1.0, {"a"}, 0.05, 1)
    write_member(tmp_path / "heard", "good_b", truth, 0.5, {"b"}, 0.05, 2)
    done = subprocess.run([*TALSEARCH, "ensemble", "--sweep", str(tmp_path / "seen"), str(tmp_path / "heard"),
                           "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--folds", "3",
                           "--set", "eval.decode=merge", f"tracking.uri=sqlite:///{tmp_path}/m.db"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    spec = json.loads((tmp_path / "out" / "ensemble.json").read_text())
    assert spec["sweep"] == str(tmp_path / "seen") and spec["sweeps"] == [str(tmp_path / "seen"), str(tmp_path / "heard")]
    sources = {m["run_id"]: Path(m["source"]).parent.parent.name for m in spec["members"]}
    assert sources == {"good_a": "seen", "good_b": "heard"}
    write_member(tmp_path / "heard", "good_a", truth, 1.0, {"a"}, 0.05, 1)
    with pytest.raises(CandidateError, match=r"trial good_a is in both .*seen and .*heard"):
        collect([str(tmp_path / "seen"), str(tmp_path / "heard")], "", tmp_path)


def test_with_one_strong_member_the_default_fuses_nothing_and_says_why(tmp_path, caplog):
    """The second-trial gate through run_ensemble: a trial that knows class a (noise 0.4) and a noisier one that
    knows both (noise 0.7; between 0.4 and 0.65 of the first's mAP): under the default share 0.65 no fusion is
    fitted, in no fold; with the gate off (share 0) the fusions are fitted."""
    import logging

    truth = make_data(tmp_path)
    sweep = tmp_path / "sweep"
    write_member(sweep, "knows_both", truth, 1.0, {"a", "b"}, 0.7, 1)
    write_member(sweep, "knows_a", truth, 0.5, {"a"}, 0.4, 2)
    overrides = ["eval.decode=merge", f"tracking.uri=sqlite:///{tmp_path}/m.db"]
    with caplog.at_level(logging.INFO, logger="talsearch.ensemble"):
        gated = run_ensemble(str(sweep), tmp_path / "data", tmp_path / "gated", folds=3, overrides=overrides)
    assert gated["second_trial_share"] == 0.65 and gated["ensemble"]["procedure"].startswith("best_single")
    assert len(set(gated["oof_val_mAP_by_procedure"].values())) == 1  # every fusion is the best single
    assert gated["gain"]["mAP"] == 0.0 and not gated["ensemble"]["second_trial_strong"]
    assert "one strong member: no other trial reaches 0.65" in caplog.text
    metrics = json.loads((tmp_path / "gated" / "metrics.json").read_text())
    assert metrics["second_trial_share"] == 0.65
    opened = run_ensemble(str(sweep), tmp_path / "data", tmp_path / "open", folds=3, overrides=overrides,
                          second_trial_share=0.0)
    assert opened["second_trial_share"] == 0.0 and len(set(opened["oof_val_mAP_by_procedure"].values())) > 2
    assert opened["ensemble"]["second_trial_strong"]
    from tal_core.errors import UserError

    with pytest.raises(UserError, match="second_trial_share 1.0: must lie in"):
        run_ensemble(str(sweep), tmp_path / "data", tmp_path / "bad", overrides=overrides, second_trial_share=1.0)
    assert not (tmp_path / "bad").exists()


def test_a_fusion_short_of_the_margin_leaves_the_best_single_member(tmp_path):
    truth = make_data(tmp_path)
    sweep = tmp_path / "sweep"
    write_member(sweep, "good_a", truth, 1.0, {"a"}, 0.05, 1)
    write_member(sweep, "good_b", truth, 0.5, {"b"}, 0.05, 2)
    result = run_ensemble(str(sweep), tmp_path / "data", tmp_path / "out", folds=3, min_gain=0.9,
                          overrides=["eval.decode=merge", f"tracking.uri=sqlite:///{tmp_path}/m.db"])
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["ensemble"]["procedure"] == "best_single" and metrics["min_gain"] == 0.9
    # the nested figure applies the same margin inside every outer fold: the recipe is the best single member
    assert metrics["gain"]["mAP"] == 0.0 and metrics["gain"]["low"] == metrics["gain"]["high"] == 0.0
    assert result["ensemble"]["val_mAP"] == pytest.approx(result["best_single"]["val_mAP"])
    members = json.loads((tmp_path / "out" / "ensemble.json").read_text())["members"]
    assert [m["run_id"] for m in members] == [result["best_single"]["run_id"]]


def test_mismatched_members_name_the_trial(tmp_path):
    truth = make_data(tmp_path)
    sweep = tmp_path / "sweep"
    write_member(sweep, "one", truth, 1.0, {"a"}, 0.1, 1)
    write_member(sweep, "two", {k: v for k, v in list(truth.items())[:-1]}, 1.0, {"a"}, 0.1, 1)
    with pytest.raises(CandidateError, match="trial two"):
        collect(str(sweep), "", tmp_path)


def test_empty_sweep_is_a_clear_error(tmp_path):
    (tmp_path / "trials").mkdir()
    with pytest.raises(CandidateError, match="no finished trial"):
        collect(str(tmp_path), "", tmp_path)


def test_align_keeps_member_probabilities(tmp_path):
    truth = make_data(tmp_path, n_videos=2)
    sweep = tmp_path / "sweep"
    write_member(sweep, "m1", truth, 1.0, {"a"}, 0.1, 1)
    write_member(sweep, "m2", truth, 0.75, {"b"}, 0.1, 2)
    cands = collect(str(sweep), "", tmp_path)
    videos = align([c.val for c in cands])
    starts, _, probs = cands[0].val.video(0)
    cell = videos[0]
    index = np.searchsorted(starts, cell.starts, side="right") - 1
    # stored as float16: each cell holds its interval's probabilities rounded to float16, exactly
    assert cell.probs.dtype == STORAGE and np.array_equal(cell.probs[0], probs[index].astype(STORAGE))
    assert np.array_equal(align([c.val for c in cands], np.float32)[0].probs[0], probs[index])


def frame_member_probs(truth, interval, cells, rng, noise=0.0):
    """Per-frame style cells (``cells`` per interval) that know every boundary to the cell."""
    starts = np.arange(0, DURATION, interval / cells)
    ends = starts + interval / cells
    probs = np.zeros((len(starts), 3))
    probs[:, 0] = 1.0
    for s, e, label in truth:
        inside = (starts >= s - 1e-9) & (ends <= e + 1e-9)
        probs[inside] = 0.0
        probs[inside, ACTIONS.index(label) + 1] = 1.0
    probs = (1 - noise) * probs + noise * rng.dirichlet(np.ones(3), size=len(starts))
    return starts, ends, probs / probs.sum(axis=1, keepdims=True)


def test_frame_and_interval_members_fuse_exactly(tmp_path):
    truth = {f"v{i}": [(1.25 + i * 0.25, 4.5 + i * 0.25, "a"), (6.75, 9.25, "b")] for i in range(4)}
    database = {v: {"subset": "val", "duration": DURATION, "scene": None, "views": {"front": "x.mp4"},
                    "annotations": [{"segment": [s, e], "label": lbl} for s, e, lbl in segs]}
                for v, segs in truth.items()}
    write_annotations({"taxonomy": {"actions": list(ACTIONS), "scenes": [], "views": ["front"]},
                       "database": database}, tmp_path / "data")
    rng = np.random.default_rng(0)
    vids = sorted(truth)
    sweep = tmp_path / "sweep"
    for name, maker in (("interval", lambda t: member_probs(t, 1.0, {"a", "b"}, rng, 0.05)),
                        ("frame", lambda t: frame_member_probs(t, 2.0, 8, rng, 0.05))):
        parts = [maker(truth[v]) for v in vids]
        meta = {"actions": list(ACTIONS), "scenes": [], "interval_seconds": 1.0 if name == "interval" else 2.0,
                "cells": name, "config": {}}
        pred = IntervalPredictions.from_videos(vids, [p[0] for p in parts], [p[1] for p in parts],
                                               [p[2] for p in parts], np.zeros((len(vids), 0)), meta)
        save_predictions(pred, sweep / "trials" / name / "predictions" / "val.npz")
        (sweep / "trials" / name / "metrics.json").write_text(json.dumps({"val_mAP": 0.5}))
    cands = collect(str(sweep), "", tmp_path)
    videos = align([c.val for c in cands])
    for c, member_probs_on_grid in zip(cands, videos[0].probs, strict=True):
        starts, ends, probs = c.val.video(0)
        # every common cell lies inside exactly one cell of each member and carries its probabilities
        index = np.searchsorted(starts, videos[0].starts + 1e-9, side="right") - 1
        assert np.all(starts[index] <= videos[0].starts + 1e-9) and np.all(videos[0].ends <= ends[index] + 1e-9)
        assert np.array_equal(member_probs_on_grid, probs[index].astype(STORAGE))
    assert np.allclose(np.diff(videos[0].starts).min(), 0.25)
    result = run_ensemble(str(sweep), tmp_path / "data", tmp_path / "out",
                          overrides=["eval.decode=merge", f"tracking.uri=sqlite:///{tmp_path}/m.db"], folds=2)
    # the frame member knows the quarter-second boundaries: it wins at tIoU 0.95 where the 1 s grid cannot
    frame_alone = result["best_single"]
    assert frame_alone["run_id"] == "frame" and frame_alone["val_mAP@0.95"] == pytest.approx(1.0)


def test_rerun_into_the_same_folder_leaves_nothing_of_the_previous_run(tmp_path):
    truth = make_data(tmp_path, n_videos=4)
    sweep = tmp_path / "sweep"
    write_member(sweep, "m1", truth, 1.0, {"a", "b"}, 0.05, 1)
    out = tmp_path / "out"
    (out / "detections").mkdir(parents=True)
    (out / "submission.csv").write_text("stale")
    (out / "detections" / "test.json").write_text("stale")
    run_ensemble(str(sweep), tmp_path / "data", out, overrides=["eval.decode=merge",
                                                                f"tracking.uri=sqlite:///{tmp_path}/m.db"], folds=2)
    assert not (out / "submission.csv").exists() and not (out / "detections" / "test.json").exists()
    assert (out / "ensemble.json").exists() and (out / "detections" / "val.json").exists()


def test_the_ensemble_decodes_as_its_best_member_chose_and_keeps_no_alternatives(tmp_path):
    from ensemble.candidates import Candidate
    from ensemble.run import with_member_decoding
    from tal_core.config import Config, load_config

    config = tmp_path / "sweep.yaml"  # the sweep's config lists a second decoding; its trial chose that one
    config.write_text("eval:\n  decode: merge\n  alternatives:\n    flicker: {decode: multithreshold, smooth: mean}\n")
    chosen = Config().with_overrides({"eval.decode": "multithreshold", "eval.smooth": "mean", "model.output": "frame",
                                      "eval.grid_offsets": [0.5], "eval.frame_phases": 2}).flat()
    best = Candidate("t1", None, None, 0.5, chosen, "t1")
    cfg = with_member_decoding(load_config(config), best, config, {})
    assert cfg.eval.alternatives == {} and cfg.eval.smooth == "mean"
    assert cfg.eval.decode == "merge"  # a key the ensemble's own config sets stays as it sets it
    assert cfg.eval.grid_offsets == () and cfg.eval.frame_phases == 1  # how the member predicted is its own


def test_the_gain_is_reported_for_other_draws_of_the_folds(tmp_path):
    truth = make_data(tmp_path)
    sweep = tmp_path / "sweep"
    write_member(sweep, "good_a", truth, 1.0, {"a"}, 0.05, 1)
    write_member(sweep, "good_b", truth, 0.5, {"b"}, 0.3, 2)
    write_member(sweep, "half", truth, 1.0, {"a", "b"}, 0.6, 3)
    options = dict(folds=3, overrides=["eval.decode=merge", f"tracking.uri=sqlite:///{tmp_path}/m.db"])
    result = run_ensemble(str(sweep), tmp_path / "data", tmp_path / "out", fold_seeds=3, **options)
    gain = json.loads((tmp_path / "out" / "metrics.json").read_text())["gain"]
    assert [row["seed"] for row in gain["by_fold_seed"]] == [0, 1, 2]
    assert gain["by_fold_seed"][0]["mAP"] == pytest.approx(gain["mAP"]) == pytest.approx(result["gain"]["mAP"])
    values = [row["mAP"] for row in gain["by_fold_seed"]]
    assert gain["fold_seed_min"] == min(values) <= gain["fold_seed_mean"] <= max(values) == gain["fold_seed_max"]
    # each fold seed's figure is the gain that run gets with that seed
    again = run_ensemble(str(sweep), tmp_path / "data", tmp_path / "again", seed=2, **options)
    assert gain["by_fold_seed"][2]["mAP"] == pytest.approx(again["gain"]["mAP"])
    assert "by_fold_seed" not in again["gain"]


def test_edges_every_member_misses_alike_are_moved_back_by_the_boundary_offsets(tmp_path):
    truth = make_data(tmp_path)
    sweep = tmp_path / "sweep"
    for seed in (1, 2):  # both members see every action half a second late and lose it half a second early
        write_member(sweep, f"late{seed}", truth, 0.5, {"a", "b"}, 0.05, seed, late=0.5)
    options = dict(folds=3, overrides=["eval.decode=merge", f"tracking.uri=sqlite:///{tmp_path}/m.db"])
    result = run_ensemble(str(sweep), tmp_path / "data", tmp_path / "out", **options)
    offsets = {"a": {"start": 0.5, "end": -0.5}, "b": {"start": 0.5, "end": -0.5}}
    assert result["ensemble"]["boundary_offsets"] == offsets and result["boundary_offsets"] == "class"
    assert json.loads((tmp_path / "out" / "ensemble.json").read_text())["boundary_offsets"] == offsets
    # fitted on training folds only, the offsets put every held-out edge on the truth: every tIoU threshold met
    assert result["ensemble"]["nested_oof_val_mAP"] == pytest.approx(1.0)
    # the best single member as it was trained finds every action at tIoU 2/3 only: mAP@0.5 alone
    assert result["best_single"]["oof_val_mAP"] == pytest.approx(1 / 3)
    assert result["best_single"]["oof_val_mAP_with_boundary_offsets"] == pytest.approx(1.0)
    gain = result["gain"]
    assert gain["mAP"] == pytest.approx(2 / 3) and gain["boundary_offsets_alone"]["mAP"] == pytest.approx(2 / 3)
    # the written detections carry the moved edges
    found = json.loads((tmp_path / "out" / "detections" / "val.json").read_text())["results"]
    assert all([s, e] in [row["segment"] for row in found[v]] for v in truth for s, e, _ in truth[v])
    # --boundary-offsets none: the edges stay, the baseline is the same
    plain = run_ensemble(str(sweep), tmp_path / "data", tmp_path / "plain", boundary_offsets=False, **options)
    assert plain["ensemble"]["boundary_offsets"] == {} and plain["boundary_offsets"] == "none"
    assert plain["ensemble"]["nested_oof_val_mAP"] == pytest.approx(1 / 3)
    assert plain["best_single"]["oof_val_mAP"] == result["best_single"]["oof_val_mAP"]
    assert "boundary_offsets_alone" not in plain["gain"] and "oof_val_mAP_with_boundary_offsets" not in plain["best_single"]


def test_a_trials_own_snapshots_are_no_ensemble_by_default_but_a_second_trial_is(tmp_path):
    """One trial knows a, its snapshot (another epoch of it) knows b: their fusion would find both. By default
    ("cv") a fusion must span two trials, so the ensemble is the best single member as trained (every procedure
    falls back to it); named, the fusion is fitted as it is; beside a second trial fusions count again."""
    truth = make_data(tmp_path)
    sweep = tmp_path / "sweep"
    write_member(sweep, "solo", truth, 1.0, {"a"}, 0.05, 1)
    write_member(sweep, "solo/snapshots/epoch_3", truth, 1.0, {"b"}, 0.05, 2)
    options = dict(folds=3, overrides=["eval.decode=merge", f"tracking.uri=sqlite:///{tmp_path}/m.db"])
    result = run_ensemble(str(sweep), tmp_path / "data", tmp_path / "out", **options)
    assert result["ensemble"]["procedure"] == "best_single" and result["gain"]["mAP"] == 0.0
    members = json.loads((tmp_path / "out" / "ensemble.json").read_text())["members"]
    assert len(members) == 1 and members[0]["run_id"] in ("solo", "solo@e3")
    oof = result["oof_val_mAP_by_procedure"]
    assert oof["greedy+refine"] == oof["top3_average"] == oof["cmaes"] == result["best_single"]["oof_val_mAP"]
    named = run_ensemble(str(sweep), tmp_path / "data", tmp_path / "named", selection="greedy+refine", **options)
    named_members = json.loads((tmp_path / "named" / "ensemble.json").read_text())["members"]
    assert {m["run_id"] for m in named_members} >= {"solo", "solo@e3"} and not named["ensemble"]["fell_back_to_best_single"]
    assert named["gain"]["mAP"] > 0.2
    # with no margin the fusion ties the best single out of fold (it is the best single in every fold) and is
    # chosen: its final fit falls back, and metrics.json says so
    tied = run_ensemble(str(sweep), tmp_path / "data", tmp_path / "tied", **{**options, "min_gain": 0.0})
    assert tied["ensemble"]["procedure"] != "best_single" and tied["ensemble"]["fell_back_to_best_single"] is True
    assert tied["gain"]["mAP"] == 0.0
    write_member(sweep, "other", truth, 0.5, {"b"}, 0.3, 4)  # a second trial that knows b, less surely
    beside = run_ensemble(str(sweep), tmp_path / "data", tmp_path / "beside", **options)
    assert beside["ensemble"]["procedure"].removesuffix("+offsets") != "best_single" and beside["gain"]["mAP"] > 0.2
    beside_members = json.loads((tmp_path / "beside" / "ensemble.json").read_text())["members"]
    assert "other" in {m["run_id"] for m in beside_members}


def noise_and_specialists(tmp_path, *more) -> tuple[Path, dict]:
    """A sweep of a noise trial (first by name, so members after it are re-indexed on test), one trial that
    knows a, one that knows b, and ``more`` (name, good_on, noise, seed); test predictions the val ones again, so
    test = val detections. Returns the sweep and run_ensemble's options."""
    import shutil

    truth = make_data(tmp_path)
    sweep = tmp_path / "sweep"
    write_member(sweep, "a_noise", truth, 1.0, set(), 1.0, 3, val_map=0.9)
    write_member(sweep, "good_a", truth, 1.0, {"a"}, 0.05, 1)
    write_member(sweep, "good_b", truth, 0.5, {"b"}, 0.05, 2)
    for name, good_on, noise, seed in more:
        write_member(sweep, name, truth, 1.0 if "a" in good_on else 0.5, good_on, noise, seed)
    for trial in (sweep / "trials").iterdir():
        shutil.copy(trial / "predictions" / "val.npz", trial / "predictions" / "test.npz")
    return sweep, {"overrides": ["eval.decode=merge", f"tracking.uri=sqlite:///{tmp_path}/m.db"], "folds": 3}


def test_classwise_takes_each_class_from_its_member_on_val_and_test(tmp_path):
    sweep, options = noise_and_specialists(tmp_path)
    result = run_ensemble(str(sweep), tmp_path / "data", tmp_path / "out", selection="classwise", **options)
    spec = json.loads((tmp_path / "out" / "ensemble.json").read_text())
    assert spec["fusion"] == "classwise" and spec["class_members"] == {"a": "good_a", "b": "good_b"}
    assert {m["run_id"]: m["weight"] for m in spec["members"]} == {"good_a": 0.5, "good_b": 0.5}
    assert result["ensemble"]["procedure"] == "classwise"
    assert result["ensemble"]["val_mAP"] > result["best_single"]["val_mAP"] + 0.2
    assert result["gain"]["mAP"] > 0.1  # classwise's out-of-fold figure, named beforehand, over the best single's
    val = json.loads((tmp_path / "out" / "detections" / "val.json").read_text())
    test = json.loads((tmp_path / "out" / "detections" / "test.json").read_text())
    assert test == val and (tmp_path / "out" / "submission.csv").exists()
    default = run_ensemble(str(sweep), tmp_path / "data", tmp_path / "cv", **options)
    assert default["selection"] == "cv"
    assert not any(name.startswith("classwise") for name in default["oof_val_mAP_by_procedure"])  # opt-in only
    assert not any(name.startswith("classmix") for name in default["oof_val_mAP_by_procedure"])  # one modality
    mixed = run_ensemble(str(sweep), tmp_path / "data", tmp_path / "mix", selection="classmix", **options)
    spec = json.loads((tmp_path / "mix" / "ensemble.json").read_text())
    assert mixed["ensemble"]["procedure"] == "classmix" and spec["fusion"] == "classmix"
    assert set(spec["class_weights"]) == {"background", "a", "b"}
    assert all(sum(by_run.values()) == pytest.approx(1.0) for by_run in spec["class_weights"].values())
    assert spec["class_weights"]["a"].get("good_a", 0) > 0 and spec["class_weights"]["b"].get("good_b", 0) > 0
    assert mixed["ensemble"]["val_mAP"] > mixed["best_single"]["val_mAP"] + 0.2
    val = json.loads((tmp_path / "mix" / "detections" / "val.json").read_text())
    assert json.loads((tmp_path / "mix" / "detections" / "test.json").read_text()) == val  # test members re-indexed


def test_the_default_over_trials_of_two_modalities_is_classmix(tmp_path):
    """Trials of two modalities (their configs' data.modalities): the default selection is classmix (named, so
    its out-of-fold figure is the nested one); trials of one modality (test above) keep ``cv``."""
    truth = make_data(tmp_path)
    sweep = tmp_path / "sweep"
    write_member(sweep, "pictures", truth, 1.0, {"a"}, 0.05, 1, modalities="video")
    write_member(sweep, "sound", truth, 0.5, {"b"}, 0.05, 2, modalities="audio")
    result = run_ensemble(str(sweep), tmp_path / "data", tmp_path / "out", folds=3,
                          overrides=["eval.decode=merge", f"tracking.uri=sqlite:///{tmp_path}/m.db"])
    assert result["selection"] == "classmix" and result["ensemble"]["procedure"].startswith("classmix")
    assert result["ensemble"]["nested_oof_val_mAP"] == result["oof_val_mAP_by_procedure"][result["ensemble"]["procedure"]]
    assert result["gain"]["mAP"] > 0.2  # each class from the trial that tells it, out of fold
    spec = json.loads((tmp_path / "out" / "ensemble.json").read_text())
    assert spec["fusion"] == "classmix" and spec["class_weights"]["b"].get("sound", 0) > 0


def test_stacked_writes_its_regression_and_applies_it_to_test_members(tmp_path, monkeypatch):
    """Five trials, a stacker of four (the screened ones): the noise trial, first by name and left out, makes the
    test-split members re-indexed."""
    monkeypatch.setattr("ensemble.select.STACK_MEMBERS", 4)
    sweep, options = noise_and_specialists(tmp_path, ("mid_a", {"a"}, 0.3, 4), ("mid_b", {"b"}, 0.3, 5))
    result = run_ensemble(str(sweep), tmp_path / "data", tmp_path / "out", selection="stacked", **options)
    spec = json.loads((tmp_path / "out" / "ensemble.json").read_text())
    assert spec["fusion"] == "stacked" and result["ensemble"]["procedure"].startswith("stacked")
    stacker = spec["stacker"]
    assert len(stacker["members"]) == 4 and "a_noise" not in stacker["members"]
    assert stacker["members"][0] == result["best_single"]["run_id"] and stacker["columns"] == ["background", "a", "b"]
    assert np.array(stacker["coefficients"]).shape == (4 * 3, 3) and len(stacker["intercept"]) == 3
    assert {m["run_id"] for m in spec["members"]} == set(stacker["members"])
    assert result["ensemble"]["stacker"] == {"members": stacker["members"]}  # metrics.json: no coefficients
    assert result["ensemble"]["val_mAP"] > result["best_single"]["val_mAP"] + 0.2 and result["gain"]["mAP"] > 0.1
    val = json.loads((tmp_path / "out" / "detections" / "val.json").read_text())
    assert json.loads((tmp_path / "out" / "detections" / "test.json").read_text()) == val  # re-indexed members
