"""The multi-task TSM: backbone per frame, TSN average consensus over the frames of
an interval, an action head (K + 1 outputs, 0 = background) and a scene head.

With ``model.output=frame`` a third head classifies every frame (K + 1) from its own
features (which the temporal shift has mixed with its neighbours') next to the clip's
consensus features (what happens in this interval): predictions on cells finer than the
interval. The frame says whether the action is on screen, the clip says which one.

With sound (``data.modalities`` audio or video+audio) an audio branch (``audio_branch.py``) turns each frame's
log-mel window into features that are concatenated with that frame's video features (fusion before the
consensus and the heads); audio alone has no video backbone. The heads, cells and outputs stay the same.
Two remedies for modality competition (the fused network leaning on the modality that is easier to learn and
under-learning the other), both in training only and both for video+audio only: ``model.modality_dropout`` blanks
one modality's features (either, equally likely) in that share of the clips before the fused heads, so each modality
must classify alone at times; ``unimodal_heads`` (``loss.modality_weight`` > 0) gives each modality its own action
(and per-frame) heads, whose losses train each branch on every class; they are not used at evaluation. A third,
in the optimizer step: ``loss.gradient_modulation`` slows the branch the fused action head leans on
(``training/modality_balance.py``), from each modality's part of its logits (``Outputs.contributions``).
A fourth, with the own heads: ``model.fusion_detach`` stops the fused heads' gradients at the branches, so each
branch is trained by its own action heads alone, as if trained without the other modality (but without the scene
loss: the scene head reads the detached features too), and the fused heads learn to combine the two.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from tal_core.config import ModelConfig
from tal_core.model.audio_branch import AudioBranch
from tal_core.model.backbones import build_backbone

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255


class Outputs(NamedTuple):
    action: torch.Tensor  # (N, K + 1) interval logits
    scene: torch.Tensor  # (N, S) scene logits
    frame: torch.Tensor | None  # (N, T, K + 1) per-frame logits, or None for interval outputs
    unimodal: tuple = ()  # training with unimodal heads: per modality, its own (interval, per-frame or None) logits
    contributions: tuple = ()  # video+audio training: each modality's part of the action logits (modality_balance)


class MultiTaskTSM(nn.Module):
    def __init__(self, cfg: ModelConfig, n_segment: int, num_actions: int, num_scenes: int,
                 modalities: str = "video", unimodal_heads: bool = False, contributions: bool = True):
        super().__init__()
        self.n_segment = n_segment
        self.contributions = contributions  # training: each modality's part of the action logits (modality_balance)
        self.modality_dropout = cfg.modality_dropout if modalities == "video+audio" else 0.0
        self.fusion_detach = cfg.fusion_detach and modalities == "video+audio"
        self.backbone, dim = None, 0
        if modalities != "audio":
            self.backbone, dim = build_backbone(cfg.backbone, n_segment, cfg.shift_fraction, cfg.shift_place,
                                                cfg.pretrained, cfg.tiny_width)
        self.audio_branch = AudioBranch(cfg.audio_width) if "audio" in modalities else None
        dim += self.audio_branch.dim if self.audio_branch is not None else 0
        self.dropout = nn.Dropout(cfg.dropout)
        self.action_head = nn.Linear(dim, num_actions + 1)
        self.scene_head = nn.Linear(dim, max(num_scenes, 1))
        self.frame_head = nn.Linear(2 * dim, num_actions + 1) if cfg.output == "frame" else None
        self.unimodal_heads = nn.ModuleList()
        if unimodal_heads and modalities == "video+audio":
            for part_dim in (dim - self.audio_branch.dim, self.audio_branch.dim):
                self.unimodal_heads.append(_ActionHeads(part_dim, num_actions + 1, cfg.output == "frame"))
        self.register_buffer("mean", MEAN.clone(), persistent=False)
        self.register_buffer("std", STD.clone(), persistent=False)

    def forward(self, inputs: torch.Tensor | dict[str, torch.Tensor]) -> Outputs:
        """inputs: clips (N, T, 3, H, W) uint8 or float in [0, 255], or a dict of them ("video") and/or log-mel
        windows (N, T, W, 64) ("audio") -> interval, scene (and per-frame) logits."""
        clips, sounds = (inputs.get("video"), inputs.get("audio")) if isinstance(inputs, dict) else (inputs, None)
        parts = []
        if self.backbone is not None:
            n, t = clips.shape[:2]
            frames = clips.flatten(0, 1).float()
            frames = (frames - self.mean) / self.std
            if frames.is_cuda:
                frames = frames.contiguous(memory_format=torch.channels_last)
            parts.append(self.backbone(frames).view(n, t, -1))
        if self.audio_branch is not None:
            parts.append(self.audio_branch(sounds))
        unimodal = ()
        if self.training and len(self.unimodal_heads):
            unimodal = tuple(heads(part) for heads, part in zip(self.unimodal_heads, parts, strict=True))
        if self.fusion_detach:  # the fused heads train no branch
            parts = [part.detach() for part in parts]
        if self.training and self.modality_dropout > 0:
            parts = blank_one_modality(parts, self.modality_dropout)
        per_frame = self.dropout(torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0])
        features = per_frame.mean(dim=1)  # TSN average consensus
        frame_logits = None if self.frame_head is None else frame_logits_of(self.frame_head, per_frame, features)
        contributions = ()
        if self.training and self.contributions and len(parts) > 1:
            contributions = contributions_of(self.action_head, features, [part.shape[-1] for part in parts])
        return Outputs(self.action_head(features), self.scene_head(features), frame_logits, unimodal, contributions)

    def branches(self) -> list[nn.Module]:
        """The modality branches, in the order their features are concatenated: the video backbone, the audio
        branch (whichever the model has)."""
        return [branch for branch in (self.backbone, self.audio_branch) if branch is not None]


class _ActionHeads(nn.Module):
    """One modality's own action head (and per-frame head, as the fused ones) over its per-frame features."""

    def __init__(self, dim: int, outputs: int, per_frame: bool):
        super().__init__()
        self.action = nn.Linear(dim, outputs)
        self.frame = nn.Linear(2 * dim, outputs) if per_frame else None

    def forward(self, per_frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = per_frame.mean(dim=1)
        frame_logits = None if self.frame is None else frame_logits_of(self.frame, per_frame, features)
        return self.action(features), frame_logits


def frame_logits_of(head: nn.Linear, per_frame: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """A per-frame head over each frame's features (N, T, D) beside its clip's consensus features (N, D)."""
    context = features[:, None].expand(-1, per_frame.shape[1], -1)
    return head(torch.cat([per_frame, context], dim=-1))


def contributions_of(head: nn.Linear, features: torch.Tensor, widths: list[int]) -> tuple[torch.Tensor, ...]:
    """Each modality's part of ``head``'s logits over ``features`` (N, sum(widths)), concatenated in the order of
    ``widths``: ``features_m @ W_m.T + bias / M``, without gradients."""
    with torch.no_grad(), torch.autocast(features.device.type, enabled=False):
        weights = head.weight.split(widths, dim=1)
        parts = features.split(widths, dim=1)
        share = head.bias / len(widths) if head.bias is not None else 0.0
        return tuple(part.float() @ weight.float().T + share for part, weight in zip(parts, weights, strict=True))


def blank_one_modality(parts: list[torch.Tensor], share: float) -> list[torch.Tensor]:
    """In ``share`` of the clips, one of the modalities' features (N, T, D_m) is zeroed, each as likely."""
    n = parts[0].shape[0]
    blanked = torch.rand(n, device=parts[0].device) < share
    which = torch.randint(len(parts), (n,), device=parts[0].device)
    return [part * ~(blanked & (which == index)).view(n, 1, 1) for index, part in enumerate(parts)]
