"""CUDA checks (skipped without a GPU): AMP + channels_last training, and the train loop under DDP on NCCL."""

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist

from tal_core.config import LossConfig, ModelConfig
from tal_core.model.multitask import MultiTaskTSM
from tal_core.model.temporal_shift import temporal_shift
from tal_core.training import distributed, loops

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def batches(n, device_batch=4, frames=8, size=112):
    g = torch.Generator().manual_seed(0)
    return [(torch.randint(0, 255, (device_batch, frames, 3, size, size), dtype=torch.uint8, generator=g),
             torch.randint(0, 5, (device_batch,), generator=g), torch.randint(0, 5, (device_batch, frames), generator=g),
             torch.randint(0, 3, (device_batch,), generator=g), torch.arange(device_batch)) for _ in range(n)]


def test_shift_on_cuda_matches_cpu():
    x = torch.randn(16, 32, 7, 7)
    assert torch.equal(temporal_shift(x.cuda(), 8, 0.125).cpu(), temporal_shift(x, 8, 0.125))


@pytest.mark.parametrize("backbone, output", [("resnet18", "interval"), ("mobilenet_v2", "interval"),
                                              ("resnet18", "frame")])
def test_amp_training_on_cuda(backbone, output):
    device = torch.device("cuda")
    model = MultiTaskTSM(ModelConfig(backbone=backbone, output=output), 8, 4, 3).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    data = batches(3)
    losses = loops.train_one_epoch(model, data * 4, opt, sched, LossConfig(), device, amp=True)
    assert np.isfinite(losses["train_loss"])


def test_train_loop_under_ddp_on_nccl():
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", rank=0, world_size=1)
    try:
        device = distributed.select_device("cuda")
        model = MultiTaskTSM(ModelConfig(backbone="resnet18"), 8, 4, 3).to(device)
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[0])
        opt = torch.optim.AdamW(ddp.parameters(), lr=1e-3)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        losses = loops.train_one_epoch(ddp, batches(4), opt, sched, LossConfig(), device, amp=True)
        assert np.isfinite(losses["train_loss"])
        local = (np.arange(3), np.ones((3, 5), np.float32), np.ones((3, 3), np.float32))
        gathered = loops._gather(local)
        assert gathered[0].tolist() == [0, 1, 2] and distributed.rank() == 0
    finally:
        dist.destroy_process_group()
