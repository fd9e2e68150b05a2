"""Batches of variable-length token sequences: truncation, length bucketing and padding.

A batch is as long as its longest sequence, so batches of random sequences are mostly
padding. :class:`BucketBatchSampler` groups sequences of similar length: each epoch it
shuffles the indices, cuts them into pools of ``batch_size * bucket_size_multiplier``, sorts
every pool by length, cuts the pools into batches and shuffles the batches. The batches stay
random from epoch to epoch, yet hold sequences of nearly equal length. Use it as a
``DataLoader``'s ``batch_sampler`` and :func:`pad_batch` in its ``collate_fn``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler


def truncate(ids: Sequence[int], max_len: int, head: int | None = None) -> list[int]:
    """Shorten ``ids`` to at most ``max_len`` tokens by keeping its head and its tail.

    Sun, Qiu, Xu and Huang, "How to Fine-Tune BERT for Text Classification?" (2019) found
    that keeping the first and last tokens of a long review (128 + 382 of 510) classifies it
    better than keeping only its head or only its tail: reviews often sum up at the end.

    Args:
        ids: the token ids.
        max_len: the most tokens to keep.
        head: how many of them come from the start; the other ``max_len - head`` come from
            the end. Default: ``max_len // 4``

    >>> truncate(list(range(10)), 4)
    [0, 7, 8, 9]
    """
    if max_len <= 0:
        raise ValueError(f"max_len must be positive, got {max_len}")
    head = max_len // 4 if head is None else head
    if not 0 <= head <= max_len:
        raise ValueError(f"head must be in [0, max_len={max_len}], got {head}")
    ids = list(ids)
    if len(ids) <= max_len:
        return ids
    tail = max_len - head
    return ids[:head] + (ids[-tail:] if tail else [])


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of indices of sequences of similar length, reshuffled every epoch.

    Every index appears in exactly one batch per epoch (with ``drop_last``, the indices of
    the one short batch are left out). The batches are a function of (``seed``, epoch); call
    :meth:`set_epoch` before each epoch.

    Args:
        lengths: the length of every sequence in the data set.
        batch_size: the number of sequences in a batch.
        shuffle: shuffle as described in the module docstring; ``False`` sorts all the
            sequences by length (stable) and cuts them into batches in that order, the same
            every epoch, for evaluation. Default: ``True``
        seed: seeds the shuffling (with the epoch). Default: 0
        bucket_size_multiplier: a pool sorted by length holds this many batches; larger
            pools waste less padding but make the batches less random. Default: 50
        drop_last: leave out the batch that is shorter than ``batch_size``. Default: ``False``
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        bucket_size_multiplier: int = 50,
        drop_last: bool = False,
    ) -> None:
        super().__init__()
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.ndim != 1 or self.lengths.size == 0:
            raise ValueError(f"lengths must be non-empty and 1-D, got shape {self.lengths.shape}")
        if (self.lengths < 0).any():
            raise ValueError(f"lengths must not be negative, got {self.lengths.min()}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if bucket_size_multiplier <= 0:
            raise ValueError(
                f"bucket_size_multiplier must be positive, got {bucket_size_multiplier}"
            )
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.bucket_size_multiplier, self.drop_last = bucket_size_multiplier, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose batches the next iteration yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = self.lengths.size
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        if not self.shuffle:
            batches = self._cut(np.argsort(self.lengths, kind="stable"))
            yield from (batch.tolist() for batch in batches)
            return
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.lengths.size)
        pool = self.batch_size * self.bucket_size_multiplier
        # Pools are whole numbers of batches, so only the last batch can be short.
        batches = self._cut(
            np.concatenate(
                [
                    indices[np.argsort(self.lengths[indices], kind="stable")]
                    for indices in np.split(order, range(pool, order.size, pool))
                ]
            )
        )
        for i in rng.permutation(len(batches)):
            yield batches[i].tolist()

    def _cut(self, order: np.ndarray) -> list[np.ndarray]:
        """``order`` cut into batches, the short last one left out with ``drop_last``."""
        batches = np.split(order, range(self.batch_size, order.size, self.batch_size))
        if self.drop_last and batches[-1].size < self.batch_size:
            batches.pop()
        return batches


def pad_batch(
    seqs: Sequence[Sequence[int]] | Sequence[Tensor], pad_id: int = 0
) -> tuple[Tensor, Tensor]:
    """Stack sequences of token ids into one batch-first tensor, padded at the end.

    Args:
        seqs: N sequences of token ids (lists or 1-D tensors).
        pad_id: the id written after the end of each shorter sequence. Default: 0

    Returns:
        ``(ids, lengths)``: ``ids`` a LongTensor (N, L_max), ``lengths`` a LongTensor (N,).

    >>> ids, lengths = pad_batch([[5, 6, 7], [8]])
    >>> ids.tolist(), lengths.tolist()
    ([[5, 6, 7], [8, 0, 0]], [3, 1])
    """
    if len(seqs) == 0:
        raise ValueError("pad_batch needs at least one sequence")
    rows = [torch.as_tensor(seq, dtype=torch.long) for seq in seqs]
    for i, row in enumerate(rows):
        if row.dim() != 1:
            raise ValueError(f"sequence {i} must be 1-D, got shape {tuple(row.shape)}")
    lengths = torch.tensor([row.numel() for row in rows], dtype=torch.long)
    ids = torch.full((len(rows), int(lengths.max())), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : row.numel()] = row
    return ids, lengths
