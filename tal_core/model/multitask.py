"""The multi-task TSM: backbone per frame, TSN average consensus over the frames of
an interval, an action head (K + 1 outputs, 0 = background) and a scene head.

With ``model.output=frame`` a third head classifies every frame (K + 1) from its own
features (which the temporal shift has mixed with its neighbours') next to the clip's
consensus features (what happens in this interval): predictions on cells finer than the
interval. The frame says whether the action is on screen, the clip says which one.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from tal_core.config import ModelConfig
from tal_core.model.backbones import build_backbone

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255


class Outputs(NamedTuple):
    action: torch.Tensor  # (N, K + 1) interval logits
    scene: torch.Tensor  # (N, S) scene logits
    frame: torch.Tensor | None  # (N, T, K + 1) per-frame logits, or None for interval outputs


class MultiTaskTSM(nn.Module):
    def __init__(self, cfg: ModelConfig, n_segment: int, num_actions: int, num_scenes: int):
        super().__init__()
        self.n_segment = n_segment
        self.backbone, dim = build_backbone(cfg.backbone, n_segment, cfg.shift_fraction, cfg.shift_place,
                                            cfg.pretrained, cfg.tiny_width)
        self.dropout = nn.Dropout(cfg.dropout)
        self.action_head = nn.Linear(dim, num_actions + 1)
        self.scene_head = nn.Linear(dim, max(num_scenes, 1))
        self.frame_head = nn.Linear(2 * dim, num_actions + 1) if cfg.output == "frame" else None
        self.register_buffer("mean", MEAN.clone(), persistent=False)
        self.register_buffer("std", STD.clone(), persistent=False)

    def forward(self, clips: torch.Tensor) -> Outputs:
        """clips: (N, T, 3, H, W) uint8 or float in [0, 255] -> interval, scene (and per-frame) logits."""
        n, t = clips.shape[:2]
        frames = clips.flatten(0, 1).float()
        frames = (frames - self.mean) / self.std
        if frames.is_cuda:
            frames = frames.contiguous(memory_format=torch.channels_last)
        per_frame = self.dropout(self.backbone(frames).view(n, t, -1))
        features = per_frame.mean(dim=1)  # TSN average consensus
        frame_logits = None
        if self.frame_head is not None:
            context = features[:, None].expand(-1, t, -1)
            frame_logits = self.frame_head(torch.cat([per_frame, context], dim=-1))
        return Outputs(self.action_head(features), self.scene_head(features), frame_logits)
