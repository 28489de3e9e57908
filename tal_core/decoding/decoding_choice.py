"""Which decoding a run uses: its eval section's own and each of ``eval.alternatives``, scored on val.

Decoding is cheap next to a forward pass, so every evaluation decodes the same predictions every way and
keeps the one with the best val mAP (the first listed among equals, the section's own first). A decoding
that suits clean boundaries (median smoothing, merge) and one that suits flickering, noisy actions (mean
smoothing, thresholds, edge refinement) can then live in one recipe, and each data set gets its own.

The choice has seen val, as the best epoch has. ``out_of_fold`` says what choosing costs: val videos in
folds, each fold decoded the way that scores best on the other folds, then all of them scored together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from tal_core.config import Config, EvalConfig
from tal_core.data.annotations import DatasetSpec
from tal_core.decoding.evaluation import decode_predictions, detection_metrics, scene_metrics
from tal_core.scoring.predictions import IntervalPredictions

FOLDS = 4  # val folds of the out-of-fold figure (fewer with fewer val videos)


@dataclass(frozen=True)
class DecodingChoice:
    name: str  # "config" (the eval section as it is) or a key of eval.alternatives
    eval: EvalConfig  # that decoding, alternatives emptied
    metrics: dict[str, float]  # its val_mAP, val_mAP@t ..., val_scene_acc
    per_class: dict[str, float]
    detections: dict[str, list[dict]]
    val_map: dict[str, float]  # every decoding's val mAP, by name
    scored_as: tuple = field(default=(), repr=False, compare=False)  # (spec, subset, folds, every decoding's detections)

    @cached_property
    def out_of_fold(self) -> float | None:
        """val mAP with each fold of videos decoded as chosen on the other folds (None: one decoding). Computed
        when first asked (a run asks at its best epochs only)."""
        if len(self.val_map) < 2:
            return None
        spec, subset, folds, detections = self.scored_as
        return _out_of_fold(spec, subset, detections, self.eval, folds)

    def summary(self) -> dict:
        """What metrics.json keeps under "decoding"."""
        return {"chosen": self.name, "val_mAP": {k: round(v, 6) for k, v in self.val_map.items()},
                "out_of_fold_val_mAP": None if self.out_of_fold is None else round(self.out_of_fold, 6)}


def choose_decoding(spec: DatasetSpec, pred: IntervalPredictions, cfg: Config, subset: str = "val",
                    scene_prior: np.ndarray | None = None, folds: int = FOLDS) -> DecodingChoice:
    """Decode ``pred`` with every decoding of ``cfg.eval`` and keep the best by mAP on ``subset``."""
    options = cfg.eval.decodings()
    scored = []
    for name, decoding in options:
        detections = decode_predictions(pred, decoding, scene_prior)
        metrics, per_class = detection_metrics(spec, subset, detections, decoding.tiou_thresholds,
                                               bin_seconds=decoding.bin_seconds)
        scored.append((name, decoding, metrics, per_class, detections))
    best = max(range(len(scored)), key=lambda i: (scored[i][2]["val_mAP"], -i))
    name, decoding, metrics, per_class, detections = scored[best]
    metrics = dict(metrics, val_scene_acc=scene_metrics(spec, pred))
    val_map = {entry[0]: entry[2]["val_mAP"] for entry in scored}
    return DecodingChoice(name, decoding, metrics, per_class, detections, val_map,
                          (spec, subset, folds, [entry[4] for entry in scored]))


def _out_of_fold(spec: DatasetSpec, subset: str, detections: list[dict[str, list[dict]]], eval_cfg: EvalConfig,
                 folds: int) -> float | None:
    """val mAP of detections where each fold of videos takes the decoding that scores best on the other folds."""
    videos = sorted(detections[0])
    folds = min(folds, len(videos))
    if folds < 2:
        return None
    fold_of = {video: i % folds for i, video in enumerate(videos)}
    combined: dict[str, list[dict]] = {}
    for fold in range(folds):
        rest = {v for v in videos if fold_of[v] != fold}
        scores = [detection_metrics(spec, subset, found, eval_cfg.tiou_thresholds, bin_seconds=eval_cfg.bin_seconds,
                                    videos=rest)[0]["val_mAP"] for found in detections]
        pick = int(np.argmax(scores))  # the first among equals
        combined.update({v: detections[pick][v] for v in videos if fold_of[v] == fold})
    return detection_metrics(spec, subset, combined, eval_cfg.tiou_thresholds,
                             bin_seconds=eval_cfg.bin_seconds)[0]["val_mAP"]
