"""The ensemble's gain over the best single member, with a bootstrap interval over val videos.

Both sides are out-of-fold detections (each val video's detections made by weights fitted without it). A
bootstrap draw resamples the scored videos with replacement (a video drawn twice counts twice, as two videos),
scores both sides on the same draw and keeps the difference; the interval is the percentile interval of the
differences. Scored videos are the val videos, or the challenge's bins when ``eval.bin_seconds`` is set. Several
pairs on the same videos (one per training seed) give the mean gain, each draw resampling the same videos for all.
"""

from __future__ import annotations

import numpy as np

from tal_core.scoring.metrics import Segments, average_precision


def concat_segments(parts: list[Segments]) -> Segments:
    parts = [p for p in parts if len(p)]
    if not parts:
        return Segments.from_rows([])
    return Segments(*(np.concatenate([getattr(p, name) for p in parts])
                      for name in ("video", "label", "start", "end", "score")))


class _Resampler:
    """Rows of one segment table grouped by scored video, to rebuild the table for any draw of videos."""

    def __init__(self, table: Segments, units: np.ndarray):
        self.table = table
        codes = np.searchsorted(units, table.video.astype(str))
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(units) + 1))
        self.rows = [order[bounds[u]:bounds[u + 1]] for u in range(len(units))]

    def draw(self, pick: np.ndarray) -> Segments:
        rows = [self.rows[u] for u in pick]
        index = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        video = np.repeat(np.arange(len(pick)), [len(r) for r in rows]).astype(str).astype(object)
        t = self.table
        return Segments(video, t.label[index], t.start[index], t.end[index], t.score[index])


def bootstrap_gain(truth: Segments, ensemble: Segments, single: Segments, thresholds, draws: int = 1000,
                   seed: int = 0, level: float = 0.9) -> dict:
    """{"mAP", "low", "high", "level", "draws", "videos"}: mAP(ensemble) - mAP(single) on all scored videos, and
    the ``level`` percentile interval of that difference over ``draws`` resamples of the videos."""
    return bootstrap_mean_gain(truth, [(ensemble, single)], thresholds, draws, seed, level)


def bootstrap_mean_gain(truth: Segments, pairs: list[tuple[Segments, Segments]], thresholds, draws: int = 1000,
                        seed: int = 0, level: float = 0.9) -> dict:
    """``bootstrap_gain`` of several (ensemble, single) pairs on the same videos (e.g. one per training seed):
    the mean of their gains, and its interval over resamples of the videos, each draw the same videos for
    every pair."""
    def gain_of(gt: Segments, ensemble: Segments, single: Segments) -> float:
        return average_precision(gt, ensemble, thresholds).mean - average_precision(gt, single, thresholds).mean

    tables = [truth, *(table for pair in pairs for table in pair)]
    units = np.unique(np.concatenate([t.video.astype(str) for t in tables]))
    truth_side = _Resampler(truth, units)
    sides = [(_Resampler(ensemble, units), _Resampler(single, units)) for ensemble, single in pairs]
    rng = np.random.default_rng(seed)
    diffs = np.empty(draws)
    for d in range(draws):
        pick = rng.integers(len(units), size=len(units))
        gt = truth_side.draw(pick)
        diffs[d] = np.mean([gain_of(gt, ensemble.draw(pick), single.draw(pick)) for ensemble, single in sides])
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    gain = np.mean([gain_of(truth, ensemble, single) for ensemble, single in pairs])
    return {"mAP": float(gain), "low": float(low), "high": float(high), "level": level, "draws": draws,
            "videos": int(len(units))}
