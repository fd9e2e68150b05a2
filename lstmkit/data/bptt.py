"""Batches for truncated backpropagation through time over one long token stream.

The stream is cut into ``batch_size`` contiguous columns (the tail that does not fill a
column is dropped, and counted in :attr:`BPTTBatches.dropped`); batch ``k`` holds the next
``L_k`` steps of every column, so a model that carries its hidden state from batch to batch
(see :class:`lstmkit.train.Trainer`) reads each column from start to end. With
``variable=True`` the window length follows AWD-LSTM (Merity et al. 2017): the base is
``bptt`` with probability 0.95 and ``bptt / 2`` otherwise, then ``L ~ N(base, 5)``, at least 5
and at most ``bptt + 20``; each batch carries ``L / bptt`` so a task can scale its learning
rate as AWD-LSTM does. The lengths are a function of (seed, epoch), so a resumed run sees
the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from torch import Tensor


@dataclass(frozen=True)
class BPTTBatch:
    """``x`` (L, N) inputs, ``y`` (L, N) next-token targets, ``scale`` = L / bptt."""

    x: Tensor
    y: Tensor
    scale: float


class BPTTBatches:
    """Iterate (x, y) windows over ``tokens`` (1-D) split into ``batch_size`` columns.

    Args:
        tokens: the token ids of the whole text, shape (T,).
        batch_size: number of columns N.
        bptt: the (base) window length.
        variable: AWD-LSTM's random window lengths. Default: ``False``
        seed: seeds the window lengths (with the epoch). Default: 0
    """

    def __init__(
        self, tokens: Tensor, batch_size: int, bptt: int, variable: bool = False, seed: int = 0
    ) -> None:
        if tokens.dim() != 1:
            raise ValueError(f"tokens must be 1-D, got shape {tuple(tokens.shape)}")
        if batch_size <= 0 or bptt <= 0:
            raise ValueError(f"batch_size and bptt must be positive, got {batch_size}, {bptt}")
        steps = tokens.numel() // batch_size
        if steps < 2:
            raise ValueError(
                f"{tokens.numel()} tokens are too few for {batch_size} columns of 2 or more"
            )
        self.dropped = tokens.numel() - steps * batch_size
        self.columns = tokens[: steps * batch_size].view(batch_size, steps).t()  # (T/N, N)
        self.bptt, self.variable, self.seed = bptt, variable, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def lengths(self) -> list[int]:
        """The window lengths of the current epoch (they cover every step but the last)."""
        total = self.columns.size(0) - 1  # the last step is only a target
        if not self.variable:
            return [min(self.bptt, total - start) for start in range(0, total, self.bptt)]
        rng = np.random.default_rng([self.seed, self.epoch])
        lengths, start = [], 0
        while start < total:
            base = self.bptt if rng.random() < 0.95 else self.bptt / 2
            length = int(np.clip(round(rng.normal(base, 5)), 5, self.bptt + 20))
            length = min(length, total - start)
            lengths.append(length)
            start += length
        return lengths

    def __len__(self) -> int:
        return len(self.lengths())

    def __iter__(self) -> Iterator[BPTTBatch]:
        start = 0
        for length in self.lengths():
            x = self.columns[start : start + length]
            y = self.columns[start + 1 : start + 1 + length]
            yield BPTTBatch(x, y, length / self.bptt)
            start += length
