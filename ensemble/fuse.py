"""Weighted fusion on the common grid and its val mAP: the per-candidate work of the search.

Evaluating a weight vector = one weighted sum per video + decode + mAP; no reloads.
"""

from __future__ import annotations

import numpy as np

from tal_core.config import EvalConfig
from tal_core.decoding.decode import CellLayout, decode_flat
from tal_core.scoring.binning import binned_predictions, binned_truth
from tal_core.scoring.metrics import Segments, average_precision

from .align import AlignedVideo
from .boundaries import apply_offsets
from .calibrate import apply_temperatures, cell_labels, fit_temperatures
from .parallel import map_scores
from .segment_fusion import fuse_segments


class Evaluator:
    """Scores fused probabilities of the aligned val videos against their ground truth."""

    def __init__(self, videos: list[AlignedVideo], gt: Segments, actions: tuple[str, ...], eval_cfg: EvalConfig,
                 metric_thresholds=None, placements: dict | None = None):
        self.videos, self.gt, self.actions, self.eval_cfg = videos, gt, actions, eval_cfg
        self.thresholds = tuple(metric_thresholds or eval_cfg.tiou_thresholds)
        self.placements = placements or {}  # clip -> (recording, offset), for challenge binning
        self.calls = 0
        self._singles: np.ndarray | None = None
        self.scored_truth = binned_truth(gt, eval_cfg.bin_seconds, self.placements)  # once, not per evaluation
        self._video_ids = np.array([v.video_id for v in videos], dtype=object)
        self._action_names = np.array(actions, dtype=object)
        self._layout = CellLayout([(v.starts, v.ends) for v in videos])  # the same cells at every evaluation
        self._member_detections: dict[int, tuple[np.ndarray, ...]] = {}
        self.video_ends = {v.video_id: float(v.ends[-1]) for v in videos}  # where each video's cells end

    def subset(self, video_ids: set[str]) -> Evaluator:
        keep = np.array([v in video_ids for v in self.gt.video], dtype=bool)
        gt = Segments(self.gt.video[keep], self.gt.label[keep], self.gt.start[keep], self.gt.end[keep],
                      self.gt.score[keep])
        return Evaluator([v for v in self.videos if v.video_id in video_ids], gt, self.actions, self.eval_cfg,
                         self.thresholds, self.placements)

    def fit_temperatures(self) -> np.ndarray:
        """Per member, the temperature that calibrates its probabilities on these videos (``calibrate``)."""
        return fit_temperatures(self.videos, cell_labels(self.videos, self.gt, self.actions))

    def with_temperatures(self, temperatures: np.ndarray | None) -> Evaluator:
        """The same videos with each member's probabilities tempered (itself when ``temperatures`` is None)."""
        if temperatures is None:
            return self
        return Evaluator(apply_temperatures(self.videos, temperatures), self.gt, self.actions, self.eval_cfg,
                         self.thresholds, self.placements)

    def detections_of(self, chosen) -> Segments:
        """Detections of a selection result: its temperatures, weights, fusion and boundary offsets applied to
        these videos."""
        found = self.with_temperatures(chosen.temperatures).detections_for(chosen.weights, chosen.fusion)
        return apply_offsets(found, chosen.boundary_offsets, self.video_ends)

    def single_scores(self) -> np.ndarray:
        """val mAP of each member alone (computed once per evaluator: every procedure starts from them)."""
        if self._singles is None:
            members = self.videos[0].probs.shape[0]
            self._singles = self.score_each(lambda m: self.score(np.eye(members)[m]), range(members))
        return self._singles

    def score_each(self, score_of, indices) -> np.ndarray:
        """``score_of(i)`` for every index, on forked processes where that pays (``parallel.map_scores``); each
        is one evaluation, counted here whichever process made it."""
        indices = list(indices)
        before = self.calls
        scores = np.array(map_scores(score_of, indices))
        self.calls = before + len(indices)
        return scores

    def fused(self, weights: np.ndarray) -> list[np.ndarray]:
        return [np.tensordot(weights, v.probs, axes=1) for v in self.videos]

    def detections(self, fused: list[np.ndarray]) -> Segments:
        return self._named(*decode_flat([(v.starts, v.ends, p) for v, p in zip(self.videos, fused, strict=True)],
                                        self.eval_cfg, self._layout))

    def member_detections(self, member: int) -> tuple[np.ndarray, ...]:
        """One member's own detections (integer-coded video, label, start, end, score), decoded once."""
        if member not in self._member_detections:
            self._member_detections[member] = decode_flat(
                [(v.starts, v.ends, v.probs[member]) for v in self.videos], self.eval_cfg, self._layout)
        return self._member_detections[member]

    def _named(self, video, label, start, end, score) -> Segments:
        if not len(video):
            return Segments.from_rows([])
        return Segments(self._video_ids[video], self._action_names[label - 1], start, end, score)

    def score_fused(self, fused: list[np.ndarray]):
        return self.score_detections(self.detections(fused))

    def score_detections(self, detections: Segments):
        """mAP of detections on these videos (binned as the challenge scores when ``eval.bin_seconds``)."""
        self.calls += 1
        return average_precision(self.scored_truth, self.scored(detections), self.thresholds)

    def scored(self, detections: Segments) -> Segments:
        """Detections as they are scored (split over the challenge's bins when ``eval.bin_seconds``)."""
        return binned_predictions(detections, self.eval_cfg.bin_seconds, self.placements)

    def detections_for(self, weights: np.ndarray, fusion: str = "probabilities") -> Segments:
        """Detections of a weighted ensemble: its fused probabilities decoded, or its members' own detections
        pooled and voted (``segment_fusion``)."""
        weights = np.asarray(weights, dtype=np.float64)
        if fusion == "probabilities":
            return self.detections(self.fused(weights))
        members = np.flatnonzero(weights > 0)
        return self._named(*fuse_segments([self.member_detections(int(m)) for m in members], weights[members],
                                          self.eval_cfg))

    def score(self, weights: np.ndarray) -> float:
        return self.score_fused(self.fused(np.asarray(weights, dtype=np.float64))).mean
