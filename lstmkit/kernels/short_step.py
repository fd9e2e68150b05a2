"""One sequence a few steps at a time, in inference: the weights transposed once for
vector-matrix products.

Generation, streaming sessions and one-sentence decoding feed an LSTM one (or two) rows a
step. For a single row, torch's ``F.linear(h, W)`` (a (1, K) by (G*H, K)^T product) ran 2.3x
slower on the CPU than ``h @ W^T`` with ``W^T`` stored contiguously: six 2048x512 weights took
2.17 ms against 0.94 ms on one thread (BENCHMARKS.md); from four rows on the two cost the
same. torch's fused kernel (oneDNN) is slower still for a step: it prepares the weights at
every call (12-15 ms a step for a 3-layer 512-unit model).

:class:`lstmkit.nn.LSTM` runs this path when :func:`eligible` says so; it computes the
products here and finishes each step with :func:`lstmkit.nn.functional.lstm_pointwise`, the
spec's own gate equations, so the two differ only in the summation order of the products
(parity tested in float32, to 1e-5). The transposed copies are cached per weight (a second
copy of each weight this path reads, freed with the weight) and refreshed when the weight
changes (its version counter: an optimizer step or a ``load_state_dict`` bumps it).
"""

from __future__ import annotations

import weakref

import torch
from torch import Tensor

MAX_ROWS = 2  # sequences a call: from 4 rows on, F.linear is as fast
MAX_STEPS = 64  # a longer input runs the fused kernels (their per-call cost amortised)

# id(weight) -> (a weak reference to it, its version and storage then, the transpose); an
# entry goes when its weight does (a tensor's == is elementwise: no WeakKeyDictionary)
_transposed: dict[int, tuple[weakref.ref, tuple[int, int], Tensor]] = {}


def eligible(x: Tensor, *weights: Tensor | None) -> bool:
    """Whether ``x`` (L, N, I) runs here: inference (no autograd), CPU float32, at most
    :data:`MAX_ROWS` sequences of at most :data:`MAX_STEPS` steps."""
    if torch.is_grad_enabled() and any(w is not None and w.requires_grad for w in weights):
        return False
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.dim() == 3
        and x.size(1) <= MAX_ROWS
        and x.size(0) <= MAX_STEPS
        and all(w is None or w.dtype == torch.float32 for w in weights)
    )


def transposed(w: Tensor) -> Tensor:
    """``w`` (out, in) as a contiguous (in, out) copy, made once per version of ``w``."""
    key, stamp = id(w), (w._version, w.data_ptr())
    entry = _transposed.get(key)
    if entry is None or entry[0]() is not w or entry[1] != stamp:
        ref = weakref.ref(w, lambda _, key=key: _transposed.pop(key, None))
        entry = (ref, stamp, w.detach().t().contiguous())
        _transposed[key] = entry
    return entry[2]


def linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """``F.linear(x, w, b)`` for x (..., in) through the cached transpose of ``w``."""
    flat = x.reshape(-1, x.shape[-1])
    wt = transposed(w)
    out = torch.mm(flat, wt) if b is None else torch.addmm(b, flat, wt)
    return out.view(*x.shape[:-1], w.shape[0])
