"""Property-based tests over random small shapes and flag combinations."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lstmkit.nn import GRU, LSTM, RNN, LSTMCell


@st.composite
def configs(draw):
    hidden = draw(st.integers(2, 6))
    kw = dict(
        input_size=draw(st.integers(1, 5)),
        hidden_size=hidden,
        num_layers=draw(st.integers(1, 3)),
        bias=draw(st.booleans()),
        bidirectional=draw(st.booleans()),
        proj_size=draw(st.sampled_from([0, hidden - 1])),
        layer_norm=draw(st.booleans()),
        peephole=draw(st.booleans()),
        coupled=draw(st.booleans()),
        # off in eval mode, which these properties use: they must not change anything
        zoneout=draw(st.sampled_from([0.0, 0.3])),
        recurrent_dropout=draw(st.sampled_from([0.0, 0.3])),
        weight_drop=draw(st.sampled_from([0.0, 0.3])),
    )
    steps = draw(st.integers(1, 6))
    lengths = draw(st.lists(st.integers(1, steps), min_size=1, max_size=4))
    return kw, steps, lengths, draw(st.integers(0, 2**16))


def _build(kw, seed):
    torch.manual_seed(seed)
    m = LSTM(**kw).double().eval()
    with torch.no_grad():  # move LN and peephole parameters off their init
        for name, p in m.named_parameters():
            if name.startswith(("ln_", "weight_c")):
                p.add_(torch.randn_like(p) * 0.3)
    return m


@settings(max_examples=40, deadline=None)
@given(configs())
def test_each_sequence_is_independent_of_its_padding_and_batch(cfg):
    """A padded batch with lengths equals each sequence run alone, unbatched."""
    kw, steps, lengths, seed = cfg
    m = _build(kw, seed)
    x = torch.randn(steps, len(lengths), kw["input_size"], dtype=torch.double)
    out, (h_n, c_n) = m(x, lengths=torch.tensor(lengths))
    for n, length in enumerate(lengths):
        out_n, (h_nn, c_nn) = m(x[:length, n])
        torch.testing.assert_close(out[:length, n], out_n, rtol=0, atol=1e-12)
        assert torch.all(out[length:, n] == 0)
        torch.testing.assert_close(h_n[:, n], h_nn, rtol=0, atol=1e-12)
        torch.testing.assert_close(c_n[:, n], c_nn, rtol=0, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(configs())
def test_packed_lengths_and_batch_first_agree(cfg):
    kw, steps, lengths, seed = cfg
    m = _build(kw, seed)
    x = torch.randn(steps, len(lengths), kw["input_size"], dtype=torch.double)
    out, (h_n, c_n), gates = m(x, lengths=lengths, return_gates=True)
    packed_out, (h_p, c_p) = m(pack_padded_sequence(x, lengths, enforce_sorted=False))
    padded = pad_packed_sequence(packed_out, total_length=steps)[0]
    torch.testing.assert_close(padded, out, rtol=0, atol=1e-12)
    torch.testing.assert_close((h_p, c_p), (h_n, c_n), rtol=0, atol=1e-12)
    m.batch_first = True
    out_bf, states_bf, gates_bf = m(x.transpose(0, 1), lengths=lengths, return_gates=True)
    torch.testing.assert_close(out_bf.transpose(0, 1), out, rtol=0, atol=1e-12)
    torch.testing.assert_close(states_bf, (h_n, c_n), rtol=0, atol=1e-12)
    for a, b in zip(gates_bf, gates):
        torch.testing.assert_close(a.transpose(1, 2), b, rtol=0, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(configs())
def test_layer_equals_a_loop_of_cells(cfg):
    kw, steps, lengths, seed = cfg
    kw = kw | dict(num_layers=1, bidirectional=False, proj_size=0)
    m = _build(kw, seed)
    cell_kw = {k: kw[k] for k in ("bias", "layer_norm", "peephole", "coupled")}
    cell = LSTMCell(kw["input_size"], kw["hidden_size"], **cell_kw).double().eval()
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in m.state_dict().items()})
    x = torch.randn(steps, len(lengths), kw["input_size"], dtype=torch.double)
    out = m(x)[0]
    hx = None
    for t in range(steps):
        hx = cell(x[t], hx)
        torch.testing.assert_close(out[t], hx[0], rtol=0, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(configs(), st.sampled_from([GRU, RNN]))
def test_gru_rnn_padding_independence(cfg, cls):
    kw, steps, lengths, seed = cfg
    torch.manual_seed(seed)
    m = cls(
        kw["input_size"],
        kw["hidden_size"],
        kw["num_layers"],
        bias=kw["bias"],
        bidirectional=kw["bidirectional"],
    ).double()
    x = torch.randn(steps, len(lengths), kw["input_size"], dtype=torch.double)
    out, h_n = m(x, lengths=lengths)
    for n, length in enumerate(lengths):
        out_n, h_nn = m(x[:length, n])
        torch.testing.assert_close(out[:length, n], out_n, rtol=0, atol=1e-12)
        torch.testing.assert_close(h_n[:, n], h_nn, rtol=0, atol=1e-12)
