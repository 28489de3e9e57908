"""Weighted fusion on the common grid and its val mAP: the per-candidate work of the search.

Evaluating a weight vector = one weighted sum per video (over the members with weight > 0, in float32) +
decode + mAP; no reloads. Cross-validation makes evaluators of subsets of the videos; they share their root's
per-member detections (each member decoded once, on every video) and its fitted procedures, so a member's
score on any subset is a filter and an mAP, never a second decode.
"""

from __future__ import annotations

import numpy as np

from tal_core.config import EvalConfig
from tal_core.decoding.decode import CellLayout, decode_flat
from tal_core.scoring.binning import binned_predictions, binned_truth
from tal_core.scoring.metrics import Segments, average_precision

from .align import AlignedVideo
from .boundaries import apply_offsets
from .calibrate import cell_labels, fit_temperatures, tempered
from .parallel import map_scores
from .segment_fusion import fuse_segments


class Evaluator:
    """Scores fused probabilities of the aligned val videos against their ground truth."""

    def __init__(self, videos: list[AlignedVideo], gt: Segments, actions: tuple[str, ...], eval_cfg: EvalConfig,
                 metric_thresholds=None, placements: dict | None = None, root: Evaluator | None = None,
                 trials=None):
        self.videos, self.gt, self.actions, self.eval_cfg = videos, gt, actions, eval_cfg
        # per member, the training run it is an epoch of (snapshots share their trial's); None: each its own
        self.trials = np.arange(self.members) if trials is None else np.asarray(trials, dtype=np.int64)
        self.thresholds = tuple(metric_thresholds or eval_cfg.tiou_thresholds)
        self.placements = placements or {}  # clip -> (recording, offset), for challenge binning
        self.calls = 0  # evaluations (decode + mAP) made here; a root also counts its subsets'
        self._singles: np.ndarray | None = None
        self._single_class_ap: np.ndarray | None = None
        self._single_classes: tuple[str, ...] = ()
        self.scored_truth = binned_truth(gt, eval_cfg.bin_seconds, self.placements)  # once, not per evaluation
        self._video_ids = np.array([v.video_id for v in videos], dtype=object)
        self._action_names = np.array(actions, dtype=object)
        self._layout = CellLayout([(v.starts, v.ends) for v in videos])  # the same cells at every evaluation
        self.video_ends = {v.video_id: float(v.ends[-1]) for v in videos}  # where each video's cells end
        # the evaluator of all the videos (itself, or the one this is a subset of): it keeps what every subset reuses
        self._root = root if root is not None else self
        if self._root is self:
            self._member_detections: dict[int, tuple[np.ndarray, ...]] = {}  # decoded on the root's videos
            self.fits: dict = {}  # fitted procedures by (procedure, its options, videos), see select.procedures
            self._subsets: dict[frozenset, Evaluator] = {}  # by their videos
            self._local = np.arange(len(videos))
        else:  # each root video's index here (-1: not here)
            position = {v.video_id: i for i, v in enumerate(videos)}
            self._local = np.array([position.get(v.video_id, -1) for v in self._root.videos], dtype=np.int64)

    @property
    def members(self) -> int:
        return self.videos[0].probs.shape[0]

    def subset(self, video_ids: set[str]) -> Evaluator:
        """These videos' evaluator for the ones in ``video_ids`` (in this evaluator's order), sharing its root;
        the same object for the same videos (its single scores are computed once)."""
        key = frozenset(v.video_id for v in self.videos if v.video_id in video_ids)
        subsets = self._root._subsets
        if key not in subsets:
            subsets[key] = self._subset(key)
        return subsets[key]

    def _subset(self, video_ids: frozenset[str]) -> Evaluator:
        keep = np.array([v in video_ids for v in self.gt.video], dtype=bool)
        gt = Segments(self.gt.video[keep], self.gt.label[keep], self.gt.start[keep], self.gt.end[keep],
                      self.gt.score[keep])
        return Evaluator([v for v in self.videos if v.video_id in video_ids], gt, self.actions, self.eval_cfg,
                         self.thresholds, self.placements, root=self._root, trials=self.trials)

    def memo(self, key, compute):
        """``compute()``, once per key for this root and all its subsets (``key`` names the videos too)."""
        fits = self._root.fits
        if key not in fits:
            fits[key] = compute()
        return fits[key]

    def fit_temperatures(self, members=None) -> np.ndarray:
        """Per member (of ``members``, default all), the temperature that calibrates its probabilities on these
        videos (``calibrate``)."""
        return fit_temperatures(self.videos, cell_labels(self.videos, self.gt, self.actions), members)

    def restricted(self, members, temperatures=None) -> Evaluator:
        """An evaluator of these videos with only ``members`` (in that order), their probabilities copied in
        float32 and tempered by ``temperatures`` (one per member given; None: as stored). It is a root of its
        own: its members' detections differ from the stored members' once tempered."""
        members = np.asarray(members, dtype=np.int64)
        temps = np.ones(len(members)) if temperatures is None else np.asarray(temperatures, dtype=np.float64)
        videos = [AlignedVideo(v.video_id, v.starts, v.ends,
                               np.stack([_member_probs(v.probs[m], t) for m, t in zip(members, temps, strict=True)]),
                               v.scene_probs[members]) for v in self.videos]
        return Evaluator(videos, self.gt, self.actions, self.eval_cfg, self.thresholds, self.placements,
                         trials=self.trials[members])

    def one_trial(self, weights) -> bool:
        """Whether ``weights`` lie on the epochs of one training run alone (a trial and its snapshots)."""
        return len(np.unique(self.trials[np.asarray(weights) > 0])) <= 1

    def detections_of(self, chosen) -> Segments:
        """Detections of a selection result: its temperatures, weights, fusion and boundary offsets applied to
        these videos."""
        found = self.detections_for(chosen.weights, chosen.fusion, chosen.temperatures, chosen.class_members,
                                    chosen.class_weights, chosen.stacker)
        return apply_offsets(found, chosen.boundary_offsets, self.video_ends)

    def single_scores(self) -> np.ndarray:
        """val mAP of each member alone on these videos, computed once per evaluator (every procedure starts from
        them): each member is decoded once for the root, and a subset filters those detections."""
        if self._singles is None:
            self._root.decode_members(range(self.members))
            found = self.each(self._member_score, range(self.members))
            self._singles = np.array([mean for mean, _, _ in found])
            self._single_class_ap = np.stack([per_class for _, per_class, _ in found])
            self._single_classes = found[0][2] if found else ()
        return self._singles

    def single_class_ap(self) -> np.ndarray:
        """(members, classes with ground truth here) AP of each member alone, averaged over the tIoU thresholds;
        the classes' names: ``single_classes``."""
        self.single_scores()
        return self._single_class_ap

    def single_classes(self) -> tuple[str, ...]:
        """The action classes (columns) of ``single_class_ap``."""
        self.single_scores()
        return self._single_classes

    def _member_score(self, member: int) -> tuple[float, np.ndarray, tuple[str, ...]]:
        result = self.score_detections(self._named(*self.member_detections(member)))
        return result.mean, result.ap.mean(axis=0), tuple(result.classes)

    def decode_members(self, members) -> None:
        """Decode the members not decoded yet (on forked processes where that pays); the root's cache."""
        root = self._root
        missing = [m for m in members if m not in root._member_detections]
        decoded = map_scores(root._decode_member, missing)
        root._member_detections.update(zip(missing, decoded, strict=True))

    def score_each(self, score_of, indices) -> np.ndarray:
        """``score_of(i)`` for every index, on forked processes where that pays (``parallel.map_scores``); each
        is one evaluation, counted here whichever process made it."""
        return np.array(self.each(score_of, indices))

    def each(self, score_of, indices) -> list:
        """``score_each`` for anything a score function returns (a list, in the order of ``indices``)."""
        indices = list(indices)
        before, root_before = self.calls, self._root.calls
        scores = map_scores(score_of, indices)
        self.calls = before + len(indices)
        if self._root is not self:
            self._root.calls = root_before + len(indices)
        return scores

    def fused(self, weights: np.ndarray, temperatures: np.ndarray | None = None) -> list[np.ndarray]:
        """Per video, the weighted sum of the members' probabilities (float32; members with weight 0 are not
        read), each member tempered first where ``temperatures`` says (``calibrate.tempered``)."""
        weights = np.asarray(weights, dtype=np.float64)
        members = np.flatnonzero(weights)
        temps = np.ones(len(weights)) if temperatures is None else np.asarray(temperatures, dtype=np.float64)
        if len(members) and np.all(temps[members] == 1):  # one gather and one matrix product per video
            w = weights[members].astype(np.float32)
            return [(w @ v.probs[members].reshape(len(members), -1).astype(np.float32)).reshape(v.probs.shape[1:])
                    for v in self.videos]
        out = []
        for v in self.videos:
            total = np.zeros(v.probs.shape[1:], dtype=np.float32)
            for m in members:
                total += np.float32(weights[m]) * _member_probs(v.probs[m], temps[m])
            out.append(total)
        return out

    def fused_by_column(self, columns: np.ndarray) -> list[np.ndarray]:
        """Per video, each probability column (background, then the classes) the sum of the members' columns
        weighted by ``columns`` (members, 1 + classes); float32, members whose weights are all 0 not read."""
        members = np.flatnonzero(np.any(columns != 0, axis=1))
        w = columns[members].astype(np.float32)[:, None, :]
        return [(v.probs[members].astype(np.float32) * w).sum(axis=0) for v in self.videos]

    def detections(self, fused: list[np.ndarray]) -> Segments:
        return self._named(*decode_flat([(v.starts, v.ends, p) for v, p in zip(self.videos, fused, strict=True)],
                                        self.eval_cfg, self._layout))

    def member_detections(self, member: int) -> tuple[np.ndarray, ...]:
        """One member's own detections on these videos (integer-coded video, label, start, end, score): decoded
        once, on the root's videos, and filtered to these."""
        root = self._root
        if member not in root._member_detections:
            root._member_detections[member] = root._decode_member(member)
        video, label, start, end, score = root._member_detections[member]
        if root is self:
            return video, label, start, end, score
        local = self._local[video]
        here = local >= 0
        return local[here], label[here], start[here], end[here], score[here]

    def _decode_member(self, member: int) -> tuple[np.ndarray, ...]:
        video, label, start, end, score = decode_flat([(v.starts, v.ends, _member_probs(v.probs[member], 1.0))
                                                       for v in self.videos], self.eval_cfg, self._layout)
        return video.astype(np.int32), label.astype(np.int16), start, end, score

    def _named(self, video, label, start, end, score) -> Segments:
        if not len(video):
            return Segments.from_rows([])
        return Segments(self._video_ids[video], self._action_names[label - 1], start, end, score)

    def score_fused(self, fused: list[np.ndarray]):
        return self.score_detections(self.detections(fused))

    def score_detections(self, detections: Segments):
        """mAP of detections on these videos (binned as the challenge scores when ``eval.bin_seconds``)."""
        self.calls += 1
        if self._root is not self:
            self._root.calls += 1  # the root counts every evaluation of its subsets too
        return average_precision(self.scored_truth, self.scored(detections), self.thresholds)

    def scored(self, detections: Segments) -> Segments:
        """Detections as they are scored (split over the challenge's bins when ``eval.bin_seconds``)."""
        return binned_predictions(detections, self.eval_cfg.bin_seconds, self.placements)

    def detections_for(self, weights: np.ndarray, fusion: str = "probabilities",
                       temperatures: np.ndarray | None = None, class_members: np.ndarray | None = None,
                       class_weights: np.ndarray | None = None, stacker=None) -> Segments:
        """Detections of a weighted ensemble (members tempered first where ``temperatures`` says): its fused
        probabilities decoded, or its members' own detections pooled and voted (``segment_fusion``), or
        (``classwise``) each action class's detections from the one member ``class_members`` names for it, or
        (``classmix``) the probabilities fused column by column with ``class_weights`` (members, 1 + classes), or
        (``stacked``) the probabilities ``stacker`` (``stacking.Stacker``) makes of its members'."""
        weights = np.asarray(weights, dtype=np.float64)
        if fusion == "probabilities":
            return self.detections(self.fused(weights, temperatures))
        if fusion == "classmix":
            return self.detections(self.fused_by_column(np.asarray(class_weights, dtype=np.float64)))
        if fusion == "stacked":
            return self.detections([stacker.probabilities(v.probs) for v in self.videos])
        if fusion == "classwise":
            return self._named(*self._classwise(np.asarray(class_members, dtype=np.int64)))
        members = np.flatnonzero(weights > 0)
        source = self if temperatures is None else self.restricted(members, np.asarray(temperatures)[members])
        found = [source.member_detections(int(m) if temperatures is None else i) for i, m in enumerate(members)]
        return self._named(*fuse_segments(found, weights[members], self.eval_cfg))

    def _classwise(self, class_members: np.ndarray) -> tuple[np.ndarray, ...]:
        """Each member's own detections of the classes it owns (``class_members[label - 1]``), at most
        ``eval.max_segments_per_video`` per video (the highest scores)."""
        parts = []
        for member in np.unique(class_members):
            video, label, start, end, score = self.member_detections(int(member))
            owned = class_members[label.astype(np.int64) - 1] == member
            parts.append((video[owned], label[owned], start[owned], end[owned], score[owned]))
        video, label, start, end, score = (np.concatenate([part[i] for part in parts]) for i in range(5))
        order = np.lexsort((-score, video))  # by video, best first
        rank = np.arange(len(order)) - np.searchsorted(video[order], video[order])
        keep = np.sort(order[rank < self.eval_cfg.max_segments_per_video])
        return video[keep], label[keep], start[keep], end[keep], score[keep]

    def score(self, weights: np.ndarray) -> float:
        return self.score_fused(self.fused(np.asarray(weights, dtype=np.float64))).mean


def _member_probs(probs: np.ndarray, temperature: float) -> np.ndarray:
    """One member's stored probabilities (any float dtype) in float32, tempered unless ``temperature`` is 1."""
    probs = probs.astype(np.float32)
    return probs if temperature == 1 else tempered(probs, temperature).astype(np.float32)
