"""Global-batch semantics: k DDP ranks take the optimizer steps of one process on the same effective batch."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from helpers import free_port
from tal_core.training import loops


class Items(torch.utils.data.Dataset):
    def __len__(self):
        return 50

    def __getitem__(self, i):
        return i


def _rank_steps(rank: int, world: int, port: int, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        batch = loops.per_rank_batch(8)
        out[rank] = (batch, len(loops.make_loader(Items(), batch, True, 0, 0, 0)))
    finally:
        dist.destroy_process_group()


def test_two_ranks_split_the_batch_and_take_the_steps_of_one_process():
    single_batch = loops.per_rank_batch(8)
    single_steps = len(loops.make_loader(Items(), single_batch, True, 0, 0, 0))
    out = mp.Manager().dict()
    mp.spawn(_rank_steps, args=(2, free_port(), out), nprocs=2, join=True)
    assert single_batch == 8 and single_steps == 7  # ceil(50 / 8)
    assert dict(out) == {0: (4, 7), 1: (4, 7)}  # 25 items per rank, 4 per step: ceil(25 / 4) = 7
