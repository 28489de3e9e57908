"""Temporal Shift Module (Lin et al., TSM).

Input (N * T, C, H, W) with T = n_segment frames per clip; fold = int(C * fraction).
Channels [0, fold) of frame t take frame t + 1 (the last frame gets zeros),
channels [fold, 2 * fold) take frame t - 1 (the first frame gets zeros), the rest
are unchanged. Shifts never cross clip boundaries.

The gradient of a shift is the opposite shift, so backward is one more shift
(an autograd Function), not the per-slice gradient copies autograd would record
for sliced assignments (those made the shift cost 1.4-1.9x a ResNet step on a GPU).
"""

from __future__ import annotations

import torch
from torch import nn


def _shift(x: torch.Tensor, n_segment: int, fold: int, reverse: bool) -> torch.Tensor:
    """Channels `ahead` take the next frame, channels `back` the previous one (swapped when reverse)."""
    nt, c, h, w = x.shape
    clips = x.reshape(nt // n_segment, n_segment, c, h, w)
    ahead, back = slice(0, fold), slice(fold, 2 * fold)
    if reverse:
        ahead, back = back, ahead
    out = torch.empty_like(clips)
    out[:, :-1, ahead] = clips[:, 1:, ahead]
    out[:, -1, ahead] = 0
    out[:, 1:, back] = clips[:, :-1, back]
    out[:, 0, back] = 0
    out[:, :, 2 * fold :] = clips[:, :, 2 * fold :]
    return out.view(nt, c, h, w)


class _ShiftFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, n_segment: int, fold: int) -> torch.Tensor:
        ctx.n_segment, ctx.fold = n_segment, fold
        return _shift(x, n_segment, fold, reverse=False)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _shift(grad, ctx.n_segment, ctx.fold, reverse=True), None, None


def temporal_shift(x: torch.Tensor, n_segment: int, fraction: float) -> torch.Tensor:
    fold = int(x.shape[1] * fraction)
    if fold == 0:
        return x
    return _ShiftFunction.apply(x, n_segment, fold)


class TemporalShift(nn.Module):
    """Shifts its input in time, then runs ``net`` (a conv, or a whole block)."""

    def __init__(self, net: nn.Module, n_segment: int, fraction: float):
        super().__init__()
        self.net, self.n_segment, self.fraction = net, n_segment, fraction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(temporal_shift(x, self.n_segment, self.fraction))

    def extra_repr(self) -> str:
        return f"n_segment={self.n_segment}, fraction={self.fraction}"
