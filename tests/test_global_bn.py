"""GlobalBatchNorm: two gloo ranks with half a batch each normalise, backpropagate and track statistics as one
BatchNorm over the whole batch."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from helpers import free_port
from tal_core.model.global_bn import GlobalBatchNorm, global_batch_norm


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2))
    with torch.no_grad():
        for bn in (net[1], net[4]):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    return net


def _batch() -> torch.Tensor:
    return torch.randn(6, 3, 7, 7, generator=torch.Generator().manual_seed(1)) * 2 + 1


def _rank(rank: int, world: int, port: int, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        net = global_batch_norm(_net())
        half = _batch().chunk(world)[rank]
        y = net(half)
        (y ** 2).sum().backward()
        out[rank] = {"y": y.detach(), "grad": net[0].weight.grad.clone(), "mean": net[4].running_mean.clone(),
                     "var": net[4].running_var.clone(), "types": {type(m).__name__ for m in net.modules()}}
    finally:
        dist.destroy_process_group()


def test_two_ranks_match_one_batchnorm_over_the_whole_batch():
    net = _net()
    whole = _batch()
    y = net(whole)
    (y ** 2).sum().backward()
    out = mp.Manager().dict()
    mp.spawn(_rank, args=(2, free_port(), out), nprocs=2, join=True)
    assert "GlobalBatchNorm" in out[0]["types"] and "BatchNorm2d" not in out[0]["types"]
    torch.testing.assert_close(torch.cat([out[0]["y"], out[1]["y"]]), y.detach(), atol=1e-5, rtol=1e-4)
    # DDP would average the ranks' gradients; here each rank's is its half's share of the whole-batch gradient
    torch.testing.assert_close(out[0]["grad"] + out[1]["grad"], net[0].weight.grad, atol=1e-4, rtol=1e-4)
    for rank in (0, 1):
        torch.testing.assert_close(out[rank]["mean"], net[4].running_mean)
        torch.testing.assert_close(out[rank]["var"], net[4].running_var, atol=1e-5, rtol=1e-4)


def test_outside_ddp_it_is_a_plain_batchnorm_with_the_same_state_dict():
    plain = _net()
    converted = global_batch_norm(_net())
    assert isinstance(converted[1], GlobalBatchNorm)
    assert plain.state_dict().keys() == converted.state_dict().keys()
    x = _batch()
    torch.testing.assert_close(converted(x), plain(x))
    plain.eval(), converted.eval()
    torch.testing.assert_close(converted(x), plain(x))
