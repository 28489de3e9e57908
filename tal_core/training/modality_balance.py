"""On-the-fly gradient modulation for video+audio training (``loss.gradient_modulation``; Peng et al., "Balanced
Multimodal Learning via On-the-fly Gradient Modulation", CVPR 2022), the continuous variant.

The fused action head is linear over concatenated features, so its logits are a sum of one part per modality
(``W_m f_m``, the bias shared equally): each modality's *contribution* (``MultiTaskTSM`` returns them in
training: ``model/multitask.py::contributions_of``). A modality's score is how much probability its contribution
alone puts on the target class, summed over the batch (all ranks together, so every rank scales alike). Where one
modality's score is ``rho`` times the other's (``rho`` > 1: the one the network leans on), the optimizer's update
of its branch (the video backbone or the audio branch, not the heads) is scaled by ``1 - tanh(alpha (rho - 1))``;
the other's stays as it is. The paper scales the branch's gradients under SGD; under Adam (the trainer's AdamW)
a steady gradient factor is divided away by Adam's own normalisation, so the step is scaled instead. The branch
that is easier to learn (sound, on the hard preset) is slowed while the other catches up, instead of the fused
heads leaning on it and the other branch under-learning.
"""

from __future__ import annotations

import torch
from torch import distributed as dist
from torch import nn


def modality_scores(contributions: tuple[torch.Tensor, ...], target: torch.Tensor) -> torch.Tensor:
    """(M,): per modality, the softmax probability its contribution alone gives the target class, summed over the
    batch and over every rank."""
    scores = torch.stack([logits.softmax(dim=1).gather(1, target.view(-1, 1)).sum() for logits in contributions])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(scores)
    return scores


def coefficients(scores: torch.Tensor, alpha: float) -> list[float]:
    """Per modality, the factor its branch's gradients get: ``1 - tanh(alpha (rho - 1))`` for the modality whose
    score is ``rho`` > 1 times the weakest one's, 1 for the others."""
    weakest = scores.min().clamp_min(1e-8)
    return [1.0 - float(torch.tanh(alpha * (score / weakest - 1.0))) for score in scores]


def modality_factors(contributions: tuple[torch.Tensor, ...], target: torch.Tensor, alpha: float) -> list[float]:
    """Per modality, the factor its branch's update gets this step (``coefficients`` of the batch's scores)."""
    return coefficients(modality_scores(contributions, target), alpha)


def scaled_step(optimizer: torch.optim.Optimizer, branches: list[nn.Module], factors: list[float]) -> None:
    """``optimizer.step()``, then each branch's parameter update scaled by its factor (the parameters moved back
    towards where they were by ``1 - factor``). The update, not the gradient: Adam divides by the gradients' own
    running size, so a steady gradient factor would leave its steps as they were."""
    before = [[parameter.detach().clone() for parameter in branch.parameters()] if factor < 1.0 else []
              for branch, factor in zip(branches, factors, strict=True)]
    optimizer.step()
    with torch.no_grad():
        for branch, factor, saved in zip(branches, factors, before, strict=True):
            if factor < 1.0:
                for parameter, old in zip(branch.parameters(), saved, strict=True):
                    parameter.lerp_(old, 1.0 - factor)
