"""torch.distributed helpers: is this a DDP run, which rank am I, which device do I train on."""

from __future__ import annotations

import torch
import torch.distributed as dist

from tal_core.config import ConfigError


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def select_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("train.device=cuda but no CUDA device is available")
        index = torch.cuda.current_device() if is_distributed() else 0
        return torch.device("cuda", index)
    return torch.device("cpu")
