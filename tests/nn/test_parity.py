"""lstmkit.nn vs torch.nn in float64 with copied weights: outputs, states and every gradient."""

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lstmkit import nn as lnn

TOL = 1e-10
T, N, H_IN, H, PROJ = 7, 6, 4, 5, 3
LENGTHS = [5, 7, 1, 5, 2, 1]  # the issue's [7, 5, 5, 2, 1, 1], unsorted


def _pair(cls_ours, cls_torch, seed, **kw):
    torch.manual_seed(seed)
    ref = cls_torch(**kw).double()
    ours = cls_ours(**kw).double()
    missing = ours.load_state_dict(ref.state_dict())
    assert not missing.missing_keys and not missing.unexpected_keys
    return ours, ref


def _states(out):
    """The final state(s) as a tuple, for LSTM ((h, c)) and GRU/RNN (h)."""
    return tuple(out[1]) if isinstance(out[1], tuple) else (out[1],)


def _check(ours, ref, mode, with_hx, batch_first, is_lstm):
    rows = ref.num_layers * (2 if ref.bidirectional else 1)
    h_out = getattr(ref, "proj_size", 0) or ref.hidden_size
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, N, H_IN, dtype=torch.double, generator=g)
    sizes = [h_out, ref.hidden_size] if is_lstm else [h_out]
    hx = [torch.randn(rows, N, s, dtype=torch.double, generator=g) for s in sizes]
    if mode == "unbatched":
        x, hx = x[:, 0], [s[:, 0] for s in hx]
    elif batch_first:
        x = x.transpose(0, 1).contiguous()
    x.requires_grad_(True)
    for s in hx:
        s.requires_grad_(True)
    state = (tuple(hx) if is_lstm else hx[0]) if with_hx else None
    lengths = torch.tensor(LENGTHS)

    if mode in ("padded", "unbatched"):
        out_o, out_r = ours(x, state), ref(x, state)
        y_o, y_r = out_o[0], out_r[0]
    elif mode == "lengths":
        out_o = ours(x, state, lengths=lengths)
        packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
        out_r = ref(packed, state)
        y_o = out_o[0]
        y_r = pad_packed_sequence(out_r[0], batch_first=batch_first, total_length=T)[0]
    else:  # packed
        packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
        out_o, out_r = ours(packed, state), ref(packed, state)
        assert torch.equal(out_o[0].batch_sizes, out_r[0].batch_sizes)
        assert torch.equal(out_o[0].sorted_indices, out_r[0].sorted_indices)
        y_o, y_r = out_o[0].data, out_r[0].data

    results_o = (y_o, *_states(out_o))
    results_r = (y_r, *_states(out_r))
    for a, b in zip(results_o, results_r):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=TOL)
    if mode == "lengths":  # exactly zero past each length
        pad = torch.arange(T).unsqueeze(1) >= lengths  # (L, N)
        y = y_o.transpose(0, 1) if batch_first else y_o
        assert torch.all(y[pad] == 0)

    weights = [torch.randn(r.shape, dtype=torch.double, generator=g) for r in results_r]
    grads = []
    for results, module in ((results_o, ours), (results_r, ref)):
        loss = sum((r * w).sum() for r, w in zip(results, weights))
        inputs = [x, *hx] if with_hx else [x]
        names, params = zip(*module.named_parameters())
        values = torch.autograd.grad(loss, inputs + list(params), retain_graph=True)
        grads.append(dict(zip(["x", "h0", "c0"][: len(inputs)] + list(names), values)))
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=0, atol=TOL, msg=name)


MODES = ["padded", "lengths", "packed", "unbatched"]
GRID = list(itertools.product([1, 2, 3], [False, True], [False, True], [True, False]))


# the spec, torch's fused kernel on our weights, and lstmkit's fused kernel
IMPLEMENTATIONS = ["reference", "torch"]
LSTM_IMPLEMENTATIONS = [*IMPLEMENTATIONS, "fused"]


@pytest.mark.parametrize("implementation", LSTM_IMPLEMENTATIONS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("proj_size", [0, PROJ])
@pytest.mark.parametrize("num_layers,bidirectional,batch_first,bias", GRID)
def test_lstm_matches_torch(
    mode, with_hx, proj_size, num_layers, bidirectional, batch_first, bias, implementation
):
    kw = dict(
        input_size=H_IN,
        hidden_size=H,
        num_layers=num_layers,
        bias=bias,
        batch_first=batch_first,
        bidirectional=bidirectional,
    )
    ours, ref = _pair(lnn.LSTM, torch.nn.LSTM, seed=num_layers, proj_size=proj_size, **kw)
    ours.implementation = implementation
    _check(ours, ref, mode, with_hx, batch_first, is_lstm=True)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("kind", ["gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("num_layers,bidirectional,batch_first,bias", GRID)
def test_gru_rnn_match_torch(
    mode, with_hx, kind, num_layers, bidirectional, batch_first, bias, implementation
):
    kw = dict(
        input_size=H_IN,
        hidden_size=H,
        num_layers=num_layers,
        bias=bias,
        batch_first=batch_first,
        bidirectional=bidirectional,
    )
    if kind == "gru":
        ours, ref = _pair(lnn.GRU, torch.nn.GRU, seed=0, **kw)
    else:
        kw["nonlinearity"] = kind.split("_")[1]
        ours, ref = _pair(lnn.RNN, torch.nn.RNN, seed=0, **kw)
    ours.implementation = implementation
    _check(ours, ref, mode, with_hx, batch_first, is_lstm=False)


@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_cells_match_torch(kind, bias, batched, with_hx):
    kw = dict(input_size=H_IN, hidden_size=H, bias=bias)
    if kind == "lstm":
        ours, ref = _pair(lnn.LSTMCell, torch.nn.LSTMCell, 0, **kw)
    elif kind == "gru":
        ours, ref = _pair(lnn.GRUCell, torch.nn.GRUCell, 0, **kw)
    else:
        ours, ref = _pair(lnn.RNNCell, torch.nn.RNNCell, 0, nonlinearity=kind[4:], **kw)
    g = torch.Generator().manual_seed(2)
    shape = (N,) if batched else ()
    x = torch.randn(*shape, H_IN, dtype=torch.double, generator=g, requires_grad=True)
    hx = [
        torch.randn(*shape, H, dtype=torch.double, generator=g, requires_grad=True)
        for _ in range(2 if kind == "lstm" else 1)
    ]
    state = None if not with_hx else (tuple(hx) if kind == "lstm" else hx[0])
    res_o, res_r = ours(x, state), ref(x, state)
    res_o = res_o if isinstance(res_o, tuple) else (res_o,)
    res_r = res_r if isinstance(res_r, tuple) else (res_r,)
    weights = [torch.randn(r.shape, dtype=torch.double, generator=g) for r in res_r]
    inputs = [x, *hx] if with_hx else [x]
    grads = []
    for res, module in ((res_o, ours), (res_r, ref)):
        torch.testing.assert_close(res[0].shape, res_r[0].shape)
        loss = sum((r * w).sum() for r, w in zip(res, weights))
        grads.append(torch.autograd.grad(loss, inputs + list(module.parameters())))
    for a, b in zip(res_o, res_r):
        torch.testing.assert_close(a, b, rtol=0, atol=TOL)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=TOL)


def test_functional_cells_match_torch_vf():
    g = torch.Generator().manual_seed(3)
    x, h, c = (torch.randn(N, s, dtype=torch.double, generator=g) for s in (H_IN, H, H))
    w_ih4, w_hh4 = torch.randn(4 * H, H_IN, dtype=torch.double), torch.randn(4 * H, H).double()
    b_ih4, b_hh4 = torch.randn(4 * H).double(), torch.randn(4 * H).double()
    ref = torch.lstm_cell(x, (h, c), w_ih4, w_hh4, b_ih4, b_hh4)
    for a, b in zip(lnn.functional.lstm_cell(x, (h, c), w_ih4, w_hh4, b_ih4, b_hh4), ref):
        torch.testing.assert_close(a, b, rtol=0, atol=TOL)
    w_ih3, w_hh3, b_ih3, b_hh3 = w_ih4[: 3 * H], w_hh4[: 3 * H], b_ih4[: 3 * H], b_hh4[: 3 * H]
    torch.testing.assert_close(
        lnn.functional.gru_cell(x, h, w_ih3, w_hh3, b_ih3, b_hh3),
        torch.gru_cell(x, h, w_ih3, w_hh3, b_ih3, b_hh3),
        rtol=0,
        atol=TOL,
    )
    w_ih1, w_hh1, b_ih1, b_hh1 = w_ih4[:H], w_hh4[:H], b_ih4[:H], b_hh4[:H]
    torch.testing.assert_close(
        lnn.functional.rnn_cell(x, h, w_ih1, w_hh1, b_ih1, b_hh1, "relu"),
        torch.rnn_relu_cell(x, h, w_ih1, w_hh1, b_ih1, b_hh1),
        rtol=0,
        atol=TOL,
    )


@pytest.mark.parametrize("kw", [dict(), dict(num_layers=2, bidirectional=True, proj_size=2)])
def test_state_dict_loads_both_ways(kw):
    ours = lnn.LSTM(H_IN, H, **kw)
    ref = torch.nn.LSTM(H_IN, H, **kw)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(T, N, H_IN)
    torch.testing.assert_close(ref(x)[0], ours(x)[0])


def test_train_mode_dropout_between_layers_only():
    """dropout=1 zeroes layer 1's input: layer 2 then sees only its biases."""
    torch.manual_seed(0)
    ours = lnn.LSTM(H_IN, H, num_layers=2, dropout=1.0).double().train()
    x = torch.randn(T, N, H_IN, dtype=torch.double)
    out_a = ours(x)[0]
    out_b = ours(torch.randn(T, N, H_IN, dtype=torch.double))[0]
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=0)
    ours.eval()
    assert not torch.allclose(ours(x)[0], out_a)
