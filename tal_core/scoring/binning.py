"""Challenge-faithful scoring (BinEgo-360, the organisers' golden-file rule): segments are split over the
fixed bins of ``bin_seconds`` they overlap, each piece clipped to its bin and kept when at least
``min_piece`` seconds long; ground-truth pieces are rounded to 0.1 s; times stay absolute. Each bin is
scored as a video of its own, ``{video}_{bin_start}_{bin_end}``; a bin exists only where ground truth is, so
predictions in other bins are false positives.
"""

from __future__ import annotations

import numpy as np

from tal_core.scoring.metrics import Segments

MIN_PIECE_SECONDS = 0.5


def bin_id(video: str, start: float, end: float) -> str:
    return f"{video}_{start:g}_{end:g}"


def split_into_bins(segments: Segments, bin_seconds: float, min_piece: float = MIN_PIECE_SECONDS,
                    round_to: float | None = None) -> Segments:
    """Every segment cut at the bin edges; pieces shorter than ``min_piece`` dropped; ``round_to``: round the
    pieces' times (0.1 for ground truth)."""
    if not len(segments):
        return segments
    first = np.floor(segments.start / bin_seconds + 1e-9).astype(np.int64)
    last = np.maximum(np.ceil(segments.end / bin_seconds - 1e-9).astype(np.int64) - 1, first)
    counts = last - first + 1
    source = np.repeat(np.arange(len(segments)), counts)
    bins = first[source] + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    lo, hi = bins * bin_seconds, (bins + 1) * bin_seconds
    start = np.maximum(segments.start[source], lo)
    end = np.minimum(segments.end[source], hi)
    keep = end - start >= min_piece - 1e-9
    if round_to:
        start, end = np.round(start / round_to) * round_to, np.round(end / round_to) * round_to
    videos = np.array([bin_id(v, a, b) for v, a, b in zip(segments.video[source][keep], lo[keep], hi[keep],
                                                           strict=True)], dtype=object)
    return Segments(videos, segments.label[source][keep], start[keep], end[keep], segments.score[source][keep])


def binned_truth(gt: Segments, bin_seconds: float, placements: dict | None = None) -> Segments:
    """Ground truth as the challenge scores it: in recording time, split into bins, rounded to 0.1 s."""
    if not bin_seconds:
        return gt
    return split_into_bins(to_recording_time(gt, placements or {}), bin_seconds, round_to=0.1)


def binned_predictions(pred: Segments, bin_seconds: float, placements: dict | None = None) -> Segments:
    if not bin_seconds:
        return pred
    return split_into_bins(to_recording_time(pred, placements or {}), bin_seconds)


def binned(gt: Segments, pred: Segments, bin_seconds: float,
           placements: dict | None = None) -> tuple[Segments, Segments]:
    """(ground truth, predictions) as the challenge scores them (``placements``: clip -> (recording, offset),
    see ``formats.placements_of``); unchanged when ``bin_seconds`` is 0."""
    return binned_truth(gt, bin_seconds, placements), binned_predictions(pred, bin_seconds, placements)


def to_recording_time(segments: Segments, placements: dict[str, tuple[str, float]]) -> Segments:
    """Clips' segments as their recordings' (video id -> recording, times + offset); others unchanged."""
    if not placements or not len(segments):
        return segments
    videos = segments.video.astype(object)
    offset = np.array([placements.get(v, (v, 0.0))[1] for v in videos])
    recording = np.array([placements.get(v, (v, 0.0))[0] for v in videos], dtype=object)
    return Segments(recording, segments.label, segments.start + offset, segments.end + offset, segments.score)
