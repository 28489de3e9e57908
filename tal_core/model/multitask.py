"""The multi-task TSM: backbone per frame, TSN average consensus over the frames of
an interval, an action head (K + 1 outputs, 0 = background) and a scene head."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .backbones import build_backbone

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255


class MultiTaskTSM(nn.Module):
    def __init__(self, cfg: ModelConfig, n_segment: int, num_actions: int, num_scenes: int):
        super().__init__()
        self.n_segment = n_segment
        self.backbone, dim = build_backbone(cfg.backbone, n_segment, cfg.shift_fraction, cfg.shift_place,
                                            cfg.pretrained, cfg.tiny_width)
        self.dropout = nn.Dropout(cfg.dropout)
        self.action_head = nn.Linear(dim, num_actions + 1)
        self.scene_head = nn.Linear(dim, max(num_scenes, 1))
        self.register_buffer("mean", MEAN.clone(), persistent=False)
        self.register_buffer("std", STD.clone(), persistent=False)

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """clips: (N, T, 3, H, W) uint8 or float in [0, 255] -> (action logits, scene logits)."""
        n, t = clips.shape[:2]
        frames = clips.flatten(0, 1).float()
        frames = (frames - self.mean) / self.std
        if frames.is_cuda:
            frames = frames.contiguous(memory_format=torch.channels_last)
        features = self.backbone(frames).view(n, t, -1).mean(dim=1)  # TSN average consensus
        features = self.dropout(features)
        return self.action_head(features), self.scene_head(features)
