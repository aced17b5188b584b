"""``fit`` under ``torchrun``: the process group, sums over processes, the sharded epoch order
and the DistributedDataParallel wrapper (gloo on CPU)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

__all__ = ["distributed_context", "end_process_group", "all_sum", "epoch_order", "wrap"]


def distributed_context() -> tuple[int, int, bool]:
    """``(rank, world_size, whether fit created the process group)``."""
    if not dist.is_available():
        return 0, 1, False
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and os.environ.get("MASTER_ADDR"):
        dist.init_process_group(backend="gloo")
        return dist.get_rank(), dist.get_world_size(), True
    return 0, 1, False


def end_process_group() -> None:
    """Destroy the process group ``fit`` created."""
    dist.destroy_process_group()


def all_sum(values: list[float], world: int) -> list[float]:
    """``values`` summed over all processes (unchanged in a single process)."""
    if world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


class _Count:
    """A stand-in dataset of ``n`` samples: the sampler needs only its length."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


def epoch_order(n_samples: int, world: int, rank: int, seed: int, epoch: int) -> Tensor:
    """This process's shuffled sample indices for ``epoch`` (a DistributedSampler's, which
    depend only on the seed, the epoch and the number of samples)."""
    sampler = DistributedSampler(_Count(n_samples), num_replicas=world, rank=rank, shuffle=True, seed=seed,
                                 drop_last=False)
    sampler.set_epoch(epoch)
    return torch.tensor(list(iter(sampler)), dtype=torch.long)


def wrap(objective: nn.Module, world: int) -> nn.Module:
    """``objective`` in DistributedDataParallel for ``world > 1`` (call after any resume: DDP
    starts by broadcasting rank 0's parameters and buffers), else as it is."""
    return DistributedDataParallel(objective) if world > 1 else objective
