"""The multi-task loss: weighted sum of the action, per-frame action and scene cross-entropies."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .config import LossConfig


@dataclass(frozen=True)
class LossParts:
    total: torch.Tensor
    action: torch.Tensor
    scene: torch.Tensor
    frame: torch.Tensor


def multitask_loss(action_logits, scene_logits, action_target, scene_target, cfg: LossConfig,
                   frame_logits=None, frame_target=None) -> LossParts:
    """``loss.action_weight * CE(action) + loss.scene_weight * CE(scene) [+ loss.frame_weight * CE(frame)]``.

    Background (class 0) is weighted by ``loss.background_weight`` in both action terms; intervals of
    videos with an unknown scene (target -1) are left out of the scene term; the frame term is there
    when ``frame_logits`` (N, T, K + 1) and ``frame_target`` (N, T) are given.
    """
    class_weight = torch.ones(action_logits.shape[1], device=action_logits.device)
    class_weight[0] = cfg.background_weight
    action = F.cross_entropy(action_logits.float(), action_target, weight=class_weight,
                             label_smoothing=cfg.label_smoothing)
    known = scene_target >= 0
    if known.any():
        scene = F.cross_entropy(scene_logits[known].float(), scene_target[known],
                                label_smoothing=cfg.label_smoothing)
    else:
        scene = scene_logits.sum() * 0.0
    total = cfg.action_weight * action + cfg.scene_weight * scene
    frame = torch.zeros((), device=action_logits.device)
    if frame_logits is not None:
        frame = F.cross_entropy(frame_logits.flatten(0, 1).float(), frame_target.flatten(), weight=class_weight,
                                label_smoothing=cfg.label_smoothing)
        total = total + cfg.frame_weight * frame
    return LossParts(total, action.detach(), scene.detach(), frame.detach())
