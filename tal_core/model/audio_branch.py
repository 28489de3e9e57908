"""The audio branch: a small 2-D CNN over each sampled frame's log-mel window.

Input (N, T, W, 64): per clip, per frame, W log-mel frames (``audio.window_seconds`` x 100) of 64 mel bands.
A BatchNorm of the single input channel (log-mel levels are far from zero mean, unit variance), a stride-2 stem
and two residual blocks of the tiny backbone (stride 2 each), global average pooling: ``4 x width`` features per
frame (128 at the default width 32, VGGish's embedding size), next to the video features of the same frame.
"""

from __future__ import annotations

import torch
from torch import nn

from tal_core.model.backbones import TinyBlock


class AudioBranch(nn.Module):
    def __init__(self, width: int = 32):
        super().__init__()
        self.norm = nn.BatchNorm2d(1)
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            TinyBlock(width, 2 * width, 2), TinyBlock(2 * width, 4 * width, 2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dim = 4 * width

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """windows (N, T, W, 64) -> features (N, T, dim)."""
        n, t = windows.shape[:2]
        x = windows.flatten(0, 1).unsqueeze(1).float()
        return self.net(self.norm(x)).view(n, t, -1)
