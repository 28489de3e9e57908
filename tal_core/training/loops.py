"""Train and predict loops: plain PyTorch, CPU or CUDA, single process or DDP.

Under ``torch.distributed`` (e.g. inside a Ray Train worker) data are sharded with a DistributedSampler and
predictions are gathered so that every rank ends with the same cells.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.functional import softmax
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from tal_core.config import LossConfig
from tal_core.data.dataset import IntervalDataset
from tal_core.scoring.predictions import IntervalPredictions
from tal_core.training.distributed import is_distributed
from tal_core.training.losses import multitask_loss
from tal_core.training.modality_balance import modality_factors, scaled_step


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def per_rank_batch(batch_size: int) -> int:
    """Global-batch semantics: ``train.batch_size`` is split over the DDP ranks (rounded up), so k ranks take
    about the optimizer steps of one process on the same effective batch."""
    return -(-batch_size // dist.get_world_size()) if is_distributed() else batch_size


def make_loader(dataset: IntervalDataset, batch_size: int, shuffle: bool, seed: int, epoch: int,
                num_workers: int) -> DataLoader:
    """``batch_size`` is per rank (see ``per_rank_batch``)."""
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


BatchTransform = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple]


def to_device(inputs, device):
    """A batch's model inputs (clips, or a dict of "video" clips and "audio" windows) on ``device``."""
    if isinstance(inputs, dict):
        return {name: value.to(device, non_blocking=True) for name, value in inputs.items()}
    return inputs.to(device, non_blocking=True)


def train_one_epoch(model, loader, optimizer, scheduler, loss_cfg: LossConfig, device, amp: bool,
                    progress: bool = False, after_step: Callable[[], None] | None = None,
                    transform: BatchTransform | None = None, class_weight: torch.Tensor | None = None
                    ) -> dict[str, float]:
    """One pass over ``loader``; ``transform(clips, action, frame_labels)`` augments each batch on the device,
    ``after_step`` is called after every optimizer step. Returns the mean total/action/scene/frame losses (and with
    ``loss.gradient_modulation``, each branch's mean update factor)."""
    model.train()
    totals = np.zeros(4)
    seen = 0
    scales = []  # per step, each modality branch's update factor (loss.gradient_modulation)
    batches = tqdm(loader, desc="train", leave=False, file=sys.stderr, disable=not progress)
    for clips, action, frame_labels, scene, _ in batches:
        clips = to_device(clips, device)
        action, frame_labels, scene = action.to(device), frame_labels.to(device), scene.to(device)
        if transform is not None:
            clips, action, frame_labels = transform(clips, action, frame_labels)
        with autocast_for(device, amp):
            out = model(clips)
        parts = multitask_loss(out.action, out.scene, action, scene, loss_cfg, out.frame, frame_labels, class_weight,
                               out.unimodal)
        if not torch.isfinite(parts.total):
            raise NonFiniteLossError(f"training loss became {parts.total.item()} (lower train.lr?)")
        optimizer.zero_grad(set_to_none=True)
        parts.total.backward()
        if loss_cfg.gradient_modulation > 0 and out.contributions:  # video+audio: slow the branch leaned on
            scales.append(modality_factors(out.contributions, action, loss_cfg.gradient_modulation))
            scaled_step(optimizer, getattr(model, "module", model).branches(), scales[-1])
        else:
            optimizer.step()
        scheduler.step()
        if after_step is not None:
            after_step()
        totals += len(action) * np.array([parts.total.item(), parts.action.item(), parts.scene.item(),
                                          parts.frame.item()])
        seen += len(action)
    mean = totals / max(seen, 1)
    found = {"train_loss": mean[0], "train_action_loss": mean[1], "train_scene_loss": mean[2],
             "train_frame_loss": mean[3]}
    if scales:  # video+audio with gradient modulation: the mean factor of each branch's updates this epoch
        names = ("train_update_scale_video", "train_update_scale_audio")
        found |= dict(zip(names, np.mean(scales, axis=0).tolist(), strict=True))
    return found


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
            out = model(to_device(clips, device))
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


def cosine_steps(epochs: int, steps_per_epoch: int) -> int:
    return max(1, epochs * max(steps_per_epoch, 1))


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
