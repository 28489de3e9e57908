"""Weighted fusion on the common grid and its val mAP: the per-candidate work of the search.

Evaluating a weight vector = one weighted sum per video + decode + mAP; no reloads.
"""

from __future__ import annotations

import numpy as np

from tal_core.binning import binned
from tal_core.config import EvalConfig
from tal_core.decode import decode_videos
from tal_core.formats import to_recording_time
from tal_core.metrics import Segments, average_precision

from .align import AlignedVideo
from .parallel import MIN_ITEMS, map_scores, workers


class Evaluator:
    """Scores fused probabilities of the aligned val videos against their ground truth."""

    def __init__(self, videos: list[AlignedVideo], gt: Segments, actions: tuple[str, ...], eval_cfg: EvalConfig,
                 metric_thresholds=None, placements: dict | None = None):
        self.videos, self.gt, self.actions, self.eval_cfg = videos, gt, actions, eval_cfg
        self.thresholds = tuple(metric_thresholds or eval_cfg.tiou_thresholds)
        self.placements = placements or {}  # clip -> (recording, offset), for challenge binning
        self.calls = 0
        self._singles: np.ndarray | None = None

    def subset(self, video_ids: set[str]) -> Evaluator:
        keep = np.array([v in video_ids for v in self.gt.video], dtype=bool)
        gt = Segments(self.gt.video[keep], self.gt.label[keep], self.gt.start[keep], self.gt.end[keep],
                      self.gt.score[keep])
        return Evaluator([v for v in self.videos if v.video_id in video_ids], gt, self.actions, self.eval_cfg,
                         self.thresholds, self.placements)

    def single_scores(self) -> np.ndarray:
        """val mAP of each member alone (computed once per evaluator: every procedure starts from them)."""
        if self._singles is None:
            members = self.videos[0].probs.shape[0]
            self._singles = np.array(map_scores(lambda m: self.score(np.eye(members)[m]), range(members)))
            self.calls += members if workers() > 1 and members >= MIN_ITEMS else 0  # counted in the workers
        return self._singles

    def fused(self, weights: np.ndarray) -> list[np.ndarray]:
        return [np.tensordot(weights, v.probs, axes=1) for v in self.videos]

    def detections(self, fused: list[np.ndarray]) -> Segments:
        decoded = decode_videos([(v.starts, v.ends, p) for v, p in zip(self.videos, fused, strict=True)],
                                self.eval_cfg)
        names = np.array(self.actions, dtype=object)
        counts = [len(seg) for seg in decoded]
        video = np.repeat(np.array([v.video_id for v in self.videos], dtype=object), counts)
        if not sum(counts):
            return Segments.from_rows([])
        label = names[np.concatenate([seg.label for seg in decoded]) - 1]
        return Segments(video, label, *(np.concatenate([getattr(seg, f) for seg in decoded])
                                         for f in ("start", "end", "score")))

    def score_fused(self, fused: list[np.ndarray]):
        self.calls += 1
        found = self.detections(fused)
        if self.eval_cfg.bin_seconds:  # the challenge bins recording time
            truth, found = to_recording_time(self.gt, self.placements), to_recording_time(found, self.placements)
        else:
            truth = self.gt
        truth, found = binned(truth, found, self.eval_cfg.bin_seconds)
        return average_precision(truth, found, self.thresholds)

    def score(self, weights: np.ndarray) -> float:
        return self.score_fused(self.fused(np.asarray(weights, dtype=np.float64))).mean
