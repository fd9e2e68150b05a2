"""The adding-problem generator matches the definition of Hochreiter & Schmidhuber (1997)."""

import pytest
import torch

from lstmkit.tasks.lab.adding import adding_batch


@pytest.mark.parametrize("T", [11, 20, 100])
def test_generator_follows_the_definition(T):
    batch = adding_batch(T, 4000, torch.Generator().manual_seed(0))
    x, lengths, target = batch.x, batch.lengths, batch.target
    assert x.shape == (int(lengths.max()), 4000, 2)
    assert int(lengths.min()) == T and int(lengths.max()) == T + T // 10  # whole range drawn
    values, markers = x[..., 0], x[..., 1]
    for n in range(4000):
        length = int(lengths[n])
        v, m = values[:length, n], markers[:length, n]
        assert torch.all(x[length:, n] == 0)  # padding is zero
        assert torch.all((v >= -1) & (v <= 1))
        marked = (m == 1.0).nonzero().flatten().tolist()
        p1, p2 = batch.positions[n].tolist()
        assert sorted([p1, p2]) == marked  # exactly two pairs marked 1.0
        assert p1 < 10  # X1: one of the first 10
        assert p2 - (p1 < p2) < T // 2 - 1  # X2: one of the first T/2 - 1 still unmarked
        assert m[-1] == -1.0
        if 0 not in marked:
            assert m[0] == -1.0
        assert torch.all(m[1:-1][(m[1:-1] != 1.0)] == 0.0)
        torch.testing.assert_close(target[n], 0.5 + v[marked].sum() / 4.0)
    assert target.min() >= 0.0 and target.max() <= 1.0


def test_first_pair_marked_counts_as_zero():
    batch = adding_batch(20, 4000, torch.Generator().manual_seed(1))
    x1_first = batch.positions[:, 0] == 0
    assert 300 < int(x1_first.sum()) < 500  # 1/10 of the sequences
    assert torch.all(batch.x[0, x1_first, 0] == 0.0)
    x2_first = batch.positions[:, 1] == 0  # only X1 is zeroed there
    assert int(x2_first.sum()) > 0 and torch.all(batch.x[0, x2_first, 0] != 0.0)


def test_marker_positions_are_uniform():
    T = 20
    batch = adding_batch(T, 20000, torch.Generator().manual_seed(2))
    marks = (batch.x[..., 1] == 1.0).float().sum(1)  # per position
    assert marks[: T // 2 - 1].min() > 0 and torch.all(marks[T // 2 :] == 0)
    # X1 uniform over the first 10: each of those positions is marked at least 20000/10 times
    assert marks[:10].min() >= 0.9 * 2000


def test_seeded_and_validated():
    a = adding_batch(30, 8, torch.Generator().manual_seed(3))
    b = adding_batch(30, 8, torch.Generator().manual_seed(3))
    assert torch.equal(a.x, b.x) and torch.equal(a.target, b.target)
    with pytest.raises(ValueError, match="the adding problem needs T >= 11, got T=10"):
        adding_batch(10, 8, torch.Generator())
