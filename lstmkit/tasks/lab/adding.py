"""The adding problem of Hochreiter & Schmidhuber (1997), experiment 4.

Each step is a pair (value uniform in [-1, 1], marker). A sequence's length is uniform in
[T, T + T/10]. Exactly two pairs are marked 1.0: one of the first 10 (its value X1; if it is
the very first pair, X1 is taken as 0) and then one of the first T/2 - 1 still unmarked pairs
(X2). All other markers are 0 except those of the first and the final pair, which are -1.
The target, given only at the end, is 0.5 + (X1 + X2) / 4; a sequence is solved when the
absolute error of the prediction at its end is below 0.04.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

SOLVED_ERROR = 0.04


@dataclass(frozen=True)
class AddingBatch:
    """Padded sequences ``x`` (L, N, 2) with their ``lengths`` (N,), ``target`` (N,) and the
    ``positions`` (N, 2) of the pairs holding X1 and X2."""

    x: Tensor
    lengths: Tensor
    target: Tensor
    positions: Tensor


def adding_batch(T: int, batch_size: int, generator: torch.Generator) -> AddingBatch:
    """Draw ``batch_size`` adding-problem sequences of minimal length ``T``.

    ``T >= 11`` so that X1 (among the first 10 pairs) never falls on the final pair.
    """
    if T < 11:
        raise ValueError(f"the adding problem needs T >= 11, got T={T}")
    lengths = torch.randint(T, T + T // 10 + 1, (batch_size,), generator=generator)
    steps = int(lengths.max())
    values = torch.rand(steps, batch_size, generator=generator) * 2 - 1
    markers = torch.zeros(steps, batch_size)
    rows = torch.arange(batch_size)
    markers[0] = -1.0
    markers[lengths - 1, rows] = -1.0
    first = torch.randint(0, 10, (batch_size,), generator=generator)
    # X2: the k-th of the first T/2 - 1 still unmarked pairs (k uniform), i.e. X1's skipped
    k = torch.randint(0, T // 2 - 1, (batch_size,), generator=generator)
    second = k + (k >= first).long()
    values[0, first == 0] = 0.0  # X1 at the very first pair is taken as 0
    markers[first, rows] = 1.0
    markers[second, rows] = 1.0
    x1, x2 = values[first, rows], values[second, rows]
    pad = torch.arange(steps).unsqueeze(1) >= lengths  # (L, N)
    x = torch.stack([values, markers], dim=-1).masked_fill(pad.unsqueeze(-1), 0.0)
    positions = torch.stack([first, second], dim=1)
    return AddingBatch(x, lengths, 0.5 + (x1 + x2) / 4.0, positions)


class AddingStream:
    """``steps_per_epoch`` fresh batches per epoch, a function of (seed, epoch) only.

    Under DDP each process takes its share (rank::world_size) of every global batch of
    ``batch_size`` sequences, so any number of processes trains on the same sequences.
    """

    def __init__(
        self,
        T: int,
        batch_size: int,
        steps_per_epoch: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.T, self.batch_size, self.steps_per_epoch = T, batch_size, steps_per_epoch
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps_per_epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        for _ in range(self.steps_per_epoch):
            batch = adding_batch(self.T, self.batch_size, generator)
            if self.world > 1:
                take = slice(self.rank, None, self.world)
                lengths = batch.lengths[take]
                batch = AddingBatch(
                    batch.x[: int(lengths.max()), take], lengths, batch.target[take],
                    batch.positions[take],
                )  # fmt: skip
            yield batch


def fixed_set(T: int, size: int, seed: int, batch_size: int = 500) -> list[AddingBatch]:
    """A fixed evaluation set of ``size`` sequences drawn with its own seed."""
    generator = torch.Generator().manual_seed(seed)
    return [
        adding_batch(T, min(batch_size, size - start), generator)
        for start in range(0, size, batch_size)
    ]
