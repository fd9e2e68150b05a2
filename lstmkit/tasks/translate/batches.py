"""Translation batches: pairs of subword ids, bucketed by length, padded, ``<s>``/``</s>``
added, and the over-long pairs' truncation counted."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from lstmkit.data.batching import BucketBatchSampler, pad_batch
from lstmkit.data.parallel import BOS_ID, EOS_ID, PAD_ID


class Batch(NamedTuple):
    """``src`` (N, S) and ``src_lengths`` (N,); ``tgt_in`` (N, T): ``<s>`` + target;
    ``tgt_out`` (N, T): target + ``</s>`` (padding is ``<pad>``, id 0); ``index`` (N,): the
    pairs' positions in the data set."""

    src: Tensor
    src_lengths: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
    index: Tensor


def truncate_pairs(
    src: list[list[int]], tgt: list[list[int]], max_len: int
) -> tuple[list[list[int]], list[list[int]], int]:
    """Both sides cut to ``max_len`` tokens; the number of pairs that were cut."""
    cut = sum(1 for s, t in zip(src, tgt) if len(s) > max_len or len(t) > max_len)
    return [s[:max_len] for s in src], [t[:max_len] for t in tgt], cut


def make_batch(
    src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]] | None, index: Sequence[int]
) -> Batch:
    """One padded :class:`Batch` (``tgt`` ``None``: a source-only batch for decoding)."""
    s, s_len = pad_batch(list(src), PAD_ID)
    if s.shape[1] == 0:  # all sources empty: one padding column to read
        s = s.new_full((s.shape[0], 1), PAD_ID)
    if tgt is None:
        empty = s.new_zeros(s.shape[0], 0)
        return Batch(s, s_len, empty, empty, torch.as_tensor(list(index)))
    t_in, _ = pad_batch([[BOS_ID, *t] for t in tgt], PAD_ID)
    t_out, _ = pad_batch([[*t, EOS_ID] for t in tgt], PAD_ID)
    return Batch(s, s_len, t_in, t_out, torch.as_tensor(list(index)))


class PairBatches:
    """Re-iterable batches of ``batch_size`` pairs of similar length (reshuffled every epoch
    when ``shuffle``; else in order of length, for evaluation)."""

    def __init__(
        self,
        src: list[list[int]],
        tgt: list[list[int]] | None,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
    ) -> None:
        self.src, self.tgt = src, tgt
        lengths = [max(len(s), len(t)) for s, t in zip(src, tgt)] if tgt else [len(s) for s in src]
        self.sampler = BucketBatchSampler(lengths, batch_size, shuffle=shuffle, seed=seed)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Batch]:
        for idx in self.sampler:
            tgt = None if self.tgt is None else [self.tgt[i] for i in idx]
            yield make_batch([self.src[i] for i in idx], tgt, idx)
