import gc
import json
import subprocess
import sys

import pytest

from helpers import TINY_OVERRIDES
from talsearch.cli import main

TALSEARCH = [sys.executable, "-m", "talsearch.cli"]


def run_cli(*args):
    return subprocess.run([*TALSEARCH, *args], capture_output=True, text=True, timeout=600)


def test_train_then_evaluate_and_submit(tiny_data, tmp_path):
    sets = [f"{k}={v}" for k, v in TINY_OVERRIDES.items()]
    done = run_cli("train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--set", *sets)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert "val_mAP" in result and "epoch 1/1" in done.stderr
    ev = run_cli("evaluate", "--gt", str(tiny_data / "annotations.json"), "--pred",
                 str(tmp_path / "run" / "detections" / "val.json"))
    assert ev.returncode == 0, ev.stderr
    scores = json.loads(ev.stdout)
    assert set(scores) == {"mAP@0.5", "mAP@0.75", "mAP@0.95", "mAP", "per_class"}
    assert scores["mAP"] == pytest.approx(result["val_mAP"])
    sub = run_cli("submit", "--gt", str(tiny_data / "annotations.json"), "--pred",
                  str(tmp_path / "run" / "detections" / "test.json"), "--out", str(tmp_path / "s.csv"))
    assert sub.returncode == 0 and (tmp_path / "s.csv").read_text().splitlines()[0] == "id,prediction"
    again = run_cli("train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--set", *sets)
    assert again.returncode != 0 and "--resume" in again.stderr


def test_evaluate_needs_only_annotations(tmp_path, capsys):
    gt = {"taxonomy": {"actions": ["a"], "scenes": [], "views": ["front"]},
          "database": {"v": {"subset": "val", "duration": 10, "views": {"front": "gone.mp4"},
                             "annotations": [{"segment": [0, 5], "label": "a"}]}}}
    (tmp_path / "annotations.json").write_text(json.dumps(gt))
    (tmp_path / "d.json").write_text(json.dumps({"results": {"v": [{"label": "a", "score": 1, "segment": [0, 5]}]}}))
    assert gc.isenabled()
    assert main(["evaluate", "--gt", str(tmp_path / "annotations.json"), "--pred", str(tmp_path / "d.json")]) == 0
    assert json.loads(capsys.readouterr().out)["mAP"] == 1.0
    assert gc.isenabled()  # evaluate turns the collector off for itself only
    assert main(["evaluate", "--gt", str(tmp_path / "annotations.json"), "--pred", str(tmp_path / "gone.json")]) == 2
    assert gc.isenabled()  # also when it fails


def test_bad_config_exits_nonzero_naming_key(tiny_data, tmp_path, capsys):
    code = main(["train", "--data", str(tiny_data), "--out", str(tmp_path), "--set", "model.shift_fraction=0.9"])
    assert code == 2 and "model.shift_fraction" in capsys.readouterr().err


def test_set_accepts_several_pairs_and_repeats(tiny_data, tmp_path, capsys):
    code = main(["train", "--data", str(tiny_data), "--out", str(tmp_path), "--set", "train.epochs=1",
                 "data.image_size=32", "--set", "model.tiny_width=8", "data.frames_per_interval=2",
                 "--set", "train.lr=-1"])
    assert code == 2 and "train.lr" in capsys.readouterr().err


def test_evaluate_scores_annotations_without_views(tmp_path, capsys):
    gt = {"taxonomy": {"actions": ["a"], "scenes": [], "views": []},
          "database": {"v": {"subset": "val", "duration": 10, "annotations": [{"segment": [0, 5], "label": "a"}]}}}
    (tmp_path / "annotations.json").write_text(json.dumps(gt))
    (tmp_path / "d.json").write_text(json.dumps({"results": {"v": [{"label": "a", "score": 1, "segment": [0, 5]}],
                                                             "elsewhere": [{"label": "a", "score": 1,
                                                                            "segment": [0, 5]}]}}))
    assert main(["evaluate", "--gt", str(tmp_path / "annotations.json"), "--pred", str(tmp_path / "d.json")]) == 0
    out, err = capsys.readouterr()
    # the prediction for a video without ground truth is a false positive (after the true one: equal scores
    # keep file order) and is counted in a warning
    assert json.loads(out)["mAP"] == 1.0 and "1 prediction(s) for 1 video(s) not in subset 'val'" in err


ACTIVITYNET = {
    "version": "VERSION 1.3",
    "taxonomy": [{"nodeId": 0, "nodeName": "Root", "parentId": None, "parentName": None},
                 {"nodeId": 1, "nodeName": "Sports", "parentId": 0, "parentName": "Root"},
                 {"nodeId": 2, "nodeName": "Long jump", "parentId": 1, "parentName": "Sports"},
                 {"nodeId": 3, "nodeName": "Surfing", "parentId": 1, "parentName": "Sports"}],
    "database": {
        "v_a": {"subset": "validation", "duration": 20.0, "resolution": "640x360", "url": "https://x/v_a",
                "annotations": [{"segment": [2.0, 8.0], "label": "Long jump"}]},
        "v_b": {"subset": "training", "duration": 30.0, "resolution": "640x360", "url": "https://x/v_b",
                "annotations": [{"segment": [1.0, 4.0], "label": "Surfing"}]},
        "v_c": {"subset": "testing", "duration": 30.0, "resolution": "640x360", "url": "https://x/v_c",
                "annotations": []}}}


def test_evaluate_reads_activitynet_as_published(tmp_path, capsys):
    (tmp_path / "anet.json").write_text(json.dumps(ACTIVITYNET))
    (tmp_path / "d.json").write_text(json.dumps({"results": {
        "v_a": [{"label": "Long jump", "score": 0.9, "segment": [2.0, 8.0]}],
        "v_b": [{"label": "Surfing", "score": 0.9, "segment": [1.0, 2.0]}]}}))
    args = ["evaluate", "--gt", str(tmp_path / "anet.json"), "--pred", str(tmp_path / "d.json")]
    assert main([*args, "--subset", "validation"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mAP"] == 1.0 and list(result["per_class"]) == ["Long jump"]
    assert main([*args, "--subset", "training"]) == 0
    assert json.loads(capsys.readouterr().out)["mAP@0.5"] == 0.0  # 1 s of a 3 s segment


def test_evaluate_keeps_zero_length_and_past_duration_ground_truth_as_the_activitynet_scorer(tmp_path, capsys):
    import copy

    from helpers import load_benchmark
    from tal_core.scoring.metrics import Segments

    anet = copy.deepcopy(ACTIVITYNET)  # as published: [0, 0] annotations (activitynet/ActivityNet#56), ends past
    anet["database"]["v_a"]["annotations"] += [{"segment": [0, 0], "label": "Long jump"},  # the duration
                                               {"segment": [15.0, 20.4], "label": "Surfing"}]
    anet["database"]["v_d"] = {"subset": "validation", "duration": 12.5, "resolution": "640x360", "url": "https://x",
                               "annotations": [{"segment": [0, 0], "label": "Surfing"},
                                               {"segment": [3.0, 12.6], "label": "Long jump"},
                                               {"segment": [9.0, 13.0], "label": "Surfing"}]}
    anet["database"]["v_b"]["annotations"].append({"segment": [0, 0], "label": "Surfing"})  # another subset
    (tmp_path / "anet.json").write_text(json.dumps(anet))
    predictions = {"v_a": [("Long jump", 0.9, [2.0, 8.0]), ("Long jump", 0.8, [5.0, 5.0]), ("Surfing", 0.7, [15.5, 20.4]),
                           ("Surfing", 0.35, [0.0, 0.0])],
                   "v_d": [("Long jump", 0.6, [3.0, 12.5]), ("Surfing", 0.5, [9.0, 12.5]), ("Surfing", 0.45, [2.0, 2.0]),
                           ("Surfing", 0.4, [0.0, 1.0])]}
    (tmp_path / "d.json").write_text(json.dumps({"results": {v: [{"label": lbl, "score": sc, "segment": seg}
                                                                 for lbl, sc, seg in items]
                                                             for v, items in predictions.items()}}))
    args = ["evaluate", "--gt", str(tmp_path / "anet.json"), "--pred", str(tmp_path / "d.json"),
            "--subset", "validation", "--tiou", "0.5", "0.75", "0.95"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    warnings = [line for line in err.splitlines() if "zero-length" in line]
    assert warnings == [f"warning: {tmp_path / 'anet.json'}: kept 2 zero-length and 3 past-duration annotations "
                        "as the ActivityNet scorer does"]
    # the official algorithm, a per-prediction loop (NaN tIoU for two zero-length segments, nothing clipped)
    truth = Segments.from_rows([(v, a["label"], *map(float, a["segment"]), 1.0) for v, e in anet["database"].items()
                                if e["subset"] == "validation" for a in e["annotations"]])
    pred = Segments.from_rows([(v, lbl, *map(float, seg), sc) for v, items in predictions.items()
                               for lbl, sc, seg in items])
    classes, ap = load_benchmark("reference_map").reference_map(truth, pred, (0.5, 0.75, 0.95))
    result = json.loads(out)
    assert abs(result["mAP"] - ap.mean()) <= 1e-12 and 0 < result["mAP"] < 1
    for t, threshold in enumerate(("0.5", "0.75", "0.95")):
        assert abs(result[f"mAP@{threshold}"] - ap[t].mean()) <= 1e-12
    assert all(abs(result["per_class"][c] - ap[:, k].mean()) <= 1e-12 for k, c in enumerate(classes))


def test_evaluate_a_subset_without_ground_truth_is_an_error(tmp_path, capsys):
    (tmp_path / "anet.json").write_text(json.dumps(ACTIVITYNET))
    (tmp_path / "d.json").write_text(json.dumps({"results": {}}))
    args = ["evaluate", "--gt", str(tmp_path / "anet.json"), "--pred", str(tmp_path / "d.json")]
    assert main([*args, "--subset", "val"]) == 2
    assert "subset 'val' holds no ground truth" in capsys.readouterr().err
    assert main([*args, "--subset", "testing"]) == 2
