"""The temporal-order (6a) and copy-memory generators match their definitions."""

import math

import pytest
import torch

from lstmkit.tasks.lab.sequences import (
    TEMPORAL_SYMBOLS,
    copy_baseline_loss,
    copy_batch,
    temporal_order_batch,
)


def test_temporal_order_6a():
    batch = temporal_order_batch(4000, torch.Generator().manual_seed(0))
    symbols = batch.x.argmax(-1)  # (L, N)
    index = {s: k for k, s in enumerate(TEMPORAL_SYMBOLS)}
    assert int(batch.lengths.min()) == 100 and int(batch.lengths.max()) == 110
    counts = torch.bincount(batch.target, minlength=4)
    assert counts.min() > 900  # the four classes are balanced (1000 each expected)
    for n in range(4000):
        length = int(batch.lengths[n])
        s = symbols[:length, n].tolist()
        assert batch.x[:length, n].sum(-1).eq(1).all() and batch.x[length:, n].eq(0).all()
        assert s[0] == index["B"] and s[-1] == index["E"]
        relevant = [t for t, v in enumerate(s) if v in (index["X"], index["Y"])]
        assert len(relevant) == 2
        t1, t2 = (t + 1 for t in relevant)  # 1-based, as in the paper
        assert 10 <= t1 <= 20 and 50 <= t2 <= 60
        assert all(v < 4 for t, v in enumerate(s[1:-1], 1) if t not in relevant)
        order = "".join("X" if s[t] == index["X"] else "Y" for t in relevant)
        assert ["XX", "XY", "YX", "YY"].index(order) == int(batch.target[n])


def test_copy_memory():
    T = 30
    batch = copy_batch(T, 500, torch.Generator().manual_seed(1))
    inputs = batch.x.argmax(-1)
    assert batch.x.shape == (T + 20, 500, 10)
    assert torch.all((inputs[:10] >= 1) & (inputs[:10] <= 8))
    assert torch.all(inputs[10 : T + 9] == 0) and torch.all(inputs[T + 9] == 9)
    assert torch.all(inputs[T + 10 :] == 0)
    assert torch.equal(batch.target[-10:], inputs[:10]) and torch.all(batch.target[:-10] == 0)
    assert copy_baseline_loss(T) == pytest.approx(10 * math.log(8) / 50)
    with pytest.raises(ValueError, match="delay T >= 1"):
        copy_batch(0, 2, torch.Generator())


def test_seeded():
    a = temporal_order_batch(8, torch.Generator().manual_seed(3))
    b = temporal_order_batch(8, torch.Generator().manual_seed(3))
    assert torch.equal(a.x, b.x) and torch.equal(a.target, b.target)
