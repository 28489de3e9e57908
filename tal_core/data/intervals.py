"""The interval grid of a video and the label of each interval.

Intervals tile [0, duration) with fixed length; the last one is clipped at the
duration. An interval takes the action covering the largest part of it if that
part is at least ``min_overlap`` of the interval's length, else background (0).
Ties go to the action listed first in the taxonomy (lowest class index).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from tal_core.data.annotations import Segment, Taxonomy


def interval_grid(duration: float, interval_seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends (seconds) of the non-overlapping intervals covering [0, duration)."""
    if interval_seconds <= 0:
        raise ValueError(f"interval_seconds must be > 0, got {interval_seconds}")
    # Round away float noise (e.g. 3.0 / 0.1) before taking the ceiling.
    count = max(1, math.ceil(round(duration / interval_seconds, 9)))
    starts = np.arange(count, dtype=np.float64) * interval_seconds
    ends = np.minimum(starts + interval_seconds, duration)
    return starts, ends


def coverage(starts: np.ndarray, ends: np.ndarray, segments: Iterable[Segment], taxonomy: Taxonomy) -> np.ndarray:
    """(intervals, actions + 1) seconds of each interval covered by each class; column 0 unused.

    Overlapping segments of one class are merged first, so coverage never exceeds the interval.
    """
    covered = np.zeros((len(starts), len(taxonomy.actions) + 1))
    by_class: dict[int, list[tuple[float, float]]] = {}
    for seg in segments:
        by_class.setdefault(taxonomy.action_index(seg.label), []).append((seg.start, seg.end))
    for cls, spans in by_class.items():
        for seg_start, seg_end in _merge_spans(spans):
            covered[:, cls] += np.clip(np.minimum(ends, seg_end) - np.maximum(starts, seg_start), 0, None)
    return covered


def _merge_spans(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def label_intervals(
    starts: np.ndarray, ends: np.ndarray, segments: Iterable[Segment], taxonomy: Taxonomy, min_overlap: float
) -> np.ndarray:
    """Class index per interval (0 = background, k = taxonomy.actions[k - 1])."""
    covered = coverage(starts, ends, segments, taxonomy)
    covered[:, 0] = -1.0
    best = covered.argmax(axis=1)  # first maximum = lowest class index on ties
    share = covered[np.arange(len(starts)), best] / np.maximum(ends - starts, 1e-12)
    return np.where(share >= min_overlap - 1e-9, best, 0).astype(np.int64)


def label_at_times(times: np.ndarray, segments: Iterable[Segment], taxonomy: Taxonomy) -> np.ndarray:
    """Class index at each time point (0 = background): the action whose segment [start, end) holds it.

    Where segments of several classes hold a point, the lowest class index wins (as for intervals).
    """
    times = np.asarray(times, dtype=np.float64)
    labels = np.zeros(times.shape, dtype=np.int64)
    for seg in sorted(segments, key=lambda s: -taxonomy.action_index(s.label)):
        inside = (times >= seg.start - 1e-9) & (times < seg.end - 1e-9)
        labels[inside] = taxonomy.action_index(seg.label)
    return labels


def cell_grid(starts: np.ndarray, ends: np.ndarray, cells_per_interval: int) -> tuple[np.ndarray, np.ndarray]:
    """Each interval cut into ``cells_per_interval`` equal cells: (starts, ends), interval by interval."""
    fractions = np.arange(cells_per_interval + 1) / cells_per_interval
    edges = starts[:, None] + (ends - starts)[:, None] * fractions[None, :]
    return edges[:, :-1].ravel(), edges[:, 1:].ravel()
