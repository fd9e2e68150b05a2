"""Diagnostics equal autograd computed one t at a time on tiny models."""

import pytest
import torch

from lstmkit.nn import GRU, LSTM, RNN
from lstmkit.tasks.lab.diagnostics import gate_statistics, gradient_profile

T, N = 6, 3


def _models():
    torch.manual_seed(0)
    return [
        LSTM(2, 4).double(),
        LSTM(2, 4, peephole=True, layer_norm=True, proj_size=3).double(),
        GRU(2, 4).double(),
        RNN(2, 4, nonlinearity="relu").double(),
    ]


def _split_run(model, x, t):
    """States after step t as leaves, and the last hidden state computed from them."""
    _, state = model(x[: t + 1])
    state = (
        tuple(s.detach().requires_grad_(True) for s in state)
        if isinstance(state, tuple)
        else state.detach().requires_grad_(True)
    )
    if t == x.size(0) - 1:
        last = state[0] if isinstance(state, tuple) else state
    else:
        _, rest = model(x[t + 1 :], state)
        last = rest[0] if isinstance(rest, tuple) else rest
    return state, last[-1]


def _continuation(model, x, leaves, t, n):
    """h_t of sample n -> h_T, the other state (c_t) held fixed."""

    def f(h):
        if t == x.size(0) - 1:
            return h
        hx = (h.view(1, 1, -1), leaves[1][:, n : n + 1]) if len(leaves) == 2 else h.view(1, 1, -1)
        _, rest = model(x[t + 1 :, n : n + 1], hx)
        return (rest[0] if isinstance(rest, tuple) else rest)[-1, 0]

    return f


@pytest.mark.parametrize("model", _models(), ids=["lstm", "lstm-variants", "gru", "rnn"])
def test_gradient_norms_equal_one_t_at_a_time(model):
    x = torch.randn(T, N, 2, dtype=torch.double)
    profile = gradient_profile(model, x)
    for t in range(T):
        state, last = _split_run(model, x, t)
        leaves = state if isinstance(state, tuple) else (state,)
        grads = torch.autograd.grad(last.sum(), leaves, allow_unused=True)
        grads = [torch.zeros_like(s) if g is None else g for g, s in zip(grads, leaves)]
        want_dh = grads[0][0].norm(dim=1).mean()
        torch.testing.assert_close(profile.dh[0, t], want_dh, rtol=1e-10, atol=1e-12)
        if isinstance(model, LSTM):
            want_dc = grads[1][0].norm(dim=1).mean()
            torch.testing.assert_close(profile.dc[0, t], want_dc, rtol=1e-10, atol=1e-12)
        # ∂h_T/∂h_t per sample, by torch.autograd.functional.jacobian
        norms = [
            torch.autograd.functional.jacobian(
                _continuation(model, x, leaves, t, n), leaves[0][0, n]
            ).norm()
            for n in range(N)
        ]
        torch.testing.assert_close(
            profile.jacobian[t], torch.stack(norms).mean(), rtol=1e-8, atol=1e-12
        )
    assert profile.dc is None or profile.dc.shape == (1, T)


def test_two_layers_and_errors():
    model = LSTM(2, 4, num_layers=2).double()
    profile = gradient_profile(model, torch.randn(T, N, 2, dtype=torch.double), jacobian=False)
    assert profile.dh.shape == (2, T) and torch.isnan(profile.jacobian).all()
    with pytest.raises(ValueError, match="unidirectional"):
        gradient_profile(LSTM(2, 4, bidirectional=True), torch.randn(T, N, 2))
    with pytest.raises(TypeError, match="expected an lstmkit.nn LSTM, GRU or RNN"):
        gradient_profile(torch.nn.LSTM(2, 4), torch.randn(T, N, 2))


def test_gate_statistics_see_a_saturated_forget_gate():
    model = LSTM(2, 4, forget_bias=50.0)
    stats = gate_statistics(model, torch.randn(T, N, 2))
    assert stats["f"]["near_1"] == [[1.0] * T]
    assert stats["f"]["near_0"] == [[0.0] * T]
    assert all(0 < m < 1 for m in stats["i"]["mean"][0])
