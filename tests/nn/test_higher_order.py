"""Higher-order gradients and torch.func on every implementation: never a wrong derivative.

The fused kernel's backward is C++; where a gradient must itself be differentiable
(``create_graph=True``) or is batched (``is_grads_batched=True``) it differentiates the reference
recurrence on the saved inputs and masks instead. These tests check that, and that
``torch.func`` transforms either work or raise an error naming the implementation that can.
"""

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.func import functional_call, grad, jacrev, vmap
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from lstmkit.kernels.fused_lstm import extension_available
from lstmkit.nn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

T, N, H_IN, H = 3, 2, 2, 2
LENGTHS = [3, 2]
IMPLEMENTATIONS = ["auto", "torch", "fused", "reference"]

# (constructor keywords, input form); "torch" runs only those without a variant
VARIANTS = {
    "standard": (dict(), "padded"),
    "bidirectional_2_layers": (dict(num_layers=2, bidirectional=True), "padded"),
    "proj_size": (dict(hidden_size=3, proj_size=2), "padded"),
    "no_bias": (dict(bias=False), "padded"),
    "lengths": (dict(bidirectional=True), "lengths"),
    "packed": (dict(bidirectional=True), "packed"),
    "peephole": (dict(peephole=True), "padded"),
    "layer_norm": (dict(layer_norm=True), "padded"),
    "coupled": (dict(coupled=True), "padded"),
    "zoneout": (dict(zoneout=(0.3, 0.4)), "padded"),
    "recurrent_dropout": (dict(recurrent_dropout=0.4), "padded"),
    "weight_drop": (dict(weight_drop=0.4), "padded"),
    "all_packed": (
        dict(
            peephole=True,
            layer_norm=True,
            coupled=True,
            zoneout=0.3,
            recurrent_dropout=0.3,
            weight_drop=0.3,
            hidden_size=3,
            proj_size=2,
            bidirectional=True,
        ),
        "packed",
    ),
}
TORCH_KERNEL_VARIANTS = {"standard", "bidirectional_2_layers", "proj_size", "no_bias"}
TORCH_KERNEL_VARIANTS |= {"lengths", "packed", "weight_drop"}


@pytest.fixture
def fused_calls(monkeypatch):
    """How many directions ran lstmkit's fused kernel."""
    import lstmkit.nn.lstm as lstm_module

    calls = []
    real = lstm_module.lstm_direction

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(lstm_module, "lstm_direction", spy)
    return calls


def make_lstm(name, implementation):
    kwargs, form = VARIANTS[name]
    kwargs = {"hidden_size": H, **kwargs}
    torch.manual_seed(1)
    m = LSTM(H_IN, implementation=implementation, **kwargs).double().train()
    return m, form


def as_function(m, form):
    """``f(x, h0, c0, *params)``: the module's outputs as a tuple of tensors, with the same
    random masks on every call."""
    names = [name for name, _ in m.named_parameters()]

    def f(x, h0, c0, *params):
        torch.manual_seed(0)
        args = {"padded": (x, (h0, c0)), "lengths": (x, (h0, c0), LENGTHS)}.get(form)
        if form == "packed":
            args = (pack_padded_sequence(x, LENGTHS), (h0, c0))
        out, (h_n, c_n) = functional_call(m, dict(zip(names, params)), args)
        return (out.data if isinstance(out, PackedSequence) else out), h_n, c_n

    return f


def leaves(m):
    rows = m.num_layers * m.num_directions
    x = torch.randn(T, N, H_IN, dtype=torch.double)
    h0 = torch.randn(rows, N, m.output_size, dtype=torch.double)
    c0 = torch.randn(rows, N, m.hidden_size, dtype=torch.double)
    params = [p.detach().clone() for p in m.parameters()]
    return [t.requires_grad_(True) for t in (x, h0, c0, *params)]


def expected_fused_directions(name, implementation, m):
    """Directions that must run lstmkit's fused kernel in one forward (None: not checked)."""
    if implementation in ("torch", "reference") or not extension_available():
        return 0
    directions = m.num_layers * m.num_directions
    if implementation == "fused":
        return directions
    standard = name in TORCH_KERNEL_VARIANTS
    if not standard:
        return directions
    # auto: torch's kernel, except variable-length batches with gradients (lstmkit's kernel)
    return directions if VARIANTS[name][1] in ("lengths", "packed") else 0


def cases():
    for name in VARIANTS:
        for implementation in IMPLEMENTATIONS:
            if implementation == "torch" and name not in TORCH_KERNEL_VARIANTS:
                continue
            yield pytest.param(name, implementation, id=f"{name}-{implementation}")


@pytest.mark.parametrize("name,implementation", cases())
def test_lstm_gradgradcheck(fused_calls, name, implementation):
    """Second derivatives w.r.t. the input, both states and every parameter, in float64."""
    m, form = make_lstm(name, implementation)
    f = as_function(m, form)
    inputs = leaves(m)
    f(*inputs)
    assert len(fused_calls) == expected_fused_directions(name, implementation, m)
    assert gradcheck(f, inputs, eps=1e-6, atol=1e-6, fast_mode=True)
    assert gradgradcheck(f, inputs, eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("name", ["packed", "all_packed", "zoneout", "layer_norm"])
def test_create_graph_gives_the_kernels_first_order_gradient(name):
    """The differentiable backward (create_graph=True) recomputes with the forward's own
    masks: its gradient equals the C++ backward's, and the reference path's."""
    if not extension_available():
        pytest.skip("the fused LSTM extension is not built here")
    results = {}
    for implementation, create_graph in (("fused", False), ("fused", True), ("reference", False)):
        m, form = make_lstm(name, implementation)
        f = as_function(m, form)
        inputs = leaves(m)
        torch.manual_seed(5)
        outputs = f(*inputs)
        weights = [torch.randn_like(y) for y in outputs]
        loss = sum((y * w).sum() for y, w in zip(outputs, weights))
        results[implementation, create_graph] = torch.autograd.grad(
            loss, inputs, create_graph=create_graph
        )
    for a, b, c in zip(*results.values()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-12)
        torch.testing.assert_close(c, a, rtol=0, atol=1e-12)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_issue_example_packed_double_backward(implementation):
    """The issue's example: a gradient penalty through a PackedSequence. Every implementation
    gives the reference path's second derivative and reaches ``weight_hh_l0``."""
    results = []
    for impl in (implementation, "reference"):
        torch.manual_seed(0)
        m = LSTM(3, 4, implementation=impl).double()
        x = torch.randn(5, 2, 3, dtype=torch.double, requires_grad=True)
        out, _ = m(pack_padded_sequence(x, [5, 3]))
        (g,) = torch.autograd.grad(out.data.pow(2).sum(), x, create_graph=True)
        g.pow(2).sum().backward()
        assert m.weight_hh_l0.grad is not None
        results.append((x.grad, m.weight_hh_l0.grad, m.weight_ih_l0.grad))
    assert results[1][0].abs().sum() > 0
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("name", ["standard", "lengths", "packed", "peephole"])
def test_is_grads_batched(implementation, name):
    """vmap over the backward: each row equals its own unbatched backward."""
    if implementation == "torch" and name not in TORCH_KERNEL_VARIANTS:
        pytest.skip("a variant does not run on torch's kernel")
    m, form = make_lstm(name, implementation)
    f = as_function(m, form)
    inputs = leaves(m)
    outputs = f(*inputs)
    torch.manual_seed(3)
    batched = [torch.randn(4, *y.shape, dtype=torch.double) for y in outputs]
    got = torch.autograd.grad(outputs, inputs, batched, is_grads_batched=True, retain_graph=True)
    for k in range(4):
        want = torch.autograd.grad(outputs, inputs, [b[k] for b in batched], retain_graph=True)
        for a, b in zip(got, want):
            torch.testing.assert_close(a[k], b, rtol=0, atol=1e-12)


def _func_case(implementation, variant):
    torch.manual_seed(0)
    m = LSTM(3, 4, implementation=implementation, **variant).double().eval()
    params = {k: v.detach() for k, v in m.named_parameters()}
    x = torch.randn(5, 2, 3, dtype=torch.double)
    return m, params, x


def _reference_jacobian(m, x):
    ref = LSTM(3, 4, implementation="reference", peephole=m.peephole).double().eval()
    ref.load_state_dict(m.state_dict())
    return torch.autograd.functional.jacobian(lambda xx: ref(xx)[0], x)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("variant", [dict(), dict(peephole=True)], ids=["standard", "peephole"])
def test_torch_func_grad_and_jacrev(implementation, variant):
    if implementation == "torch" and variant:
        pytest.skip("a variant does not run on torch's kernel")
    m, params, x = _func_case(implementation, variant)

    def loss(p, x):
        return functional_call(m, p, (x,))[0].pow(2).sum()

    g = grad(loss, argnums=(0, 1))(params, x)
    ref_params = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    xx = x.clone().requires_grad_(True)
    want = torch.autograd.grad(loss(ref_params, xx), [*ref_params.values(), xx])
    for a, b in zip([*g[0].values(), g[1]], want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    jac = jacrev(lambda xx: functional_call(m, params, (xx,))[0])(x)
    torch.testing.assert_close(jac, _reference_jacobian(m, x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("implementation", ["auto", "fused", "reference"])
@pytest.mark.parametrize("variant", [dict(), dict(peephole=True)], ids=["standard", "peephole"])
def test_torch_func_vmap(implementation, variant):
    m, params, x = _func_case(implementation, variant)
    xs = torch.randn(4, 5, 2, 3, dtype=torch.double)
    got = vmap(lambda xi: functional_call(m, params, (xi,))[0])(xs)
    for k in range(4):
        torch.testing.assert_close(got[k], m(xs[k])[0], rtol=0, atol=1e-12)


def test_torch_func_vmap_on_torchs_kernel_names_the_implementations_that_can():
    """torch.lstm has no vmap batching rule (torch.nn.LSTM fails the same way); the error
    says which implementations support vmap."""
    m, params, x = _func_case("torch", dict())
    with pytest.raises(RuntimeError, match="implementation='auto' or 'reference'"):
        vmap(lambda xi: functional_call(m, params, (xi,))[0])(x.unsqueeze(0))
    control = torch.nn.LSTM(3, 4).double()
    with pytest.raises(RuntimeError, match="Batching rule not implemented for aten::lstm"):
        vmap(lambda xi: control(xi)[0])(x.unsqueeze(0))


def test_forward_mode_ad_takes_the_reference_path():
    import torch.autograd.forward_ad as fwAD

    for implementation in ("auto", "fused"):
        m, params, x = _func_case(implementation, dict(peephole=True))
        tangent = torch.randn_like(x)
        with fwAD.dual_level():
            out = m(fwAD.make_dual(x, tangent))[0]
            jvp = fwAD.unpack_dual(out).tangent
        want = torch.einsum("abcijk,ijk->abc", _reference_jacobian(m, x), tangent)
        torch.testing.assert_close(jvp, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cls", [GRU, RNN])
@pytest.mark.parametrize("implementation", ["auto", "torch", "reference"])
@pytest.mark.parametrize("form", ["padded", "lengths", "packed"])
def test_gru_rnn_gradgradcheck(cls, implementation, form):
    torch.manual_seed(1)
    m = cls(H_IN, H, bidirectional=True, implementation=implementation).double()
    names = [name for name, _ in m.named_parameters()]

    def f(x, h0, *params):
        args = {"padded": (x, h0), "lengths": (x, h0, LENGTHS)}.get(form)
        if form == "packed":
            args = (pack_padded_sequence(x, LENGTHS), h0)
        out, h_n = functional_call(m, dict(zip(names, params)), args)
        return (out.data if isinstance(out, PackedSequence) else out), h_n

    x = torch.randn(T, N, H_IN, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(2, N, H, dtype=torch.double, requires_grad=True)
    inputs = [x, h0, *(p.detach().clone().requires_grad_(True) for p in m.parameters())]
    assert gradgradcheck(f, inputs, eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize(
    "cell",
    [
        LSTMCell(H_IN, H, layer_norm=True, peephole=True),
        LSTMCell(H_IN, H, coupled=True),
        GRUCell(H_IN, H),
        RNNCell(H_IN, H, nonlinearity="tanh"),
    ],
    ids=["lstm-ln-peephole", "lstm-cifg", "gru", "rnn"],
)
def test_cells_gradgradcheck(cell):
    cell = cell.double()
    names = [name for name, _ in cell.named_parameters()]
    n_states = 2 if isinstance(cell, LSTMCell) else 1

    def f(x, *rest):
        hx = tuple(rest[:n_states]) if n_states == 2 else rest[0]
        return functional_call(cell, dict(zip(names, rest[n_states:])), (x, hx))

    x = torch.randn(N, H_IN, dtype=torch.double, requires_grad=True)
    states = [torch.randn(N, H, dtype=torch.double, requires_grad=True) for _ in range(n_states)]
    params = [p.detach().clone().requires_grad_(True) for p in cell.parameters()]
    assert gradgradcheck(f, [x, *states, *params], eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("cls", [GRU, RNN])
def test_gru_rnn_under_vmap(cls):
    """auto and reference run the reference path under vmap (torch.gru and torch.rnn_tanh
    have no batching rule); implementation='torch' says which implementations can."""
    torch.manual_seed(0)
    xs = torch.randn(4, 5, 2, 3, dtype=torch.double)
    for implementation in ("auto", "reference"):
        m = cls(3, 4, implementation=implementation).double()
        got = vmap(lambda xi, m=m: m(xi)[0])(xs)
        for k in range(4):
            torch.testing.assert_close(got[k], m(xs[k])[0], rtol=0, atol=1e-12)
    m = cls(3, 4, implementation="torch").double()
    with pytest.raises(RuntimeError, match="implementation='auto' or 'reference'"):
        vmap(lambda xi: m(xi)[0])(xs)
