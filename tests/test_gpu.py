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
    """On one fixed batch (4 clips x 8 frames, 4 actions + background, 3 scenes) under bf16 autocast: the outputs
    have their shapes, every parameter lives on the GPU, the loss falls step after step, and the gradient
    reaches the backbone's first layer (through every temporal shift)."""
    torch.manual_seed(0)
    device = torch.device("cuda")
    model = MultiTaskTSM(ModelConfig(backbone=backbone, output=output), 8, 4, 3).to(device)
    assert all(p.is_cuda for p in model.parameters())
    (batch,) = batches(1)
    with torch.no_grad(), loops.autocast_for(device, True):
        out = model(batch[0].to(device))
    assert out.action.shape == (4, 5) and out.scene.shape == (4, 3) and out.action.is_cuda
    assert out.frame is None if output == "interval" else out.frame.shape == (4, 8, 5)
    first = next(model.backbone.parameters())  # the stem convolution, the farthest from the loss
    stem = first.detach().clone()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    losses = [loops.train_one_epoch(model, [batch], opt, sched, LossConfig(), device, amp=True)["train_loss"]
              for _ in range(8)]  # each: the loss of that step, before its update
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0], losses  # (on CPU in fp32: below 1%)
    assert first.grad is not None and torch.isfinite(first.grad).all() and first.grad.abs().sum() > 0
    assert not torch.equal(first.detach(), stem)


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
        first = next(model.backbone.parameters())
        stem = first.detach().clone()
        losses = loops.train_one_epoch(ddp, batches(4), opt, sched, LossConfig(), device, amp=True)
        assert np.isfinite(losses["train_loss"]) and all(p.device == device for p in model.parameters())
        # the gradient went back through the DDP hooks to the stem, and the optimizer moved it
        assert first.grad is not None and first.grad.abs().sum() > 0 and not torch.equal(first.detach(), stem)
        local = (np.arange(3), np.ones((3, 5), np.float32), np.ones((3, 3), np.float32))
        gathered = loops._gather(local)
        assert gathered[0].tolist() == [0, 1, 2] and distributed.rank() == 0
    finally:
        dist.destroy_process_group()
