"""Which decoder: ``merge`` vs ``multithreshold``, measured on interval predictions.

Uses the stored val predictions of a sweep's trials when given one (``bench_decode.py SWEEP DATA``), else
synthetic predictions (ground truth blurred with noise at several interval lengths).
Prints one JSON line with the mAP of each decoder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tal_core.config import EvalConfig  # noqa: E402
from tal_core.decoding.decode import decode_cells  # noqa: E402
from tal_core.scoring.metrics import Segments, average_precision  # noqa: E402

DURATION = 40.0


def synthetic(seed: int, videos: int = 100, classes: int = 8, interval: float = 1.0, noise: float = 0.6):
    rng = np.random.default_rng(seed)
    gt_rows, preds = [], []
    for v in range(videos):
        starts = np.arange(0, DURATION, interval)
        ends = np.minimum(starts + interval, DURATION)
        logits = rng.normal(0, noise, size=(len(starts), classes + 1))
        logits[:, 0] += 1.0
        t = float(rng.uniform(0, 4))
        while t < DURATION - 6:
            length, label = float(rng.uniform(2, 6)), int(rng.integers(1, classes + 1))
            gt_rows.append((f"v{v}", f"c{label}", t, t + length, 1.0))
            cover = np.clip(np.minimum(ends, t + length) - np.maximum(starts, t), 0, None) / interval
            logits[:, label] += 3.0 * cover
            t += length + float(rng.uniform(1, 5))
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        preds.append((f"v{v}", starts, ends, probs / probs.sum(axis=1, keepdims=True)))
    return Segments.from_rows(gt_rows), preds, tuple(f"c{k}" for k in range(1, classes + 1))


def score(gt, preds, actions, cfg: EvalConfig) -> dict:
    rows = []
    for video, starts, ends, probs in preds:
        seg = decode_cells(starts, ends, probs, cfg)
        rows += [(video, actions[k - 1], a, b, s) for k, a, b, s in zip(seg.label, seg.start, seg.end, seg.score,
                                                                         strict=True)]
    result = average_precision(gt, Segments.from_rows(rows), cfg.tiou_thresholds)
    return {"mAP": round(result.mean, 4), **{f"mAP@{t:g}": round(float(m), 4)
                                             for t, m in zip(result.thresholds, result.map_per_threshold, strict=True)}}


def from_sweep(sweep: Path, data: Path):
    from tal_core.data.annotations import load_ground_truth
    from tal_core.scoring.formats import ground_truth_segments
    from tal_core.scoring.predictions import load_predictions

    gt = ground_truth_segments(load_ground_truth(data), "val")
    for path in sorted(sweep.glob("trials/*/predictions/val.npz")):
        pred = load_predictions(path)
        yield path.parent.parent.name, gt, [(v, *pred.video(i)) for i, v in enumerate(pred.video_ids)], pred.actions


def main() -> None:
    decoders = {"merge": EvalConfig(decode="merge"), "multithreshold": EvalConfig(decode="multithreshold")}
    cases = {}
    if len(sys.argv) == 3:
        for name, gt, preds, actions in from_sweep(Path(sys.argv[1]), Path(sys.argv[2])):
            cases[f"trial {name}"] = {d: score(gt, preds, actions, c) for d, c in decoders.items()}
    else:
        for interval in (0.5, 1.0, 2.0):
            gt, preds, actions = synthetic(0, interval=interval)
            cases[f"synthetic interval {interval}s"] = {d: score(gt, preds, actions, c) for d, c in decoders.items()}
    wins = sum(c["multithreshold"]["mAP"] > c["merge"]["mAP"] for c in cases.values())
    mean = {d: round(float(np.mean([c[d]["mAP"] for c in cases.values()])), 4) for d in decoders}
    print(json.dumps({"bench": "decode", "cases": cases, "mean_mAP": mean,
                      "multithreshold_wins": f"{wins}/{len(cases)}"}))


if __name__ == "__main__":
    main()
