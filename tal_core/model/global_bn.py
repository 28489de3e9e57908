"""BatchNorm over the global batch of every DDP rank, on any backend.

With k workers each normalising its own 1/k of the batch, a trial's BatchNorm sees other statistics than
``talsearch train`` on the whole batch (and small per-worker batches make them noisy). PyTorch's SyncBatchNorm
fixes that on GPUs only; ``GlobalBatchNorm`` does the same with one all-reduce of per-channel sums per layer,
differentiable, so it also runs over gloo on CPU. Outputs, gradients and
running statistics equal one BatchNorm over the concatenated batch (``tests/test_global_bn.py``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class _SumOverRanks(torch.autograd.Function):
    """The sum of a tensor over all ranks; its gradient is the sum of the ranks' gradients (each rank's share of
    the loss depends on every rank's statistics)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class GlobalBatchNorm(_BatchNorm):
    """A BatchNorm (any dimensionality) whose training statistics cover every rank's batch."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (got {x.dim()}-D)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        count = x.new_tensor([x.numel() / channels])
        totals = _SumOverRanks.apply(torch.cat([x.sum(dims), (x * x).sum(dims), count]))
        n = totals[-1]
        mean = totals[:channels] / n
        var = (totals[channels:2 * channels] / n - mean * mean).clamp_min(0.0)
        self._update_running(mean.detach(), var.detach(), float(n.detach()))
        shape = (1, channels) + (1,) * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, n: float) -> None:
        if not self.track_running_stats:
            return
        self.num_batches_tracked += 1
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        unbiased = var * n / max(n - 1.0, 1.0)
        self.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
        self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)


def global_batch_norm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm replaced by a ``GlobalBatchNorm`` holding the same parameters and
    statistics (state-dict names unchanged, so checkpoints load either way)."""
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm | nn.SyncBatchNorm):
        replaced = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                   module.track_running_stats)
        replaced.load_state_dict(module.state_dict())
        replaced.train(module.training)
        return replaced.to(next(iter(module.state_dict().values()), torch.empty(0)).device)
    for name, child in module.named_children():
        module.add_module(name, global_batch_norm(child))
    return module
