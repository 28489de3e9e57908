"""Temporal Shift Module (Lin et al., TSM).

Input (N * T, C, H, W) with T = n_segment frames per clip; fold = int(C * fraction).
Channels [0, fold) of frame t take frame t + 1 (the last frame gets zeros),
channels [fold, 2 * fold) take frame t - 1 (the first frame gets zeros), the rest
are unchanged. Shifts never cross clip boundaries.
"""

from __future__ import annotations

import torch
from torch import nn


def temporal_shift(x: torch.Tensor, n_segment: int, fraction: float) -> torch.Tensor:
    fold = int(x.shape[1] * fraction)
    if fold == 0:
        return x
    nt, c, h, w = x.shape
    clips = x.view(nt // n_segment, n_segment, c, h, w)
    out = torch.empty_like(clips)
    out[:, :-1, :fold] = clips[:, 1:, :fold]  # shift left: frame t sees t + 1
    out[:, -1, :fold] = 0
    out[:, 1:, fold : 2 * fold] = clips[:, :-1, fold : 2 * fold]  # shift right: frame t sees t - 1
    out[:, 0, fold : 2 * fold] = 0
    out[:, :, 2 * fold :] = clips[:, :, 2 * fold :]
    return out.view(nt, c, h, w)


class TemporalShift(nn.Module):
    """Shifts its input in time, then runs ``net`` (a conv, or a whole block)."""

    def __init__(self, net: nn.Module, n_segment: int, fraction: float):
        super().__init__()
        self.net, self.n_segment, self.fraction = net, n_segment, fraction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(temporal_shift(x, self.n_segment, self.fraction))

    def extra_repr(self) -> str:
        return f"n_segment={self.n_segment}, fraction={self.fraction}"
