"""torch.autograd.gradcheck on every layer and variant in float64 (inputs, states, weights)."""

import pytest
import torch
from torch.autograd import gradcheck
from torch.func import functional_call

from lstmkit.nn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

T, N, H_IN, H = 4, 2, 3, 3
LENGTHS = torch.tensor([4, 2])

LSTM_VARIANTS = [
    dict(),
    dict(proj_size=2),
    dict(peephole=True),
    dict(layer_norm=True),
    dict(coupled=True),
    dict(zoneout=(0.3, 0.4)),
    dict(recurrent_dropout=0.3),
    dict(weight_drop=0.3),
    dict(
        layer_norm=True,
        peephole=True,
        coupled=True,
        zoneout=0.2,
        recurrent_dropout=0.2,
        weight_drop=0.2,
        proj_size=2,
    ),
]


def _check(module, states, lengths):
    """gradcheck w.r.t. input, initial states and every parameter; masks reseeded per call."""
    names, params = zip(*module.named_parameters())
    x = torch.randn(T, N, H_IN, dtype=torch.double, requires_grad=True)

    def f(x, *rest):
        torch.manual_seed(0)  # the same random masks on every evaluation
        hx, weights = rest[: len(states)], rest[len(states) :]
        hx = tuple(hx) if len(hx) == 2 else hx[0]
        out, h_n = functional_call(module, dict(zip(names, weights)), (x, hx, lengths))
        return (out, *h_n) if isinstance(h_n, tuple) else (out, h_n)

    leaves = [p.detach().clone().requires_grad_(True) for p in params]
    assert gradcheck(f, (x, *states, *leaves), eps=1e-6, atol=1e-6, fast_mode=True)


@pytest.mark.parametrize("implementation", ["reference", "fused", "auto"])
@pytest.mark.parametrize("kw", LSTM_VARIANTS, ids=str)
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
def test_lstm_variants_gradcheck(kw, lengths, implementation):
    torch.manual_seed(1)
    m = LSTM(H_IN, H, num_layers=2, bidirectional=True, implementation=implementation, **kw)
    m = m.double().train()
    h_out = m.output_size
    states = [torch.randn(4, N, s, dtype=torch.double, requires_grad=True) for s in (h_out, H)]
    _check(m, states, lengths)


@pytest.mark.parametrize("cls", [GRU, RNN])
def test_gru_rnn_gradcheck(cls):
    torch.manual_seed(1)
    m = cls(H_IN, H, num_layers=2, bidirectional=True).double()
    _check(m, [torch.randn(4, N, H, dtype=torch.double, requires_grad=True)], LENGTHS)


@pytest.mark.parametrize(
    "cell",
    [
        LSTMCell(H_IN, H, layer_norm=True, peephole=True),
        LSTMCell(H_IN, H, coupled=True),
        GRUCell(H_IN, H),
        RNNCell(H_IN, H, nonlinearity="relu"),
    ],
    ids=["lstm-ln-peephole", "lstm-cifg", "gru", "rnn-relu"],
)
def test_cells_gradcheck(cell):
    cell = cell.double()
    names, params = zip(*cell.named_parameters())
    n_states = 2 if isinstance(cell, LSTMCell) else 1
    x = torch.randn(N, H_IN, dtype=torch.double, requires_grad=True)
    states = [torch.randn(N, H, dtype=torch.double, requires_grad=True) for _ in range(n_states)]

    def f(x, *rest):
        hx = tuple(rest[:n_states]) if n_states == 2 else rest[0]
        return functional_call(cell, dict(zip(names, rest[n_states:])), (x, hx))

    leaves = [p.detach().clone().requires_grad_(True) for p in params]
    assert gradcheck(f, (x, *states, *leaves), eps=1e-6, atol=1e-6, fast_mode=True)
