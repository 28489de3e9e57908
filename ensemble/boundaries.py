"""Per-class boundary offsets: where every member places a class's edges the same wrong way, learned on val.

On hard data the members of a sweep share some errors that averaging cannot undo: a fast flicker, say, is
recognised only a few frames after it starts and lost a few frames before it ends, by every member alike (on
the hard preset: flash_fast starts 0.38 s late and ends 0.5 s early in the best three trials). Such an error is
a bias of the class, not noise of a member. For each class the ensemble takes the median offset of its matched
detections' starts and ends from the truth (a truth segment's match: the highest-scored detection of its class
that overlaps it at tIoU >= ``MATCH_TIOU``) and moves every detection of that class back by it. A class with
fewer than ``MIN_MATCHES`` matches keeps its edges, and so does a class whose AP the move would not raise on the
videos it was fitted on (``select.with_boundary_offsets``). Inside cross-validation the offsets are fitted on
the training folds only, like the weights (``select.procedures``).
"""

from __future__ import annotations

import numpy as np

from tal_core.scoring.metrics import Segments, segment_iou

MATCH_TIOU = 0.5
MIN_MATCHES = 3

Offsets = dict[str, tuple[float, float]]  # class -> (start offset, end offset) in seconds, detection - truth


def _groups(video: np.ndarray, label: np.ndarray) -> dict[tuple[str, str], np.ndarray]:
    """Row indices by (video, label)."""
    rows: dict[tuple[str, str], list[int]] = {}
    for row, key in enumerate(zip(video.astype(str).tolist(), label.astype(str).tolist(), strict=True)):
        rows.setdefault(key, []).append(row)
    return {key: np.array(found) for key, found in rows.items()}


def matched_errors(detections: Segments, truth: Segments) -> dict[str, np.ndarray]:
    """Per class, (matches, 2) start and end errors (detection - truth, seconds) of the truth segments matched."""
    found = _groups(detections.video, detections.label) if len(detections) else {}
    errors: dict[str, list[tuple[float, float]]] = {}
    for t in range(len(truth)):
        rows = found.get((str(truth.video[t]), str(truth.label[t])))
        if rows is None:
            continue
        start, end = detections.start[rows], detections.end[rows]
        candidates = np.flatnonzero(segment_iou(start, end, truth.start[t], truth.end[t]) >= MATCH_TIOU)
        if len(candidates):
            best = candidates[np.argmax(detections.score[rows][candidates])]
            errors.setdefault(str(truth.label[t]), []).append((start[best] - truth.start[t], end[best] - truth.end[t]))
    return {label: np.array(rows) for label, rows in errors.items()}


def fit_offsets(detections: Segments, truth: Segments, min_matches: int = MIN_MATCHES) -> Offsets:
    """The median start and end error of each class with at least ``min_matches`` matches (classes whose
    medians are both 0 are left out)."""
    offsets = {}
    for label, errors in sorted(matched_errors(detections, truth).items()):
        if len(errors) >= min_matches:
            start, end = np.median(errors, axis=0)
            if start or end:
                offsets[label] = (float(start), float(end))
    return offsets


def apply_offsets(detections: Segments, offsets: Offsets | None, video_ends: dict[str, float]) -> Segments:
    """Each detection of a class in ``offsets`` moved back by its offsets, kept inside [0, its video's end]; a
    detection the move would empty keeps its edges."""
    if not offsets or not len(detections):
        return detections
    start, end = detections.start.astype(np.float64), detections.end.astype(np.float64)
    shift = np.array([offsets.get(str(label), (0.0, 0.0)) for label in detections.label], dtype=np.float64)
    limit = np.array([video_ends.get(str(v), np.inf) for v in detections.video], dtype=np.float64)
    new_start = np.clip(start - shift[:, 0], 0.0, limit)
    new_end = np.clip(end - shift[:, 1], 0.0, limit)
    keep = new_end > new_start
    return Segments(detections.video, detections.label, np.where(keep, new_start, start),
                    np.where(keep, new_end, end), detections.score)


def offsets_json(offsets: Offsets | None) -> dict[str, dict[str, float]]:
    return {label: {"start": round(start, 6), "end": round(end, 6)} for label, (start, end) in (offsets or {}).items()}
