"""Our vectorised mAP vs the per-prediction loop baseline (1,000 videos, 20 classes, 100,000 predictions,
3 thresholds; best of 3 and of 2 runs), and the whole ``talsearch evaluate`` command (start-up, reading and checking every item,
scoring) on a 200,000-prediction file. Prints one JSON line."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tal_core.scoring.metrics import Segments, average_precision  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from reference_map import reference_map  # noqa: E402


def case(videos=1000, classes=20, gt_per_video=5, predictions=100_000, seed=0):
    rng = np.random.default_rng(seed)
    n_gt = videos * gt_per_video
    gt_video = rng.integers(0, videos, n_gt)
    gt_start = rng.uniform(0, 100, n_gt)
    gt_len = rng.uniform(1, 10, n_gt)
    gt_label = rng.integers(0, classes, n_gt)
    # predictions: jittered copies of ground truth plus random ones
    src = rng.integers(0, n_gt, predictions)
    noise = rng.random(predictions) < 0.5
    p_video = np.where(noise, rng.integers(0, videos, predictions), gt_video[src])
    p_label = np.where(noise, rng.integers(0, classes, predictions), gt_label[src])
    p_start = np.where(noise, rng.uniform(0, 100, predictions), gt_start[src] + rng.normal(0, 1, predictions))
    p_len = np.where(noise, rng.uniform(1, 10, predictions), gt_len[src] * rng.uniform(0.7, 1.3, predictions))
    names = np.array([f"v{i}" for i in range(videos)], dtype=object)
    labels = np.array([f"c{i}" for i in range(classes)], dtype=object)
    gt = Segments(names[gt_video], labels[gt_label], gt_start, gt_start + gt_len, np.ones(n_gt))
    pred = Segments(names[p_video], labels[p_label], p_start, p_start + p_len, rng.random(predictions))
    return gt, pred


def cli_seconds(predictions: int = 200_000, repeats: int = 3) -> dict:
    """Wall time of ``talsearch evaluate`` as a user runs it (a fresh interpreter each time), best of ``repeats``."""
    import subprocess
    import tempfile

    gt, pred = case(predictions=predictions)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        database = {}
        for video, label, start, end in zip(gt.video, gt.label, gt.start, gt.end, strict=True):
            entry = database.setdefault(video, {"subset": "val", "duration": 120.0, "annotations": []})
            entry["annotations"].append({"segment": [float(start), float(end)], "label": label})
        classes = sorted(set(gt.label) | set(pred.label))
        (tmp / "gt.json").write_text(json.dumps({"taxonomy": {"actions": classes, "scenes": [], "views": []},
                                                 "database": database}))
        results: dict = {}
        for video, label, start, end, score in zip(pred.video, pred.label, pred.start, pred.end, pred.score,
                                                   strict=True):
            results.setdefault(video, []).append({"label": label, "score": float(score),
                                                  "segment": [float(start), float(max(end, start))]})
        (tmp / "pred.json").write_text(json.dumps({"results": results}))
        command = [sys.executable, "-m", "talsearch.cli", "evaluate", "--gt", str(tmp / "gt.json"), "--pred",
                   str(tmp / "pred.json")]
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
            times.append(time.perf_counter() - started)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import numpy"], check=True, cwd=ROOT)
        floor = time.perf_counter() - started
    return {"cli_predictions": predictions, "cli_s": round(min(times), 3), "python_numpy_start_s": round(floor, 3)}


def best_of(repeats: int, run):
    """``run()``'s result and its fastest wall time over ``repeats`` calls (both sides alike: a noisy machine
    moved the single-shot ratio by a third between runs)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return result, min(times)


def main() -> None:
    gt, pred = case()
    thresholds = (0.5, 0.75, 0.95)
    ours, ours_s = best_of(3, lambda: average_precision(gt, pred, thresholds))
    (_, baseline_ap), baseline_s = best_of(2, lambda: reference_map(gt, pred, thresholds))
    print(json.dumps({"bench": "map", "videos": 1000, "classes": 20, "predictions": len(pred),
                      "thresholds": list(thresholds), "ours_s": round(ours_s, 4), "baseline_s": round(baseline_s, 3),
                      "speedup": round(baseline_s / ours_s, 1),
                      "max_abs_diff": float(np.abs(ours.ap - baseline_ap).max()), "mAP": round(ours.mean, 6),
                      **cli_seconds(), "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
