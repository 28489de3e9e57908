"""Ensemble search time and memory: the default procedure over synthetic candidates.

``--candidates M --videos V --cells C --classes K``: M members predict V val videos of 10 s (the kit's clips)
with K classes (background included); member m predicts intervals of 1, 2 or 4 cells (m mod 3), so the common
grid has C cells per video. Each member has its own skill, temporally correlated noise and a background prior.
What is timed (``seconds``) is what ``talsearch ensemble`` does by default after loading: align the members,
cross-validate every procedure over 5 folds and fit the chosen one (``choose_by_cv``), then the nested
out-of-fold figure that the gain compares with the best single member (``held_out_pair``: the procedure chosen
again inside each outer fold by a cross-validation over the other outer folds). Generating the members is not timed.

One JSON line: ``seconds``; ``cpu_seconds`` (the process's and its workers' CPU time over the same span: what
``seconds`` would approach on idle cores, times the workers' parallelism); ``peak_rss_mb``: the whole process tree's peak (the sampled sum of the
proportional set size, Pss, of the process and its forked workers, so a page a worker shares with its parent
counts once; at least this process's own peak RSS); ``rss_bound_mb``: an upper bound (this process's peak RSS
+ workers x the largest worker's peak RSS: shared pages counted again for every worker); ``aligned_mb``: the
float32 size of the aligned members x cells x classes arrays (what the store takes at float32; it holds
float16); ``procedure``, ``members`` (the chosen ones), ``oof_val_mAP``, ``nested_oof_val_mAP``,
``best_single_oof_val_mAP``, ``evaluations``. ``--storage float32`` runs the same code on float32 storage (the
full-precision path the float16 store is compared with).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ensemble.align import align  # noqa: E402
from ensemble.fuse import Evaluator  # noqa: E402
from ensemble.parallel import workers  # noqa: E402
from ensemble.select import Recipe, choose_by_cv, held_out_pair  # noqa: E402
from tal_core.config import EvalConfig  # noqa: E402
from tal_core.scoring.metrics import Segments  # noqa: E402
from tal_core.scoring.predictions import IntervalPredictions  # noqa: E402

DURATION = 10.0
CELLS_PER_INTERVAL = (1, 2, 4)  # member m predicts intervals of CELLS_PER_INTERVAL[m % 3] cells (where C allows)
FOLDS = 5  # run_ensemble's defaults
SEED = 0
OWN_NOISE, SHARED_NOISE = 0.45, 0.45  # scales of each member's own and the members' shared noise


def make_truth(rng, videos: int, actions: tuple[str, ...]) -> Segments:
    """Actions of 0.5-3 s with gaps of 0.3-2 s in each 10 s video."""
    rows = []
    for v in range(videos):
        t = float(rng.uniform(0, 1.5))
        while t < DURATION - 0.5:
            length = float(rng.uniform(0.5, 3.0))
            rows.append((f"v{v}", actions[rng.integers(len(actions))], t, min(t + length, DURATION), 1.0))
            t += length + float(rng.uniform(0.3, 2.0))
    return Segments.from_rows(rows)


def cell_labels(truth: Segments, videos: int, cells: int, actions: tuple[str, ...]) -> np.ndarray:
    """(videos, cells) class index (0 = background) at each cell centre."""
    centres = (np.arange(cells) + 0.5) * DURATION / cells
    labels = np.zeros((videos, cells), dtype=np.int64)
    for video, label, start, end in zip(truth.video, truth.label, truth.start, truth.end, strict=True):
        labels[int(video[1:]), (centres >= start) & (centres < end)] = actions.index(label) + 1
    return labels


def smooth_noise(rng, videos: int, cells: int, classes: int) -> np.ndarray:
    """Gaussian noise summed over 3 neighbouring cells (errors that last a while), float32."""
    noise = rng.standard_normal((videos, cells + 2, classes), dtype=np.float32)
    return noise[:, :-2] + noise[:, 1:-1] + noise[:, 2:]


def make_member(index: int, labels: np.ndarray, shared: np.ndarray, actions: tuple[str, ...]) -> IntervalPredictions:
    """Member ``index``'s float32 val predictions: at each interval's middle cell, the truth raised by the
    member's skill, over its own noise and the noise every member shares (errors the members make alike),
    background raised."""
    rng = np.random.default_rng([SEED, index])
    videos, cells = labels.shape
    classes = shared.shape[2]
    per = CELLS_PER_INTERVAL[index % len(CELLS_PER_INTERVAL)]
    per = per if cells % per == 0 else 1
    intervals = cells // per
    skill = float(rng.uniform(0.3, 1.0))
    middle = np.arange(intervals) * per + per // 2
    logits = smooth_noise(rng, videos, intervals, classes) * np.float32(OWN_NOISE)
    logits += shared[:, middle] * np.float32(SHARED_NOISE)
    logits[..., 0] += 1.5
    truth = labels[:, middle]
    logits[np.arange(videos)[:, None], np.arange(intervals)[None, :], truth] += np.float32(2.5 + 3.0 * skill)
    logits -= logits.max(axis=2, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=2, keepdims=True)
    starts = np.arange(intervals) * per * DURATION / cells
    ends = np.minimum(starts + per * DURATION / cells, DURATION)
    meta = {"actions": list(actions), "scenes": [], "interval_seconds": per * DURATION / cells}
    return IntervalPredictions.from_videos([f"v{v}" for v in range(videos)], [starts] * videos, [ends] * videos,
                                           list(probs), np.zeros((videos, 0)), meta)


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    queue += [int(child) for child in handle.read().split()]
        except OSError:
            continue
    return found


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("Pss:"))
    except (OSError, StopIteration):
        return 0


def watch(pid: int, interval: float = 1.0) -> None:
    """Sample the summed Pss of ``pid``'s process tree (this watcher left out) until stdin closes; print the
    peak in kB."""
    me, peak = os.getpid(), 0
    while True:
        peak = max(peak, sum(_pss_kb(p) for p in _tree(pid) if p != me))
        ready, _, _ = select.select([sys.stdin], [], [], interval)
        if ready and not sys.stdin.read(1):
            break
    print(peak)


class TreeMemory:
    """The process tree's peak summed Pss, sampled by a watcher process (a thread here would keep the ensemble
    from forking its workers: ``ensemble.parallel.fork_is_safe``); ``stop`` returns it in MB (0 without /proc)."""

    def start(self) -> TreeMemory:
        self._watcher = None
        if os.path.exists(f"/proc/{os.getpid()}/smaps_rollup"):
            self._watcher = subprocess.Popen([sys.executable, __file__, "--watch", str(os.getpid())],
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return self

    def stop(self) -> float:
        if self._watcher is None:
            return 0.0
        out, _ = self._watcher.communicate()
        return int(out.strip() or 0) / 1024


def _release_freed_memory() -> None:
    """Hand the heap pages freed with the members back to the OS (glibc keeps them otherwise: a forked worker
    would inherit them and the process would look larger than what it holds)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--cells", type=int, default=160)
    parser.add_argument("--classes", type=int, default=35, help="background included")
    parser.add_argument("--storage", choices=("float16", "float32"), default="float16")
    args = parser.parse_args(argv)
    actions = tuple(f"a{i}" for i in range(args.classes - 1))
    rng = np.random.default_rng(SEED)
    truth = make_truth(rng, args.videos, actions)
    labels = cell_labels(truth, args.videos, args.cells, actions)
    started = time.perf_counter()
    shared = smooth_noise(np.random.default_rng([SEED, 1_000_000]), args.videos, args.cells, args.classes)
    members = [make_member(m, labels, shared, actions) for m in range(args.candidates)]
    del shared
    generate_seconds = time.perf_counter() - started
    memory = TreeMemory().start()
    cpu_before = sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                       resource.getrusage(resource.RUSAGE_CHILDREN)))
    started = time.perf_counter()
    aligned = align(members, np.dtype(args.storage))
    del members  # what the ensemble keeps is the aligned store
    _release_freed_memory()
    evaluator = Evaluator(aligned, truth, actions, EvalConfig())
    recipe, held_out = Recipe(), {}
    procedure, fitted, oof = choose_by_cv(evaluator, FOLDS, SEED, recipe, held_out)
    nested, single = held_out_pair(evaluator, FOLDS, SEED, recipe, held_out)
    seconds = time.perf_counter() - started
    tree_mb = memory.stop()
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu_seconds = sum(u.ru_utime + u.ru_stime for u in usage) - cpu_before
    own_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    cells = sum(len(v.starts) for v in aligned)
    result = {"bench": "ensemble", "candidates": args.candidates, "videos": args.videos, "cells": args.cells,
              "classes": args.classes, "storage": args.storage, "seconds": round(seconds, 1),
              "cpu_seconds": round(cpu_seconds, 1),
              "peak_rss_mb": round(max(tree_mb, own_mb)), "rss_bound_mb": round(own_mb + workers() * worker_mb),
              "aligned_mb": round(args.candidates * cells * args.classes * 4 / 2**20),
              "procedure": procedure, "members": np.flatnonzero(fitted.weights).tolist(),
              "weights": [round(float(w), 6) for w in fitted.weights[fitted.weights > 0]],
              "oof_val_mAP": round(oof[procedure], 6),
              "nested_oof_val_mAP": round(evaluator.score_detections(nested).mean, 6),
              "best_single_oof_val_mAP": round(evaluator.score_detections(single).mean, 6),
              "oof_val_mAP_by_procedure": {name: round(value, 6) for name, value in oof.items()},
              "evaluations": evaluator.calls, "generate_seconds": round(generate_seconds, 1),
              "workers": workers(), "cpus": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 2)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["--watch"]:
        watch(int(sys.argv[2]))
    else:
        main()
