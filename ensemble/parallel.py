"""Scoring many candidates at once on forked worker processes (the per-candidate work is numpy + Python in
one thread, so threads would not help). Workers inherit the evaluator and the candidates' shared state by
fork; only candidate indices and scores cross process boundaries."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence

MIN_ITEMS = 8  # below this, forking costs more than it saves

_score_of: Callable[[int], float] | None = None  # set just before forking; read in the workers


def _call(index: int) -> float:
    return _score_of(index)


def workers() -> int:
    """Processes to use: TALSEARCH_ENSEMBLE_WORKERS, else one per CPU (at most 8)."""
    wanted = os.environ.get("TALSEARCH_ENSEMBLE_WORKERS")
    return max(1, int(wanted)) if wanted else min(os.cpu_count() or 1, 8)


def map_scores(score_of: Callable[[int], float], indices: Sequence[int]) -> list[float]:
    """``[score_of(i) for i in indices]``, on forked processes where that pays (several CPUs, enough items)."""
    global _score_of
    count = workers()
    if count < 2 or len(indices) < MIN_ITEMS or "fork" not in multiprocessing.get_all_start_methods():
        return [score_of(i) for i in indices]
    _score_of = score_of
    try:
        with multiprocessing.get_context("fork").Pool(min(count, len(indices))) as pool:
            return pool.map(_call, list(indices), chunksize=max(1, len(indices) // (4 * count)))
    finally:
        _score_of = None
