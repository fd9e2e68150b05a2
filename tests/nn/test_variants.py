"""Every LSTM variant against a plain step-by-step transcription of its paper's equations.

The reference below does not use lstmkit: per-gate matrices are sliced from the module's
parameters by hand and every equation is written out with exp and explicit normalisation.
"""

import math

import pytest
import torch

from lstmkit.nn import LSTM, DropMasks, GateActivations, GateWeights, LSTMCell

T, N, H_IN, H = 6, 3, 4, 5
EPS = 1e-5


def sig(z):
    return 1.0 / (1.0 + torch.exp(-z))


def ln(z, gain, shift=None):
    mu = z.mean(-1, keepdim=True)
    var = ((z - mu) ** 2).mean(-1, keepdim=True)
    out = (z - mu) / torch.sqrt(var + EPS) * gain
    return out if shift is None else out + shift


def paper_lstm(m, x, h, c, masks=None, layer=0):
    """One layer, forward direction, written from the papers. Returns outputs and gates."""

    def p(name):
        return getattr(m, f"{name}_l{layer}", None)

    masks = masks or DropMasks()
    names = ["f", "g", "o"] if m.coupled else ["i", "f", "g", "o"]
    w_hh = p("weight_hh") if masks.weight_hh is None else p("weight_hh") * masks.weight_hh
    W_x = dict(zip(names, p("weight_ih").split(H)))
    W_h = dict(zip(names, w_hh.split(H)))
    zero = torch.zeros(len(names) * H, dtype=x.dtype)
    b_x = dict(zip(names, (p("bias_ih") if m.bias else zero).split(H)))
    b_h = dict(zip(names, (p("bias_hh") if m.bias else zero).split(H)))
    outs, gates = [], []
    for t in range(x.size(0)):
        h_prev = h if masks.recurrent is None else h * masks.recurrent
        if m.layer_norm:  # Ba et al. 2016: LN over all gates of each product, then the biases
            zx = dict(zip(names, ln(x[t] @ p("weight_ih").T, p("ln_ih_weight")).split(H, -1)))
            zh = dict(zip(names, ln(h_prev @ w_hh.T, p("ln_hh_weight")).split(H, -1)))
            pre = {k: zx[k] + b_x[k] + zh[k] + b_h[k] for k in names}
        else:
            pre = {k: x[t] @ W_x[k].T + b_x[k] + h_prev @ W_h[k].T + b_h[k] for k in names}
        if m.peephole:  # Gers & Schmidhuber 2000: c_{t-1} into i and f
            pre["f"] = pre["f"] + p("weight_cf") * c
            if not m.coupled:
                pre["i"] = pre["i"] + p("weight_ci") * c
        f = sig(pre["f"])
        i = 1 - f if m.coupled else sig(pre["i"])  # Greff et al. 2017: CIFG
        g = torch.tanh(pre["g"])
        c_new = f * c + i * g
        o = sig(pre["o"] + (p("weight_co") * c_new if m.peephole else 0))  # c_t into o
        c_out = ln(c_new, p("ln_c_weight"), p("ln_c_bias")) if m.layer_norm else c_new
        h_new = o * torch.tanh(c_out)
        if m.proj_size:
            h_new = h_new @ p("weight_hr").T
        if masks.zoneout_h is not None:  # Krueger et al. 2016
            d = masks.zoneout_h[t].double()
            h_new = d * h + (1 - d) * h_new
        if masks.zoneout_c is not None:
            d = masks.zoneout_c[t].double()
            c_new = d * c + (1 - d) * c_new
        h, c = h_new, c_new
        outs.append(h)
        gates.append((i, f, g, o, c))
    return torch.stack(outs), h, c, [torch.stack(z) for z in zip(*gates)]


VARIANTS = [
    dict(),
    dict(peephole=True),
    dict(layer_norm=True),
    dict(coupled=True),
    dict(peephole=True, coupled=True),
    dict(layer_norm=True, peephole=True, coupled=True),
    dict(layer_norm=True, bias=False),
    dict(peephole=True, proj_size=2),
]


def _inputs(m, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, N, H_IN, dtype=torch.double, generator=g)
    h0 = torch.randn(1, N, m.output_size, dtype=torch.double, generator=g)
    c0 = torch.randn(1, N, H, dtype=torch.double, generator=g)
    return x, h0, c0


def _perturb(m):
    """Move LN gains, shifts and peepholes off their init so that they matter."""
    with torch.no_grad():
        for name, param in m.named_parameters():
            if name.startswith("ln_") or name.startswith("weight_c"):
                param.add_(torch.randn_like(param) * 0.3)
    return m


PATHS = ["reference", "fused", "auto"]  # auto: torch's kernel for weight_drop alone


@pytest.mark.parametrize("implementation", PATHS)
@pytest.mark.parametrize("kw", VARIANTS, ids=lambda kw: "-".join(kw) or "standard")
def test_deterministic_variants_follow_the_papers(kw, implementation):
    torch.manual_seed(0)
    m = _perturb(LSTM(H_IN, H, implementation=implementation, **kw).double())
    x, h0, c0 = _inputs(m)
    out, (h_n, c_n), gates = m(x, (h0, c0), return_gates=True)
    ref_out, ref_h, ref_c, ref_gates = paper_lstm(m, x, h0[0], c0[0])
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-12)
    torch.testing.assert_close(h_n[0], ref_h, rtol=0, atol=1e-12)
    torch.testing.assert_close(c_n[0], ref_c, rtol=0, atol=1e-12)
    assert gates._fields == ("i", "f", "g", "o", "c")
    for name, got, want in zip("ifgoc", gates, ref_gates):
        torch.testing.assert_close(got[0], want, rtol=0, atol=1e-12, msg=name)


def _fixed_masks(m, seed=1):
    g = torch.Generator().manual_seed(seed)

    def bern(shape, p):
        return torch.bernoulli(torch.full(shape, p, dtype=torch.double), generator=g)

    p_h, p_c = m.zoneout
    return DropMasks(
        recurrent=bern((N, m.output_size), 0.7) / 0.7 if m.recurrent_dropout else None,
        zoneout_h=bern((T, N, m.output_size), p_h).bool() if p_h else None,
        zoneout_c=bern((T, N, H), p_c).bool() if p_c else None,
        weight_hh=bern(tuple(m.weight_hh_l0.shape), 0.6) / 0.6 if m.weight_drop else None,
    )


STOCHASTIC = [
    dict(zoneout=0.3),
    dict(zoneout=(0.2, 0.5)),
    dict(recurrent_dropout=0.3),
    dict(weight_drop=0.4),
    dict(zoneout=0.2, recurrent_dropout=0.3, weight_drop=0.4, layer_norm=True, peephole=True),
]


@pytest.mark.parametrize("implementation", PATHS)
@pytest.mark.parametrize("kw", STOCHASTIC, ids=str)
def test_stochastic_variants_follow_the_papers(kw, implementation, monkeypatch):
    torch.manual_seed(0)
    m = _perturb(LSTM(H_IN, H, implementation=implementation, **kw).double()).train()
    masks = _fixed_masks(m)
    monkeypatch.setattr(m, "draw_masks", lambda *a, **k: masks)
    x, h0, c0 = _inputs(m)
    out, (h_n, c_n) = m(x, (h0, c0))
    ref_out, ref_h, ref_c, _ = paper_lstm(m, x, h0[0], c0[0], masks)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-12)
    torch.testing.assert_close(c_n[0], ref_c, rtol=0, atol=1e-12)
    # the masks matter: without them the result differs
    assert not torch.allclose(out, paper_lstm(m, x, h0[0], c0[0])[0])


@pytest.mark.parametrize("kw", STOCHASTIC, ids=str)
def test_stochastic_variants_are_identity_in_eval(kw):
    torch.manual_seed(0)
    m = LSTM(H_IN, H, num_layers=2, bidirectional=True, **kw).double().eval()
    plain = LSTM(
        H_IN, H, num_layers=2, bidirectional=True, layer_norm=m.layer_norm, peephole=m.peephole
    ).double()
    plain.load_state_dict(m.state_dict())
    x = torch.randn(T, N, H_IN, dtype=torch.double)
    torch.testing.assert_close(m(x)[0], plain(x)[0], rtol=0, atol=0)
    m.train()
    assert not torch.allclose(m(x)[0], plain(x)[0])


def test_drawn_masks_have_the_documented_shape_and_rate():
    m = LSTM(H_IN, 50, zoneout=(0.2, 0.5), recurrent_dropout=0.3, weight_drop=0.4, proj_size=40)
    torch.manual_seed(0)
    like = torch.empty(0, dtype=torch.double)
    masks = m.draw_masks(0, 0, steps=400, batch=8, like=like)
    assert masks.recurrent.shape == (8, 40)  # one mask per sequence, shared by all steps
    assert masks.zoneout_h.shape == (400, 8, 40) and masks.zoneout_c.shape == (400, 8, 50)
    assert masks.weight_hh.shape == m.weight_hh_l0.shape
    assert set(masks.recurrent.unique().tolist()) == {0.0, 1 / 0.7}
    assert masks.zoneout_h.double().mean().item() == pytest.approx(0.2, abs=0.01)
    assert masks.zoneout_c.double().mean().item() == pytest.approx(0.5, abs=0.01)
    assert (masks.weight_hh == 0).double().mean().item() == pytest.approx(0.4, abs=0.02)
    assert m.eval().draw_masks(0, 0, 400, 8, like) == DropMasks()


def test_recurrent_dropout_one_cuts_the_recurrent_product():
    """With p = 1, h_{t-1} never reaches the gates: as if W_hh were zero (c still flows)."""
    torch.manual_seed(0)
    m = LSTM(H_IN, H, recurrent_dropout=1.0).double().train()
    cut = LSTM(H_IN, H).double()
    cut.load_state_dict(m.state_dict())
    with torch.no_grad():
        cut.weight_hh_l0.zero_()
    x = torch.randn(T, N, H_IN, dtype=torch.double)
    h0 = torch.randn(1, N, H, dtype=torch.double)
    c0 = torch.randn(1, N, H, dtype=torch.double)
    torch.testing.assert_close(m(x, (h0, c0))[0], cut(x, (h0, c0))[0], rtol=0, atol=1e-14)


def test_zoneout_one_freezes_the_state():
    m = LSTM(H_IN, H, zoneout=1.0).double().train()
    x = torch.randn(T, N, H_IN, dtype=torch.double)
    h0, c0 = torch.randn(1, N, H).double(), torch.randn(1, N, H).double()
    out, (h_n, c_n) = m(x, (h0, c0))
    assert torch.equal(h_n, h0) and torch.equal(c_n, c0) and torch.equal(out, h0.expand(T, N, H))


@pytest.mark.parametrize("coupled", [False, True])
def test_forget_bias_init(coupled):
    m = LSTM(H_IN, H, num_layers=2, bidirectional=True, coupled=coupled, forget_bias=2.5)
    k = 0 if coupled else 1
    for name, b in m.named_parameters():
        if name.startswith("bias_ih"):
            assert torch.all(b[k * H : (k + 1) * H] == 2.5)
        if name.startswith("bias_hh"):
            assert torch.all(b[k * H : (k + 1) * H] == 0.0)
    torch_init = LSTM(H_IN, H, forget_bias=None)
    bound = 1 / math.sqrt(H)
    assert torch_init.bias_ih_l0.abs().max() <= bound and torch_init.bias_ih_l0[H : 2 * H].std() > 0


def test_layer_norm_init_and_parameter_names():
    m = LSTM(H_IN, H, layer_norm=True, peephole=True, coupled=True)
    names = {n for n, _ in m.named_parameters()}
    assert names == {
        "weight_ih_l0",
        "weight_hh_l0",
        "bias_ih_l0",
        "bias_hh_l0",
        "weight_cf_l0",
        "weight_co_l0",
        "ln_ih_weight_l0",
        "ln_hh_weight_l0",
        "ln_c_weight_l0",
        "ln_c_bias_l0",
    }
    assert m.weight_ih_l0.shape == (3 * H, H_IN)  # CIFG: f | g | o
    assert torch.all(m.ln_ih_weight_l0 == 1) and torch.all(m.ln_c_bias_l0 == 0)


@pytest.mark.parametrize("kw", VARIANTS[:7] + [dict(zoneout=0.4)], ids=str)
def test_cell_equals_one_layer_step(kw):
    kw = {k: v for k, v in kw.items() if k != "proj_size"}
    torch.manual_seed(0)
    layer = _perturb(LSTM(H_IN, H, **kw).double())
    cell = LSTMCell(H_IN, H, **kw).double()
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in layer.state_dict().items()})
    x, h0, c0 = _inputs(layer)
    torch.manual_seed(5)
    hc = cell(x[0], (h0[0], c0[0]))
    torch.manual_seed(5)
    _, (h_n, c_n) = layer(x[:1], (h0, c0))
    torch.testing.assert_close(hc[0], h_n[0], rtol=0, atol=1e-14)
    torch.testing.assert_close(hc[1], c_n[0], rtol=0, atol=1e-14)


def test_the_cell_reads_training_only_with_zoneout():
    kw = dict(layer_norm=True, peephole=True, coupled=True)
    torch.manual_seed(0)
    plain = LSTMCell(H_IN, H, **kw).double()
    zoned = LSTMCell(H_IN, H, zoneout=(0.3, 0.6), **kw).double()
    zoned.load_state_dict(plain.state_dict())
    x, h, c = (torch.randn(N, size, dtype=torch.double) for size in (H_IN, H, H))
    want = plain.eval()(x, (h, c))
    for a, b in zip(zoned.eval()(x, (h, c)), want):  # eval: zoneout is off
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.manual_seed(1)
    h1, c1 = zoned.train()(x, (h, c))  # training: some units keep their previous values
    assert 0 < (h1 == h).sum() < h.numel() and 0 < (c1 == c).sum() < c.numel()
    # forward asks for `training` only when it matters (torch's module tests check this)
    del plain.training
    for a, b in zip(plain(x, (h, c)), want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    del zoned.training
    with pytest.raises(AttributeError, match="'training'"):
        zoned(x, (h, c))


@pytest.mark.parametrize("coupled", [False, True])
def test_gate_weights_reproduce_the_classic_equations(coupled):
    torch.manual_seed(0)
    m = LSTM(H_IN, H, num_layers=2, bidirectional=True, coupled=coupled).double()
    x, h0, c0 = _inputs(m)
    h0, c0 = h0.repeat(4, 1, 1), c0.repeat(4, 1, 1)
    _, _, gates = m(x, (h0, c0), return_gates=True)
    row = 3  # layer 1, reverse direction: its first step is t = T - 1
    layer0 = LSTM(H_IN, H, bidirectional=True, coupled=coupled).double()
    layer0.load_state_dict({k: v for k, v in m.state_dict().items() if "_l0" in k})
    x1 = layer0(x, (h0[:2], c0[:2]))[0]  # layer 1's input
    gw = m.gate_weights(layer=1, direction=1)
    hx = torch.cat([h0[row], x1[T - 1]], dim=-1)  # [h_{t-1}, x_t]
    f = sig(hx @ gw.W_f.T + gw.b_f)
    o = sig(hx @ gw.W_o.T + gw.b_o)
    g = torch.tanh(hx @ gw.W_g.T + gw.b_g)
    i = 1 - f if coupled else sig(hx @ gw.W_i.T + gw.b_i)
    assert (gw.W_i is None) == coupled
    assert gw.W_f.shape == (H, H + 2 * H)
    for name, want in zip("fiog", (f, i, o, g)):
        torch.testing.assert_close(getattr(gates, name)[row, T - 1], want, rtol=0, atol=1e-12)
    torch.testing.assert_close(gates.c[row, T - 1], f * c0[row] + i * g, rtol=0, atol=1e-12)


def test_return_gates_layout_and_padding():
    torch.manual_seed(0)
    m = LSTM(H_IN, H, num_layers=2, bidirectional=True, batch_first=True).double()
    x = torch.randn(N, T, H_IN, dtype=torch.double)
    lengths = torch.tensor([T, 2, 4])
    out, (h_n, c_n), gates = m(x, lengths=lengths, return_gates=True)
    assert all(g.shape == (4, N, T, H) for g in gates)
    for n, length in enumerate(lengths.tolist()):
        assert torch.all(gates.f[:, n, length:] == 0)
        # the forward direction's last c and the reverse direction's first c are c_n
        torch.testing.assert_close(gates.c[0::2, n, length - 1], c_n[0::2, n], rtol=0, atol=0)
        torch.testing.assert_close(gates.c[1::2, n, 0], c_n[1::2, n], rtol=0, atol=0)
    unbatched = m(x[0], return_gates=True)[2]
    assert unbatched.o.shape == (4, T, H)
    torch.testing.assert_close(unbatched.o, gates.o[:, 0], rtol=0, atol=1e-14)
    assert len(m(x)) == 2  # off by default


def test_one_gate_order_everywhere():
    """Torch's block order i | f | g | o is the field order of every tuple of gates."""
    from lstmkit.nn.functional import LSTM_GATES, LSTMGates

    assert LSTM_GATES == ("i", "f", "g", "o")
    assert LSTMGates._fields == LSTM_GATES
    assert GateActivations._fields == (*LSTM_GATES, "c")
    assert GateWeights._fields == tuple(f"{k}_{g}" for k in "Wb" for g in LSTM_GATES)


@pytest.mark.parametrize("implementation", ["reference", "fused"])
@pytest.mark.parametrize("coupled", [False, True], ids=["lstm", "cifg"])
def test_each_gate_reads_its_own_weight_block(implementation, coupled):
    """Every gate given its own bias (zero weights, input and state): each name returns its
    block's activation, on every path and in gate_weights, so no two gates can swap."""
    m = LSTM(2, 3, coupled=coupled, implementation=implementation).double().eval()
    names = ("f", "g", "o") if coupled else ("i", "f", "g", "o")
    bias = {"i": 0.5, "f": 1.0, "g": 1.5, "o": 2.0}
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        m.bias_ih_l0.copy_(torch.tensor([bias[n] for n in names]).repeat_interleave(3))
    _, (_, c_n), gates = m(torch.zeros(1, 1, 2, dtype=torch.double), return_gates=True)
    s = torch.sigmoid(torch.tensor(bias["f"], dtype=torch.double))
    want = {
        "i": 1 - s if coupled else torch.sigmoid(torch.tensor(bias["i"], dtype=torch.double)),
        "f": s,
        "g": torch.tanh(torch.tensor(bias["g"], dtype=torch.double)),
        "o": torch.sigmoid(torch.tensor(bias["o"], dtype=torch.double)),
    }
    for name, value in want.items():
        got = getattr(gates, name)
        torch.testing.assert_close(got, value.expand(1, 1, 1, 3), rtol=0, atol=1e-15)
    c = want["i"] * want["g"] * torch.ones(1, 3, dtype=torch.double)
    torch.testing.assert_close(gates.c[0, 0], c, rtol=0, atol=1e-15)
    gw = m.gate_weights()
    for name in names:
        assert torch.all(getattr(gw, f"b_{name}") == bias[name])
