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
