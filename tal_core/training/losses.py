"""The multi-task loss: weighted sum of the action, per-frame action and scene cross-entropies."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from tal_core.config import LossConfig


@dataclass(frozen=True)
class LossParts:
    total: torch.Tensor
    action: torch.Tensor
    scene: torch.Tensor
    frame: torch.Tensor


def balanced_class_weights(label_counts) -> torch.Tensor:
    """1 / sqrt(share) per class (0 for classes never seen), normalised to mean 1 over the seen classes."""
    counts = torch.as_tensor(label_counts, dtype=torch.float32)
    weights = torch.where(counts > 0, counts.clamp(min=1).rsqrt(), torch.zeros_like(counts))
    seen = counts > 0
    return weights * seen.sum() / weights[seen].sum() if seen.any() else torch.ones_like(counts)


def action_cross_entropy(logits, target, class_weight, cfg: LossConfig) -> torch.Tensor:
    """Class-weighted cross-entropy with label smoothing, or its focal form (``loss.focal_gamma`` > 0):
    each item's term times (1 - p_target)^gamma, averaged with the class weights as cross_entropy does."""
    logits = logits.float()
    if cfg.focal_gamma == 0:
        return F.cross_entropy(logits, target, weight=class_weight, label_smoothing=cfg.label_smoothing)
    per_item = F.cross_entropy(logits, target, reduction="none", label_smoothing=cfg.label_smoothing)
    p_target = logits.softmax(dim=1).gather(1, target[:, None]).squeeze(1)
    item_weight = class_weight[target]
    focal = (1 - p_target).clamp(min=0) ** cfg.focal_gamma
    return (focal * per_item * item_weight).sum() / item_weight.sum().clamp(min=1e-12)


def multitask_loss(action_logits, scene_logits, action_target, scene_target, cfg: LossConfig,
                   frame_logits=None, frame_target=None, class_weight=None, unimodal=()) -> LossParts:
    """``loss.action_weight * CE(action) + loss.scene_weight * CE(scene) [+ loss.frame_weight * CE(frame)]``.

    Action classes are weighted by ``class_weight`` (default 1; ``balanced_class_weights`` with
    ``loss.class_balanced``) with background (class 0) times ``loss.background_weight`` in both action terms,
    which are focal with ``loss.focal_gamma`` > 0; intervals of videos with an unknown scene (target -1) are
    left out of the scene term; the frame term is there when ``frame_logits`` (N, T, K + 1) and
    ``frame_target`` (N, T) are given. ``unimodal``: each modality's own (interval, per-frame or None) logits,
    whose action terms (weighted as the fused ones) add ``loss.modality_weight`` times their sum to the total.
    """
    if class_weight is None:
        class_weight = torch.ones(action_logits.shape[1], device=action_logits.device)
    class_weight = class_weight.to(action_logits.device, torch.float32).clone()
    class_weight[0] = class_weight[0] * cfg.background_weight
    action = action_cross_entropy(action_logits, action_target, class_weight, cfg)
    known = scene_target >= 0
    if known.any():
        scene = F.cross_entropy(scene_logits[known].float(), scene_target[known],
                                label_smoothing=cfg.label_smoothing)
    else:
        scene = scene_logits.sum() * 0.0
    total = cfg.action_weight * action + cfg.scene_weight * scene
    frame = torch.zeros((), device=action_logits.device)
    if frame_logits is not None:
        frame = action_cross_entropy(frame_logits.flatten(0, 1), frame_target.flatten(), class_weight, cfg)
        total = total + cfg.frame_weight * frame
    for own_action, own_frame in unimodal:
        own = cfg.action_weight * action_cross_entropy(own_action, action_target, class_weight, cfg)
        if own_frame is not None:
            own = own + cfg.frame_weight * action_cross_entropy(own_frame.flatten(0, 1), frame_target.flatten(),
                                                                class_weight, cfg)
        total = total + cfg.modality_weight * own
    return LossParts(total, action.detach(), scene.detach(), frame.detach())
