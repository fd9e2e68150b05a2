"""Distributed data parallel training on ``torch.distributed``, launched with ``torchrun``.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address;
:func:`setup` then joins the process group (gloo on CPU, NCCL on CUDA). The trainer wraps the
model in ``DistributedDataParallel``, lets only rank 0 log and write checkpoints, and
all-reduces the epoch metrics. Data is split by :class:`ShardedBatches` (or a task's own
stream): every rank takes its share of each global batch, so N processes train on the same
batches as one.

Single machine, 2 processes::

    torchrun --standalone --nproc_per_node=2 -m lstmkit.cli.main ...

Several machines (run on each; ``--node_rank`` 0..nnodes-1, the address of node 0)::

    torchrun --nnodes=2 --nproc_per_node=8 --node_rank=0 \\
        --rdzv_backend=c10d --rdzv_endpoint=HOST0:29500 -m lstmkit.cli.main ...
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup() -> DistInfo:
    """Join the process group if launched by torchrun with more than one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return info()


def info() -> DistInfo:
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if info().world_size > 1:
        dist.barrier()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum ``values`` over all processes (identity in a single process)."""
    if info().world_size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


class ShardedBatches:
    """This process's share of every global batch of ``data``: ``shard(batch, rank,
    world_size)`` for each, so N processes train on the same batches as one (the trainer
    weights each share by its size). ``set_epoch`` and ``len`` pass through.

    ``rows(batch)``: the examples in a global batch. One with fewer than ``world_size`` (an
    epoch's short last batch) would leave some process an empty share; every process skips
    it alike, rank 0 warns with the count (``skipped``), and an epoch with no batch left is
    an error."""

    def __init__(
        self,
        data: Any,
        shard: Callable[[Any, int, int], Any],
        rank: int,
        world_size: int,
        rows: Callable[[Any], int],
    ) -> None:
        self.data, self.shard, self.rank, self.world_size = data, shard, rank, world_size
        self.rows, self.skipped = rows, 0

    def set_epoch(self, epoch: int) -> None:
        for obj in (self.data, getattr(self.data, "batch_sampler", None)):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)
                return

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self):
        shared = 0
        for batch in self.data:
            n = self.rows(batch)
            if n < self.world_size:
                self.skipped += 1
                if self.rank == 0:
                    warnings.warn(
                        f"a global batch of {n} example(s) is smaller than the "
                        f"{self.world_size} processes: every process skips it "
                        f"({self.skipped} skipped so far)",
                        stacklevel=2,
                    )
                continue
            shared += 1
            yield self.shard(batch, self.rank, self.world_size)
        if not shared:
            raise ValueError(
                f"no batch of this epoch has at least one example for each of the "
                f"{self.world_size} processes: use a larger batch size or fewer "
                "processes"
            )


def loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    drop_last: bool = False,
    **kwargs,
) -> DataLoader:
    """A DataLoader whose order is a function of (seed, epoch) only, split across processes.

    The trainer calls ``sampler.set_epoch(epoch)``: shuffles are reproducible, and a resumed
    run sees the same batches as an uninterrupted one.
    """
    d = info()
    sampler = DistributedSampler(
        dataset,
        num_replicas=d.world_size,
        rank=d.rank,
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
    )
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **kwargs
    )
