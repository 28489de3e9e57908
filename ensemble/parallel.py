"""Scoring many candidates at once on forked worker processes (the per-candidate work is numpy + Python in
one thread, so threads would not help). Workers inherit the evaluator and the candidates' shared state by
fork; only candidate indices and scores cross process boundaries.

A fork copies one thread only: a lock another Python thread holds at that moment (logging, I/O buffers, a
client library's) stays locked in the child forever. So the pool forks only from a process that runs no other
Python thread (``talsearch ensemble``, the benchmarks) but tqdm's monitor, which only wakes every 10 s to look
at progress bars (workers draw none); anywhere else (an ensemble run in a process that also holds Ray, MLflow or
a decoder thread) the candidates are scored in this process. Spawned or forkserver workers would be safe there
too, but they would receive the evaluator (every member's probabilities) by pickle at each step, which costs
more than it saves. Native helper threads (OpenBLAS, jemalloc) register their own fork handlers and do not
count."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence

MIN_ITEMS = 8  # below this, forking costs more than it saves
# Work estimated (the first item's time x the rest) below this stays in this process: forking a process that
# holds every member's probabilities, starting the pool and ending it cost about as much (on a 2-core machine
# the ensemble tests ran 1.5-2x slower on forked workers, whose items took milliseconds each).
MIN_PARALLEL_S = 0.5
IDLE_THREADS = frozenset({"tqdm_monitor"})  # threads that hold no lock a worker takes (tqdm's, for its own bars)

_score_of: Callable[[int], float] | None = None  # set just before forking; read in the workers
logger = logging.getLogger(__name__)
_told_once = threading.Event()  # the fallback is logged once per process


def _call(index: int) -> float:
    return _score_of(index)


def _worker_start() -> None:
    """A forked worker dies of the pool's SIGTERM whatever the parent does with it: a handler inherited from the
    parent that only notes the signal (a server's, a test runner's) would leave the worker waiting for work, and
    the pool's exit waiting for the worker, forever."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def workers() -> int:
    """Processes to use: TALSEARCH_ENSEMBLE_WORKERS, else one per CPU (at most 8)."""
    wanted = os.environ.get("TALSEARCH_ENSEMBLE_WORKERS")
    return max(1, int(wanted)) if wanted else min(os.cpu_count() or 1, 8)


def fork_is_safe() -> bool:
    """Whether this process may fork: fork exists here and no Python thread other than this one (and the
    ``IDLE_THREADS``) runs."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    others = [t.name for t in threading.enumerate()
              if t is not threading.current_thread() and t.name not in IDLE_THREADS]
    if others and not _told_once.is_set():
        _told_once.set()
        logger.debug(f"[ensemble] scoring in this process, not on forked workers: threads {others[:3]} run here")
    return not others


def map_scores(score_of: Callable[[int], float], indices: Sequence[int]) -> list[float]:
    """``[score_of(i) for i in indices]``, on forked processes where that pays (several CPUs, enough items, at
    least ``MIN_PARALLEL_S`` of work as the first item's time predicts; that item is scored here) and is safe
    (``fork_is_safe``)."""
    global _score_of
    indices, count = list(indices), workers()
    if count < 2 or len(indices) < MIN_ITEMS or not fork_is_safe():
        return [score_of(i) for i in indices]
    started = time.perf_counter()
    first, rest = score_of(indices[0]), indices[1:]
    if (time.perf_counter() - started) * len(rest) < MIN_PARALLEL_S:
        return [first, *(score_of(i) for i in rest)]
    _score_of = score_of
    try:
        with multiprocessing.get_context("fork").Pool(min(count, len(rest)), _worker_start) as pool:
            return [first, *pool.map(_call, rest, chunksize=max(1, len(rest) // (4 * count)))]
    finally:
        _score_of = None
