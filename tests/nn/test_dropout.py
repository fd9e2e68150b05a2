"""Locked dropout keeps one mask over time; embedding dropout drops whole rows of the table."""

from __future__ import annotations

import re

import pytest
import torch

from lstmkit.nn.dropout import LockedDropout, embedding_dropout


def test_locked_dropout_uses_the_same_mask_at_every_step():
    torch.manual_seed(0)
    drop = LockedDropout(0.5)
    x = torch.randn(1, 4, 6).expand(7, 4, 6)  # the same input at every step
    y = drop(x)
    assert y.shape == (7, 4, 6)
    assert torch.equal(y, y[:1].expand_as(y))
    zeros = y[0] == 0
    assert 0 < int(zeros.sum()) < 24  # some, not all, elements dropped
    # kept elements are scaled by 1 / (1 - p) = 2
    torch.testing.assert_close(y[0][~zeros], 2 * x[0][~zeros], rtol=0, atol=0)


def test_locked_dropout_masks_differ_between_sequences_and_features():
    torch.manual_seed(1)
    y = LockedDropout(0.5)(torch.ones(3, 50, 40))
    mask = y[0]  # (N, D)
    assert not torch.equal(mask[0], mask[1])
    assert not torch.equal(mask[:, 0], mask[:, 1])


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_locked_dropout_rate_and_scaling(p):
    torch.manual_seed(0)
    y = LockedDropout(p)(torch.ones(2, 400, 500))  # 200,000 independent mask entries
    assert torch.equal(y[0], y[1])
    values = y.unique()
    assert values.tolist() == [0.0, pytest.approx(1 / (1 - p), rel=1e-6)]
    rate = float((y[0] == 0).float().mean())
    assert abs(rate - p) < 0.005  # ~5 standard deviations
    assert float(y.mean()) == pytest.approx(1.0, abs=0.01)  # unbiased in expectation


def test_locked_dropout_is_the_identity_in_eval_mode_and_for_p0():
    x = torch.randn(5, 3, 4)
    drop = LockedDropout(0.7).eval()
    assert drop(x) is x
    assert LockedDropout(0.0)(x) is x
    assert drop(torch.ones(5)).shape == (5,)  # the 3-D check only applies when dropping


def test_locked_dropout_batch_first_shares_the_mask_over_dim_1():
    torch.manual_seed(0)
    y = LockedDropout(0.5, batch_first=True)(torch.ones(4, 9, 30))  # (N, L, D)
    assert torch.equal(y, y[:, :1].expand_as(y))
    assert not torch.equal(y[0, 0], y[1, 0])  # each sequence has its own mask
    assert 0 < int((y == 0).sum()) < y.numel()


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_locked_dropout_bad_p(p):
    msg = f"dropout probability has to be between 0 and 1, but got {p}"
    with pytest.raises(ValueError, match=re.escape(msg)):
        LockedDropout(p)


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 4, 5)])
def test_locked_dropout_needs_3d_input(shape):
    with pytest.raises(ValueError, match=re.escape(f"3-D input, got shape {shape}")):
        LockedDropout(0.3)(torch.ones(shape))


def test_p1_drops_everything_to_zeros_not_nan():
    assert repr(LockedDropout(0.25)) == "LockedDropout(p=0.25)"
    # p = 1 is allowed and gives zeros, as torch.nn.Dropout(1.0) does (not 0 / 0 = nan)
    assert torch.equal(LockedDropout(1.0)(torch.ones(2, 3, 4)), torch.zeros(2, 3, 4))
    embed = torch.nn.Embedding(5, 3)
    out = embedding_dropout(embed, torch.arange(5), 1.0, training=True)
    assert torch.equal(out, torch.zeros(5, 3))


def test_embedding_dropout_drops_every_occurrence_of_a_token_together():
    torch.manual_seed(0)
    embed = torch.nn.Embedding(10, 5)
    ids = torch.arange(10).repeat(6, 3).view(12, 15)  # every token 18 times
    out = embedding_dropout(embed, ids, 0.5, training=True)
    assert out.shape == (12, 15, 5)
    dropped = set()
    for token in range(10):
        rows = out[ids == token]  # (18, 5)
        assert torch.equal(rows, rows[:1].expand_as(rows))  # all occurrences alike
        if torch.equal(rows[0], torch.zeros(5)):
            dropped.add(token)
        else:  # kept rows are scaled by 1 / (1 - p)
            torch.testing.assert_close(rows[0], 2 * embed.weight[token].detach())
    assert 0 < len(dropped) < 10


def test_embedding_dropout_rate():
    torch.manual_seed(0)
    embed = torch.nn.Embedding(20000, 2)
    out = embedding_dropout(embed, torch.arange(20000), 0.3, training=True)
    rate = float((out == 0).all(-1).float().mean())
    assert abs(rate - 0.3) < 0.02


def test_embedding_dropout_in_eval_or_p0_is_a_plain_lookup():
    torch.manual_seed(0)
    embed = torch.nn.Embedding(10, 4)
    ids = torch.randint(10, (6, 2))
    expected = embed.weight[ids]
    assert torch.equal(embedding_dropout(embed, ids, 0.5, training=False), expected)
    assert torch.equal(embedding_dropout(embed, ids, 0.0, training=True), expected)


def test_embedding_dropout_gradient_reaches_only_kept_rows():
    torch.manual_seed(3)
    embed = torch.nn.Embedding(8, 3)
    ids = torch.arange(8).repeat(4)
    embedding_dropout(embed, ids, 0.5, training=True).sum().backward()
    grad = embed.weight.grad
    kept = grad.abs().sum(1) != 0
    assert 0 < int(kept.sum()) < 8
    # each kept row appears 4 times, scaled by 2
    torch.testing.assert_close(grad[kept], torch.full((int(kept.sum()), 3), 8.0))
