"""Ensemble search speed: 50 synthetic candidates x 200 val videos with mixed interval lengths.

Times the full greedy selection + weight refinement (``seconds``, ``evals_per_s``), then the out-of-fold
figures the ensemble reports: ``oof_val_mAP`` (the best procedure's plain out-of-fold mAP, optimistic: the
procedure is chosen on the folds it is scored on) and ``nested_oof_val_mAP`` (the choice made inside each outer
fold), over 3 folds with greedy steps capped at 4 to keep the bench short (``cv_seconds``). One JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ensemble.align import align  # noqa: E402
from ensemble.fuse import Evaluator  # noqa: E402
from ensemble.select import Recipe, choose_by_cv, fit_weights, nested_cross_validate  # noqa: E402
from tal_core.config import EvalConfig  # noqa: E402
from tal_core.scoring.metrics import Segments  # noqa: E402
from tal_core.scoring.predictions import IntervalPredictions  # noqa: E402

ACTIONS = tuple(f"a{i}" for i in range(10))
DURATION = 30.0


def make_truth(rng, videos):
    rows = []
    for v in range(videos):
        t = float(rng.uniform(0, 3))
        while t < DURATION - 5:
            length = float(rng.uniform(2, 5))
            rows.append((f"v{v}", ACTIONS[rng.integers(len(ACTIONS))], t, t + length, 1.0))
            t += length + float(rng.uniform(1, 4))
    return Segments.from_rows(rows)


def make_member(rng, truth: Segments, videos: int, interval: float, skill: float) -> IntervalPredictions:
    starts, ends, probs = [], [], []
    for v in range(videos):
        s = np.arange(0, DURATION, interval)
        e = np.minimum(s + interval, DURATION)
        p = rng.dirichlet(np.ones(len(ACTIONS) + 1) * 0.5, size=len(s))
        mine = truth.video == f"v{v}"
        for label, a, b in zip(truth.label[mine], truth.start[mine], truth.end[mine], strict=True):
            inside = (s + interval / 2 >= a) & (s + interval / 2 < b)
            p[inside, ACTIONS.index(label) + 1] += skill * 3
        p[:, 0] += 0.5
        probs.append(p / p.sum(axis=1, keepdims=True))
        starts.append(s)
        ends.append(e)
    meta = {"actions": list(ACTIONS), "scenes": [], "interval_seconds": interval}
    return IntervalPredictions.from_videos([f"v{v}" for v in range(videos)], starts, ends, probs,
                                           np.zeros((videos, 0)), meta)


def main(candidates: int = 50, videos: int = 200) -> None:
    rng = np.random.default_rng(0)
    truth = make_truth(rng, videos)
    members = [make_member(rng, truth, videos, [0.5, 1.0, 1.5][m % 3], rng.uniform(0.2, 1.0))
               for m in range(candidates)]
    started = time.perf_counter()
    aligned = align(members)
    evaluator = Evaluator(aligned, truth, ACTIONS, EvalConfig())
    fitted = fit_weights(evaluator, max_steps=8)
    seconds = time.perf_counter() - started
    calls = evaluator.calls
    started = time.perf_counter()
    chosen, _, oof = choose_by_cv(evaluator, 3, 0, Recipe(max_steps=4))
    nested = nested_cross_validate(evaluator, 3, 0, Recipe(max_steps=4), inner_k=2)
    cv_seconds = time.perf_counter() - started
    print(json.dumps({"bench": "ensemble", "candidates": candidates, "videos": videos,
                      "cells_per_video": int(np.mean([len(v.starts) for v in aligned])),
                      "seconds": round(seconds, 2), "evaluations": calls,
                      "evals_per_s": round(calls / seconds, 1), "members_chosen": int((fitted.weights > 0).sum()),
                      "val_mAP": round(fitted.score, 4), "procedure": chosen, "oof_val_mAP": round(oof[chosen], 4),
                      "nested_oof_val_mAP": round(nested, 4), "cv_seconds": round(cv_seconds, 1),
                      "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
