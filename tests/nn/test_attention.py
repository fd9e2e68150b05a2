"""lstmkit.nn.Attention: weights are a distribution over the unmasked keys (exactly 0 on
padding), the context is their weighted sum, each kind's scores match its formula, and
gradients check in float64."""

from __future__ import annotations

import pytest
import torch

from lstmkit.nn import Attention

KINDS = ["dot", "general", "additive"]


def inputs(n=3, s=6, t=4, h=5, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    keys = torch.randn(n, s, h, generator=g, dtype=dtype)
    query = torch.randn(n, t, h, generator=g, dtype=dtype)
    lengths = torch.tensor([6, 3, 1])
    mask = torch.arange(s)[None] < lengths[:, None]
    return query, keys, mask, lengths


@pytest.mark.parametrize("kind", KINDS)
def test_weights_sum_to_one_and_vanish_on_padding(kind):
    torch.manual_seed(0)
    attn = Attention(5, 5, kind)
    query, keys, mask, lengths = inputs()
    context, weights = attn(query, keys, mask)
    assert weights.shape == (3, 4, 6) and context.shape == (3, 4, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4))
    for i, k in enumerate(lengths.tolist()):
        assert (weights[i, :, k:] == 0).all() and (weights[i, :, :k] > 0).all()
    torch.testing.assert_close(context, weights @ keys)
    # padding's values do not matter
    other = keys.clone()
    other[~mask] = 1e3
    torch.testing.assert_close(attn(query, other, mask)[0], context)


def test_scores_follow_their_formulas():
    torch.manual_seed(0)
    query, keys, mask, _ = inputs(t=1)
    q = query[:, 0]
    dot = Attention(5, 5, "dot")
    expected = torch.softmax((keys @ q[:, :, None]).squeeze(-1), -1)
    torch.testing.assert_close(dot(q, keys)[1], expected)
    general = Attention(5, 5, "general")
    expected = torch.softmax(torch.einsum("nh,hk,nsk->ns", q, general.W_a.weight, keys), -1)
    torch.testing.assert_close(general(q, keys)[1], expected)
    add = Attention(5, 5, "additive", attn_size=7)
    hidden = torch.tanh(add.W_q(q)[:, None] + add.W_k(keys))
    expected = torch.softmax((hidden @ add.v_a.weight[0]), -1)
    torch.testing.assert_close(add(q, keys)[1], expected)


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck(kind):
    torch.manual_seed(0)
    attn = Attention(5, 5, kind).double()
    query, keys, mask, _ = inputs(dtype=torch.float64)
    query.requires_grad_(True)
    keys.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda q, k: attn(q, k, mask)[0], (query, keys))


def test_errors():
    with pytest.raises(ValueError, match="dot attention needs query_size == key_size"):
        Attention(4, 6, "dot")
    with pytest.raises(ValueError, match="attention kind must be one of dot, general, additive"):
        Attention(4, 4, "luong")
    with pytest.raises(ValueError, match=r"query must be \(N, H_q\)"):
        Attention(4, 4)(torch.randn(4), torch.randn(2, 3, 4))
