"""Dropout for sequences: locked (variational) dropout and embedding (word) dropout.

Both are from AWD-LSTM (Merity et al. 2017, "Regularizing and Optimizing LSTM Language
Models"), after Gal & Ghahramani (2016): a dropout mask that stays the same over time
regularises a recurrent model without disturbing what it carries from step to step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class LockedDropout(nn.Module):
    """Dropout with one mask per sequence, shared by every time step.

    Args:
        p: probability of an element to be zeroed. Default: 0.5
        batch_first: input is (N, L, D) instead of (L, N, D). Default: ``False``

    Inputs: (L, N, D) (or (N, L, D) with ``batch_first``). Outputs: the same shape; the kept
    elements are scaled by ``1 / (1 - p)``. Identity in eval mode.

    Example::

        >>> drop = LockedDropout(0.5)
        >>> y = drop(torch.ones(4, 2, 3))
        >>> bool((y == y[0]).all())  # the same mask at every step
        True
    """

    def __init__(self, p: float = 0.5, batch_first: bool = False) -> None:
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p, self.batch_first = p, batch_first

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        if x.dim() != 3:
            raise ValueError(f"LockedDropout expects a 3-D input, got shape {tuple(x.shape)}")
        shape = (x.size(0), 1, x.size(2)) if self.batch_first else (1, *x.shape[1:])
        mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1 - self.p)
        return x * mask / (1 - self.p) if self.p < 1 else x * mask  # p = 1: zeros, as torch

    def extra_repr(self) -> str:
        return f"p={self.p}"


def embedding_dropout(embed: nn.Embedding, ids: Tensor, p: float, training: bool) -> Tensor:
    """Look up ``ids`` in ``embed`` with whole rows of the table dropped with probability
    ``p`` (every occurrence of a dropped word is zero in this call), the rest scaled by
    ``1 / (1 - p)``. Plain lookup when not ``training`` or ``p == 0``."""
    if not training or p == 0:
        return embed(ids)
    weight = embed.weight
    mask = torch.empty(weight.size(0), 1, dtype=weight.dtype, device=weight.device)
    mask = mask.bernoulli_(1 - p) / (1 - p) if p < 1 else mask.zero_()  # p = 1: no 0 / 0
    return F.embedding(ids, weight * mask, embed.padding_idx)
