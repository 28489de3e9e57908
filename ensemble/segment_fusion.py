"""Segment-level fusion: pool the members' own detections instead of averaging their probabilities.

Each member is decoded alone (as it was tuned to be). A pooled detection's fused score is a weighted vote:
sum over members m of w_m x the best score of m's detections of the same video and class that overlap it by
tIoU >= ``VOTE_TIOU`` (its own member's vote is its own score). Then greedy NMS at ``eval.nms_tiou`` keeps the
best-voted copy of each agreed segment, at most ``eval.max_segments_per_video`` per video. Where members see
different things (a view that misses an action), a detection only one member makes keeps that member's
weighted score instead of being averaged away with the others' background.
"""

from __future__ import annotations

import numpy as np

from tal_core.config import EvalConfig
from tal_core.decoding.decode import intersecting_pairs, nms_grouped

VOTE_TIOU = 0.5


def fuse_segments(detections: list[tuple[np.ndarray, ...]], weights: np.ndarray, eval_cfg: EvalConfig
                  ) -> tuple[np.ndarray, ...]:
    """``detections``: per member with weight > 0, integer-coded (video, label, start, end, score) arrays;
    ``weights``: those members' weights. Returns fused (video, label, start, end, score)."""
    weights = np.asarray(weights, np.float64)
    weights = weights / weights.sum()
    member = np.concatenate([np.full(len(d[0]), m) for m, d in enumerate(detections)]).astype(np.int64)
    video, label, start, end, score = (np.concatenate([d[i] for d in detections]) for i in range(5))
    if not len(score):
        return video, label, start, end, score
    best = np.zeros((len(score), len(detections)))  # best overlapping score of each member, per detection
    best[np.arange(len(score)), member] = score
    group = video.astype(np.int64) * (int(label.max()) + 1) + label
    first, second = intersecting_pairs(group, start, end)
    inter = np.minimum(end[first], end[second]) - np.maximum(start[first], start[second])
    union = (end[first] - start[first]) + (end[second] - start[second]) - inter
    agree = (union > 0) & (inter >= VOTE_TIOU * union) & (member[first] != member[second])
    first, second = first[agree], second[agree]
    np.maximum.at(best, (first, member[second]), score[second])
    np.maximum.at(best, (second, member[first]), score[first])
    voted = best @ weights
    keep = nms_grouped(video, start, end, voted, label, eval_cfg.nms_tiou, eval_cfg.max_segments_per_video)
    return video[keep], label[keep], start[keep], end[keep], voted[keep]
