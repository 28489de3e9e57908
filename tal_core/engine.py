"""Train and evaluate loops: plain PyTorch, CPU or CUDA, single process or DDP.

Under ``torch.distributed`` (e.g. inside a Ray Train worker) data are sharded with
a DistributedSampler and predictions are gathered so that every rank ends with
the same val metrics.
"""

from __future__ import annotations

import math
import sys
from contextlib import nullcontext

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.functional import softmax
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from .config import Config, ConfigError, EvalConfig, LossConfig
from .data.annotations import DatasetSpec
from .data.dataset import IntervalDataset
from .decode import apply_scene_prior, decode_video
from .formats import detections_to_segments, ground_truth_segments, segments_to_detections
from .losses import multitask_loss
from .metrics import average_precision, scene_accuracy
from .predictions import IntervalPredictions


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def select_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("train.device=cuda but no CUDA device is available")
        index = torch.cuda.current_device() if is_distributed() else 0
        return torch.device("cuda", index)
    return torch.device("cpu")


def make_loader(dataset: IntervalDataset, batch_size: int, shuffle: bool, seed: int, epoch: int,
                num_workers: int) -> DataLoader:
    if is_distributed():
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=False)
        sampler.set_epoch(epoch)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                          persistent_workers=False, pin_memory=torch.cuda.is_available())
    generator = torch.Generator().manual_seed(seed * 1000 + epoch)  # a new, reproducible order every epoch
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      num_workers=num_workers, pin_memory=torch.cuda.is_available())


def autocast_for(device: torch.device, enabled: bool):
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def train_one_epoch(model, loader, optimizer, scheduler, loss_cfg: LossConfig, device, amp: bool,
                    progress: bool = False, first_step_hook=None) -> dict[str, float]:
    """One pass over ``loader``; returns the mean total/action/scene losses."""
    model.train()
    totals = np.zeros(4)
    seen = 0
    batches = tqdm(loader, desc="train", leave=False, file=sys.stderr, disable=not progress)
    for clips, action, frame_labels, scene, _ in batches:
        clips = clips.to(device, non_blocking=True)
        action, frame_labels, scene = action.to(device), frame_labels.to(device), scene.to(device)
        with autocast_for(device, amp):
            out = model(clips)
        parts = multitask_loss(out.action, out.scene, action, scene, loss_cfg, out.frame, frame_labels)
        if not torch.isfinite(parts.total):
            raise NonFiniteLossError(f"training loss became {parts.total.item()} (lower train.lr?)")
        optimizer.zero_grad(set_to_none=True)
        parts.total.backward()
        optimizer.step()
        scheduler.step()
        if first_step_hook is not None:
            first_step_hook()
            first_step_hook = None
        totals += len(clips) * np.array([parts.total.item(), parts.action.item(), parts.scene.item(),
                                         parts.frame.item()])
        seen += len(clips)
    mean = totals / max(seen, 1)
    return {"train_loss": mean[0], "train_action_loss": mean[1], "train_scene_loss": mean[2],
            "train_frame_loss": mean[3]}


@torch.no_grad()
def predict(model, dataset: IntervalDataset, device, batch_size: int, amp: bool, meta: dict,
            num_workers: int = 0) -> IntervalPredictions:
    """Cell and scene probabilities of every interval of ``dataset`` (gathered over ranks).

    Cells are the intervals, or with per-frame outputs the ``frames_per_interval`` equal cells of each
    interval (each frame's own prediction)."""
    model.eval()
    items, action_probs, scene_probs = [], [], []
    loader = make_loader(dataset, batch_size, shuffle=False, seed=0, epoch=0, num_workers=num_workers)
    for clips, _, _, _, index in loader:
        with autocast_for(device, amp):
            out = model(clips.to(device, non_blocking=True))
        cell_logits = out.action[:, None] if out.frame is None else out.frame  # (N, cells, K + 1)
        items.append(index.numpy())
        action_probs.append(softmax(cell_logits.float(), dim=-1).cpu().numpy())
        scene_probs.append(softmax(out.scene.float(), dim=1).cpu().numpy())
    local = _concat(items, action_probs, scene_probs, dataset)
    item_ids, probs, scenes = _gather(local)
    return _assemble(dataset, item_ids, probs, scenes, meta)


def _concat(items, action_probs, scene_probs, dataset):
    k = len(dataset.spec.taxonomy.actions) + 1
    s = max(len(dataset.spec.taxonomy.scenes), 1)
    return (np.concatenate(items) if items else np.zeros(0, np.int64),
            np.concatenate(action_probs) if action_probs else np.zeros((0, 1, k), np.float32),
            np.concatenate(scene_probs) if scene_probs else np.zeros((0, s), np.float32))


def _gather(local):
    if not is_distributed():
        return local
    shards = [None] * dist.get_world_size()
    dist.all_gather_object(shards, local)
    return tuple(np.concatenate([shard[i] for shard in shards]) for i in range(3))


def _assemble(dataset: IntervalDataset, item_ids, probs, scenes, meta) -> IntervalPredictions:
    """Put gathered rows back in dataset order (DistributedSampler pads with repeats)."""
    frames, width_a, width_s = probs.shape[1], probs.shape[2], scenes.shape[1]
    ordered_a = np.zeros((len(dataset), frames, width_a), np.float32)
    ordered_s = np.zeros((len(dataset), width_s), np.float32)
    ordered_a[item_ids], ordered_s[item_ids] = probs, scenes
    video_of_item = dataset.index[:, 0]
    starts, ends, per_video, scene_per_video = [], [], [], []
    for v, vi in enumerate(dataset.videos):
        rows = video_of_item == v
        if meta.get("cells") != "frame":  # interval outputs (averaged over evaluation passes, if several)
            starts.append(vi.starts)
            ends.append(vi.ends)
            per_video.append(ordered_a[rows, 0].reshape(len(vi.starts), -1, width_a).mean(axis=1))
        else:  # per-frame outputs: pass p of an interval holds cells p, p + P, ...: interleave them
            cell_starts, cell_ends = dataset.cells_of(v)
            starts.append(cell_starts)
            ends.append(cell_ends)
            by_pass = ordered_a[rows].reshape(len(vi.starts), dataset.phases, frames, width_a)
            per_video.append(by_pass.transpose(0, 2, 1, 3).reshape(-1, width_a))
        scene_per_video.append(ordered_s[rows].mean(axis=0))
    ids = [vi.video.video_id for vi in dataset.videos]
    return IntervalPredictions.from_videos(ids, starts, ends, per_video, np.array(scene_per_video), meta)


def decode_predictions(pred: IntervalPredictions, eval_cfg: EvalConfig,
                       scene_prior: np.ndarray | None = None) -> dict[str, list[dict]]:
    """ActivityNet-style detections of every video in ``pred``."""
    detections = {}
    for v, video_id in enumerate(pred.video_ids):
        starts, ends, probs = pred.video(v)
        if scene_prior is not None and eval_cfg.scene_prior:
            probs = apply_scene_prior(probs, pred.scene_probs[v], scene_prior)
        detections[video_id] = segments_to_detections(decode_video(starts, ends, probs, eval_cfg),
                                                      pred.actions)
    return detections


def detection_metrics(spec: DatasetSpec, subset: str, detections: dict[str, list[dict]],
                      thresholds, prefix: str = "val_") -> tuple[dict[str, float], dict[str, float]]:
    """({val_mAP, val_mAP@t...}, per-class AP) of ``detections`` against the subset's ground truth."""
    result = average_precision(ground_truth_segments(spec, subset), detections_to_segments(detections), thresholds)
    metrics = {f"{prefix}mAP": result.mean}
    metrics.update({f"{prefix}mAP@{t:g}": float(m) for t, m in zip(result.thresholds, result.map_per_threshold,
                                                                  strict=True)})
    return metrics, result.to_json()["per_class"]


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
    metrics, per_class = detection_metrics(spec, subset, detections, cfg.eval.tiou_thresholds)
    metrics["val_scene_acc"] = scene_metrics(spec, pred)
    return metrics, per_class, detections


def cosine_steps(epochs: int, steps_per_epoch: int) -> int:
    return max(1, epochs * max(steps_per_epoch, 1))


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
