"""Length bucketing covers every index once and wastes little padding; truncation and padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lstmkit.data.batching import BucketBatchSampler, pad_batch, truncate

LENGTHS = np.random.default_rng(0).integers(1, 501, size=5000)


def padding_waste(batches: list[list[int]]) -> float:
    """The fraction of a padded batch's positions that are padding, over all batches."""
    padded = sum(len(batch) * LENGTHS[batch].max() for batch in batches)
    return 1 - LENGTHS.sum() / padded


def test_every_index_once_per_epoch():
    sampler = BucketBatchSampler(LENGTHS, 32)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 157  # ceil(5000 / 32)
        assert sorted(i for batch in batches for i in batch) == list(range(5000))
        assert sorted(len(batch) for batch in batches)[0] == 5000 - 156 * 32


def test_buckets_waste_far_less_padding_than_random_batches():
    bucketed = padding_waste(list(BucketBatchSampler(LENGTHS, 32)))
    order = np.random.default_rng(1).permutation(5000)
    random = padding_waste([order[i : i + 32].tolist() for i in range(0, 5000, 32)])
    assert bucketed < 0.03 and random > 0.45
    # Sorting everything is the floor; pools of 50 batches come close to it.
    assert padding_waste(list(BucketBatchSampler(LENGTHS, 32, shuffle=False))) < 0.01


def test_set_epoch_reshuffles_deterministically():
    sampler = BucketBatchSampler(LENGTHS, 32, seed=3)
    epoch0 = list(sampler)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch1 != epoch0
    assert {frozenset(b) for b in epoch1} != {frozenset(b) for b in epoch0}  # new batches
    sampler.set_epoch(0)
    assert list(sampler) == epoch0
    assert list(BucketBatchSampler(LENGTHS, 32, seed=3)) == epoch0
    assert list(BucketBatchSampler(LENGTHS, 32, seed=4)) != epoch0


def test_no_shuffle_sorts_by_length_stably_every_epoch():
    lengths = [5, 1, 3, 1, 5, 2, 4]
    sampler = BucketBatchSampler(lengths, 3, shuffle=False)
    assert list(sampler) == [[1, 3, 5], [2, 6, 0], [4]]
    sampler.set_epoch(7)
    assert list(sampler) == [[1, 3, 5], [2, 6, 0], [4]]
    assert list(BucketBatchSampler(lengths, 3, shuffle=False, drop_last=True)) == [
        [1, 3, 5],
        [2, 6, 0],
    ]


def test_drop_last_leaves_out_only_the_short_batch():
    sampler = BucketBatchSampler(LENGTHS, 32, drop_last=True, bucket_size_multiplier=4)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 156
    assert all(len(batch) == 32 for batch in batches)
    assert len({i for batch in batches for i in batch}) == 156 * 32
    # Divisible sizes lose nothing.
    assert len(BucketBatchSampler(LENGTHS[:4992], 32, drop_last=True)) == 156


def test_works_as_a_dataloader_batch_sampler():
    data = [list(range(n)) for n in [3, 1, 2, 6, 5, 4]]
    loader = torch.utils.data.DataLoader(
        data,
        batch_sampler=BucketBatchSampler([len(d) for d in data], 2, shuffle=False),
        collate_fn=pad_batch,
    )
    assert [lengths.tolist() for _, lengths in loader] == [[1, 2], [3, 4], [5, 6]]


def test_sampler_errors():
    with pytest.raises(ValueError, match="batch_size must be positive, got 0"):
        BucketBatchSampler([1, 2], 0)
    with pytest.raises(ValueError, match="bucket_size_multiplier must be positive, got -1"):
        BucketBatchSampler([1, 2], 2, bucket_size_multiplier=-1)
    with pytest.raises(ValueError, match=r"non-empty and 1-D, got shape \(0,\)"):
        BucketBatchSampler([], 2)
    with pytest.raises(ValueError, match="must not be negative, got -3"):
        BucketBatchSampler([1, -3], 2)


def test_truncate_keeps_head_and_tail():
    ids = list(range(100))
    assert truncate(ids, 8) == [0, 1, 94, 95, 96, 97, 98, 99]  # head 8 // 4 = 2
    assert truncate(ids, 5, head=3) == [0, 1, 2, 98, 99]
    assert truncate(ids, 4, head=4) == [0, 1, 2, 3]
    assert truncate(ids, 4, head=0) == [96, 97, 98, 99]
    assert truncate(range(6), 6) == [0, 1, 2, 3, 4, 5]  # short enough: unchanged
    with pytest.raises(ValueError, match="max_len must be positive, got 0"):
        truncate(ids, 0)
    with pytest.raises(ValueError, match=r"head must be in \[0, max_len=4\], got 5"):
        truncate(ids, 4, head=5)


def test_pad_batch():
    ids, lengths = pad_batch([[4, 5], [6], [7, 8, 9]], pad_id=-1)
    assert ids.dtype == lengths.dtype == torch.long
    assert ids.tolist() == [[4, 5, -1], [6, -1, -1], [7, 8, 9]]
    assert lengths.tolist() == [2, 1, 3]
    ids, lengths = pad_batch([torch.tensor([1, 2, 3]), torch.tensor([4])])
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]] and lengths.tolist() == [3, 1]
    with pytest.raises(ValueError, match="at least one sequence"):
        pad_batch([])
    with pytest.raises(ValueError, match=r"sequence 1 must be 1-D, got shape \(1, 2\)"):
        pad_batch([torch.tensor([1]), torch.tensor([[1, 2]])])
