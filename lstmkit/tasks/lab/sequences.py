"""Two more long-time-lag problems: temporal order 6a (1997) and copy memory (2016).

**Temporal order, task 6a** (Hochreiter & Schmidhuber 1997, experiment 6a). Symbols
``a, b, c, d, B, E, X, Y`` (one-hot). A sequence has a length uniform in [100, 110]; it
starts with ``B`` and ends with ``E``; two relevant symbols, each ``X`` or ``Y``, sit at
``t1`` uniform in [10, 20] and ``t2`` uniform in [50, 60] (1-based positions, as in the
paper); every other symbol is a distractor drawn uniformly from ``a, b, c, d``. The class,
given at the end, is the order: XX, XY, YX or YY (0..3), balanced. ``T`` (default 100, the
paper's) scales it: lengths in [T, T + T/10], t1 in [T/10, T/5], t2 in [T/2, 3T/5].

**Copy memory** (Arjovsky, Shah & Bengio 2016) with delay ``T``: 10 symbols drawn uniformly
from 1..8, then ``T - 1`` blanks (0), a delimiter (9), then 10 more blanks; the target is
blank everywhere except the last 10 steps, which must repeat the 10 symbols. A memoryless
model that outputs blanks and then guesses uniformly gets accuracy 1/8 on the copied symbols
and cross-entropy ``10 log 8 / (T + 20)`` per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

TEMPORAL_SYMBOLS = ("a", "b", "c", "d", "B", "E", "X", "Y")
_SYMBOL = {s: k for k, s in enumerate(TEMPORAL_SYMBOLS)}
TEMPORAL_CLASSES = ("XX", "XY", "YX", "YY")
COPY_LENGTH, COPY_ALPHABET, BLANK, DELIMITER = 10, 8, 0, 9


@dataclass(frozen=True)
class ClassificationBatch:
    """Padded one-hot sequences ``x`` (L, N, 8), their ``lengths`` (N,), ``target`` (N,)."""

    x: Tensor
    lengths: Tensor
    target: Tensor


def temporal_order_batch(
    batch_size: int, generator: torch.Generator, T: int = 100
) -> ClassificationBatch:
    """Draw ``batch_size`` sequences of the 1997 temporal order task 6a (T = 100)."""
    if T < 20:
        raise ValueError(f"temporal order needs T >= 20, got T={T}")
    lengths = torch.randint(T, T + T // 10 + 1, (batch_size,), generator=generator)
    steps = int(lengths.max())
    symbols = torch.randint(0, 4, (steps, batch_size), generator=generator)  # distractors
    rows = torch.arange(batch_size)
    symbols[0] = _SYMBOL["B"]
    symbols[lengths - 1, rows] = _SYMBOL["E"]
    t1 = torch.randint(T // 10, T // 5 + 1, (batch_size,), generator=generator) - 1  # 1-based
    t2 = torch.randint(T // 2, 3 * T // 5 + 1, (batch_size,), generator=generator) - 1
    target = torch.randint(0, 4, (batch_size,), generator=generator)
    first, second = target // 2, target % 2  # 0 = X, 1 = Y
    symbols[t1, rows] = _SYMBOL["X"] + first
    symbols[t2, rows] = _SYMBOL["X"] + second
    x = torch.nn.functional.one_hot(symbols, len(TEMPORAL_SYMBOLS)).float()
    pad = torch.arange(steps).unsqueeze(1) >= lengths  # (L, N)
    return ClassificationBatch(x.masked_fill(pad.unsqueeze(-1), 0.0), lengths, target)


@dataclass(frozen=True)
class CopyBatch:
    """``x`` (T+20, N, 10) one-hot inputs and ``target`` (T+20, N) symbol ids."""

    x: Tensor
    target: Tensor


def copy_batch(T: int, batch_size: int, generator: torch.Generator) -> CopyBatch:
    """Draw ``batch_size`` copy-memory sequences with delay ``T`` (T >= 1)."""
    if T < 1:
        raise ValueError(f"the copy task needs a delay T >= 1, got T={T}")
    steps = T + 2 * COPY_LENGTH
    data = torch.randint(1, COPY_ALPHABET + 1, (COPY_LENGTH, batch_size), generator=generator)
    inputs = torch.full((steps, batch_size), BLANK)
    inputs[:COPY_LENGTH] = data
    inputs[T + COPY_LENGTH - 1] = DELIMITER
    target = torch.full((steps, batch_size), BLANK)
    target[-COPY_LENGTH:] = data
    x = torch.nn.functional.one_hot(inputs, DELIMITER + 1).float()
    return CopyBatch(x, target)


def copy_baseline_loss(T: int) -> float:
    """Per-step cross-entropy of the memoryless strategy (Arjovsky et al. 2016)."""
    return COPY_LENGTH * math.log(COPY_ALPHABET) / (T + 2 * COPY_LENGTH)
