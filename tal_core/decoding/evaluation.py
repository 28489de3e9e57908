"""Evaluation: cell probabilities -> detections -> val mAP (per tIoU and class) and scene accuracy."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tal_core.config import Config, EvalConfig
from tal_core.data.annotations import DatasetSpec
from tal_core.decoding.decode import apply_scene_prior, decode_videos
from tal_core.scoring.binning import binned
from tal_core.scoring.formats import (
    detections_to_segments,
    ground_truth_segments,
    placements_of,
    segments_to_detections,
)
from tal_core.scoring.metrics import Segments, average_precision, scene_accuracy
from tal_core.scoring.predictions import IntervalPredictions

if TYPE_CHECKING:  # the torch dataset is only a type here: decoding imports no torch
    from tal_core.data.dataset import IntervalDataset


def decode_predictions(pred: IntervalPredictions, eval_cfg: EvalConfig,
                       scene_prior: np.ndarray | None = None) -> dict[str, list[dict]]:
    """ActivityNet-style detections of every video in ``pred``."""
    videos = []
    for v in range(len(pred.video_ids)):
        starts, ends, probs = pred.video(v)
        if scene_prior is not None and eval_cfg.scene_prior:
            probs = apply_scene_prior(probs, pred.scene_probs[v], scene_prior)
        videos.append((starts, ends, probs))
    return {video_id: segments_to_detections(seg, pred.actions)
            for video_id, seg in zip(pred.video_ids, decode_videos(videos, eval_cfg), strict=True)}


def detection_metrics(spec: DatasetSpec, subset: str, detections: dict[str, list[dict]],
                      thresholds, prefix: str = "val_", bin_seconds: float = 0.0,
                      videos: set[str] | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """({val_mAP, val_mAP@t...}, per-class AP) of ``detections`` against the subset's ground truth (scored over
    ``bin_seconds`` bins as the challenge does, when set); with ``videos``, of those videos only."""
    truth = ground_truth_segments(spec, subset)
    if videos is not None:
        truth = _of_videos(truth, videos)
        detections = {v: found for v, found in detections.items() if v in videos}
    truth, found = binned(truth, detections_to_segments(detections), bin_seconds, placements_of(spec))
    result = average_precision(truth, found, thresholds)
    metrics = {f"{prefix}mAP": result.mean}
    metrics.update({f"{prefix}mAP@{t:g}": float(m) for t, m in zip(result.thresholds, result.map_per_threshold,
                                                                  strict=True)})
    return metrics, result.to_json()["per_class"]


def _of_videos(segments: Segments, videos: set[str]) -> Segments:
    keep = np.fromiter((v in videos for v in segments.video), dtype=bool, count=len(segments))
    return Segments(segments.video[keep], segments.label[keep], segments.start[keep], segments.end[keep],
                    segments.score[keep])


def scene_metrics(spec: DatasetSpec, pred: IntervalPredictions) -> float:
    scenes = spec.taxonomy.scenes
    truth = np.array([scenes.index(spec.videos[v].scene) if spec.videos[v].scene in scenes else -1
                      for v in pred.video_ids])
    guess = pred.scene_probs.argmax(axis=1) if len(pred.video_ids) else np.zeros(0)
    return scene_accuracy(truth, guess)


def scene_action_prior(dataset: IntervalDataset, num_scenes: int) -> np.ndarray:
    """(scenes, K) share of each action among the action intervals of each scene (add-one smoothed)."""
    num_actions = len(dataset.spec.taxonomy.actions)
    counts = np.ones((max(num_scenes, 1), num_actions))
    for vi in dataset.videos:
        if vi.scene >= 0:
            labels = vi.labels[vi.labels > 0] - 1
            np.add.at(counts[vi.scene], labels, 1)
    return counts / counts.sum(axis=1, keepdims=True)


def evaluate(spec: DatasetSpec, pred: IntervalPredictions, cfg: Config, subset: str,
             scene_prior: np.ndarray | None = None):
    """(metrics, per-class AP, detections) of predictions on a labelled subset."""
    detections = decode_predictions(pred, cfg.eval, scene_prior)
    metrics, per_class = detection_metrics(spec, subset, detections, cfg.eval.tiou_thresholds,
                                           bin_seconds=cfg.eval.bin_seconds)
    metrics["val_scene_acc"] = scene_metrics(spec, pred)
    return metrics, per_class, detections
