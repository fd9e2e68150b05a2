# ruff: noqa: N802  (test names keep PyTorch's, so each leads back to its original)
"""PyTorch's own RNN tests, ported to run on lstmkit's classes (CPU-applicable ones).

Sources (PyTorch 2.x): ``test/test_nn.py`` (``TestNN``/``TestNNDeviceType``: the RNN, LSTM,
GRU and cell tests), ``test/test_autograd.py``'s ``test_LSTM_grad_and_gradgrad`` /
``test_GRU_grad_and_gradgrad``, and ``torch/testing/_internal/common_modules.py``
(``module_inputs_torch_nn_{RNN_GRU,LSTM,RNN_GRU_Cell,LSTMCell}`` and their
``module_error_inputs_*``, which ``test/test_modules.py`` runs). Their assertions are kept; the
classes are replaced. Tests on CUDA, cuDNN or several devices are left out or, where the
property they check exists on the CPU, run there ("meta" stands in for the other device).

Every test runs on each of lstmkit's implementations (``auto``, ``torch``, ``fused``,
``reference``; GRU and RNN have no ``fused``) and on ``torch.nn`` itself as the control, so a
failure that the control shares is a test bug, not a difference. Where lstmkit deliberately
differs, the test says so (``DIFFERENCE``).
"""

import copy
import io
import itertools
import re
import warnings
from functools import partial

import pytest
import torch
import torch.nn.utils.rnn as rnn_utils
from torch import nn
from torch.autograd import gradcheck, gradgradcheck

import lstmkit.nn as L

LSTM_IMPLEMENTATIONS = ["auto", "torch", "fused", "reference", "torch.nn"]
RNN_IMPLEMENTATIONS = ["auto", "torch", "reference", "torch.nn"]
CLASSES = {"LSTM": (L.LSTM, nn.LSTM), "GRU": (L.GRU, nn.GRU), "RNN": (L.RNN, nn.RNN)}
CELLS = {
    "LSTMCell": (L.LSTMCell, nn.LSTMCell),
    "GRUCell": (L.GRUCell, nn.GRUCell),
    "RNNCell": (L.RNNCell, nn.RNNCell),
}


def layer(mode, implementation):
    """The class ``mode`` ("LSTM", "GRU", "RNN") under test, as a constructor."""
    ours, theirs = CLASSES[mode]
    if implementation == "torch.nn":
        return theirs
    return partial(ours, implementation=implementation)


def cell(mode, source):
    ours, theirs = CELLS[mode]
    return theirs if source == "torch.nn" else ours


def layer_cases(modes=("RNN", "GRU", "LSTM")):
    for mode in modes:
        for impl in LSTM_IMPLEMENTATIONS if mode == "LSTM" else RNN_IMPLEMENTATIONS:
            yield pytest.param(mode, impl, id=f"{mode}-{impl}")


def all_layers(implementation):
    """RNN, GRU and LSTM under ``implementation`` (GRU and RNN: ``auto`` for ``fused``)."""
    other = "auto" if implementation == "fused" else implementation
    return {"RNN": layer("RNN", other), "GRU": layer("GRU", other)} | {
        "LSTM": layer("LSTM", implementation)
    }


@pytest.fixture(autouse=True)
def _float64():
    """test_nn.py runs with float64 as the default dtype."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.double)
    yield
    torch.set_default_dtype(before)


# --------------------------------------------------------------------------------------
# common_modules.py: module_inputs_* (as test_modules.py runs them)


def make_packed_sequence(inp, batch_sizes):
    required_grad = inp.requires_grad
    inp.requires_grad_(False)  # the user has no access to inp, so not to its grads either
    seq = rnn_utils.pack_padded_sequence(inp, batch_sizes)
    seq.data.requires_grad_(required_grad)
    return seq


def rnn_gru_inputs(is_rnn, with_packed_sequence=True):
    """module_inputs_torch_nn_RNN_GRU: (constructor kwargs, forward args, batch_first)."""
    make = partial(torch.randn, requires_grad=True)
    products = (
        itertools.product(("relu", "tanh"), (False, True), (False, True), (False, True))
        if is_rnn
        else ((None, *p) for p in itertools.product((False, True), repeat=3))
    )
    for nl, b, b_f, bidir in products:
        cons = dict(
            input_size=2, hidden_size=2, num_layers=2, batch_first=b_f, bias=b, bidirectional=bidir
        )
        cons_hidden = {**cons, "hidden_size": 3}
        if is_rnn:
            cons["nonlinearity"] = cons_hidden["nonlinearity"] = nl
        yield cons, (make(3, 2),), b_f
        yield cons_hidden, (make(3, 2), make(4 if bidir else 2, 3)), b_f
        if with_packed_sequence:
            yield cons, (make_packed_sequence(make(5, 2, 2), torch.tensor([5, 3])),), b_f
            yield cons, (make_packed_sequence(make(5, 5, 2), torch.tensor([5, 3, 3, 2, 2])),), b_f


def lstm_inputs():
    """module_inputs_torch_nn_LSTM."""
    make = partial(torch.randn, requires_grad=True)
    for b, b_f, bidir, proj_size in itertools.product(
        (False, True), (False, True), (False, True), (0, 2)
    ):
        cons = dict(
            input_size=2,
            hidden_size=3,
            num_layers=2,
            proj_size=proj_size,
            batch_first=b_f,
            bias=b,
            bidirectional=bidir,
        )
        yield cons, (make(2, 2),), b_f
        h_out = proj_size if proj_size > 0 else 3
        rows = 4 if bidir else 2
        yield cons, (make(3, 2), (make(rows, h_out), make(rows, 3))), b_f


def module_inputs(mode):
    if mode == "LSTM":
        return list(lstm_inputs())
    return list(rnn_gru_inputs(is_rnn=mode == "RNN"))


def flatten_out(out):
    """The outputs as a flat tuple of tensors (a PackedSequence counts by its data)."""
    flat = []
    for t in out if isinstance(out, tuple) else (out,):
        if isinstance(t, rnn_utils.PackedSequence):
            flat.append(t.data)
        elif isinstance(t, tuple):
            flat.extend(flatten_out(t))
        else:
            flat.append(t)
    return tuple(flat)


def no_batch_dim_reference(m, args, batch_first):
    """no_batch_dim_reference_{rnn_gru,lstm}: the unbatched call equals the batched one with a
    batch of one, squeezed."""
    inp, *rest = args
    batch_dim = 0 if batch_first else 1
    h = None
    if rest:
        h = rest[0]
        h = tuple(s.unsqueeze(1) for s in h) if isinstance(h, tuple) else h.unsqueeze(1)
    out = m(inp.unsqueeze(batch_dim), h)
    hn = out[1]
    hn = tuple(s.squeeze(1) for s in hn) if isinstance(hn, tuple) else hn.squeeze(1)
    return out[0].squeeze(batch_dim), hn


@pytest.mark.parametrize("mode,implementation", layer_cases())
def test_module_forward_no_batch_dim(mode, implementation):
    """test_modules.py::test_forward with the reference_fn of every unbatched sample."""
    for cons, args, batch_first in module_inputs(mode):
        if isinstance(args[0], rnn_utils.PackedSequence):
            continue  # no reference_fn applies to packed input
        torch.manual_seed(0)
        m = layer(mode, implementation)(**cons)
        got = m(*args)
        want = no_batch_dim_reference(m, args, batch_first)
        for a, b in zip(flatten_out(got), flatten_out(want)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode,implementation", layer_cases())
def test_module_grad_and_gradgrad(mode, implementation):
    """test_modules.py::test_grad and ::test_gradgrad: gradcheck and gradgradcheck of the
    outputs w.r.t. the input, hidden state and every parameter, on every sample (packed too)."""
    for cons, args, _ in module_inputs(mode)[::3]:  # a third of the samples: each flag combo
        torch.manual_seed(0)
        m = layer(mode, implementation)(**cons)
        names, params = zip(*m.named_parameters())
        packed = isinstance(args[0], rnn_utils.PackedSequence)
        first = args[0].data if packed else args[0]
        hidden = args[1:]
        flat_hidden = [t for h in hidden for t in (h if isinstance(h, tuple) else (h,))]

        n_hidden = len(flat_hidden)

        def f(
            x, *rest, args=args, hidden=hidden, packed=packed, m=m, names=names, n_hidden=n_hidden
        ):
            hs, ps = rest[:n_hidden], rest[n_hidden:]
            inp = args[0]._replace(data=x) if packed else x
            call = (inp,)
            if hidden:
                call += (tuple(hs) if isinstance(hidden[0], tuple) else hs[0],)
            out = torch.func.functional_call(m, dict(zip(names, ps)), call)
            return flatten_out(out)

        leaves = [t.detach().requires_grad_(True) for t in (first, *flat_hidden, *params)]
        assert gradcheck(f, leaves, check_batched_grad=False, fast_mode=True)
        assert gradgradcheck(f, leaves, check_batched_grad=False, fast_mode=True)


@pytest.mark.parametrize("mode,implementation", layer_cases())
def test_module_non_contiguous_tensors(mode, implementation):
    """test_modules.py::test_non_contiguous_tensors: the same outputs and gradients."""
    for cons, args, _ in module_inputs(mode):
        if isinstance(args[0], rnn_utils.PackedSequence):
            continue
        torch.manual_seed(0)
        m = layer(mode, implementation)(**cons)

        def run(args, m=m):
            args = [
                a.detach().requires_grad_(True)
                if torch.is_tensor(a)
                else tuple(s.detach().requires_grad_(True) for s in a)
                for a in args
            ]
            m.zero_grad()
            out = flatten_out(m(*args))
            sum(o.sum() for o in out).backward()
            leaves = [t for a in args for t in (a if isinstance(a, tuple) else (a,))]
            return [*out, *(t.grad for t in leaves), *(p.grad for p in m.parameters())]

        def noncontig(t):
            return torch.stack([t.detach().clone().zero_(), t.detach()], t.dim()).select(t.dim(), 1)

        strided = [noncontig(a) if torch.is_tensor(a) else tuple(map(noncontig, a)) for a in args]
        assert not strided[0].is_contiguous()
        for a, b in zip(run(args), run(strided)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode,implementation", layer_cases())
def test_module_pickle_repr_and_factory_kwargs(mode, implementation):
    """test_modules.py::test_pickle, ::test_repr, ::test_factory_kwargs."""
    cons, args, _ = module_inputs(mode)[1]
    torch.manual_seed(0)
    m = layer(mode, implementation)(**cons)
    out = flatten_out(m(*args))
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    m2 = torch.load(buf, weights_only=False)
    for a, b in zip(out, flatten_out(m2(*args))):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert repr(m).startswith(mode + "(")
    m3 = layer(mode, implementation)(**cons, device="cpu", dtype=torch.float32)
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in m3.parameters())


@pytest.mark.parametrize("mode", ["RNNCell", "GRUCell", "LSTMCell"])
@pytest.mark.parametrize("source", ["lstmkit", "torch.nn"])
def test_cell_module_inputs_no_batch_dim(mode, source):
    """module_inputs_torch_nn_{RNN_GRU_Cell,LSTMCell} with their reference functions, and
    gradcheck/gradgradcheck as test_modules.py runs them."""
    make = partial(torch.randn, requires_grad=True)
    samples = [((5, 10), {}), ((5, 10), {"bias": True})]
    if mode == "RNNCell":
        samples.append(((5, 10), {"bias": True, "nonlinearity": "relu"}))
    for cons_args, cons_kwargs in samples:
        torch.manual_seed(0)
        m = cell(mode, source)(*cons_args, **cons_kwargs)
        h = (make(10), make(10)) if mode == "LSTMCell" else make(10)
        x = make(5)
        got = m(x, h)
        batched_h = tuple(s.unsqueeze(0) for s in h) if mode == "LSTMCell" else h.unsqueeze(0)
        want = m(x.unsqueeze(0), batched_h)
        got, want = flatten_out(got), flatten_out(want)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b.squeeze(0), rtol=0, atol=1e-12)
        names, params = zip(*m.named_parameters())

        def f(x, *rest, m=m, names=names):
            hs, ps = rest[: 2 if mode == "LSTMCell" else 1], rest[2 if mode == "LSTMCell" else 1 :]
            hx = tuple(hs) if mode == "LSTMCell" else hs[0]
            return flatten_out(torch.func.functional_call(m, dict(zip(names, ps)), (x, hx)))

        flat_h = h if mode == "LSTMCell" else (h,)
        leaves = [t.detach().requires_grad_(True) for t in (x, *flat_h, *params)]
        assert gradcheck(f, leaves, check_batched_grad=False)
        assert gradgradcheck(f, leaves, check_batched_grad=False)


# ModuleInfo's train_and_eval_differ: the layers have dropout, the cells nothing random
TRAIN_AND_EVAL_DIFFER = {
    "RNN": True,
    "GRU": True,
    "LSTM": True,
    "RNNCell": False,
    "GRUCell": False,
    "LSTMCell": False,
}


def forward_without_training(m, args, mode):
    """test_modules.py::test_if_train_and_eval_modes_differ, one sample: with its ``training``
    attribute deleted, a module whose ModuleInfo says train and eval do not differ still runs
    its forward; one that reads ``training`` must say they differ. The output, or None."""
    m.train(True)  # the test runs in training mode only
    delattr(m, "training")
    try:
        return m(*args)
    except AttributeError as e:
        if "'training'" not in str(e):
            raise
        assert TRAIN_AND_EVAL_DIFFER[mode], (
            f"The ModuleInfo entry for {mode} has train_and_eval_differ=False, but the "
            "training mode was found to affect the forward pass."
        )
        return None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["RNNCell", "GRUCell", "LSTMCell"])
@pytest.mark.parametrize("source", ["lstmkit", "torch.nn"])
def test_cell_if_train_and_eval_modes_differ(mode, source, dtype):
    """test_modules.py::test_if_train_and_eval_modes_differ on the cells' module inputs."""
    samples = [((5, 10), {}), ((5, 10), {"bias": True})]
    if mode == "RNNCell":
        samples.append(((5, 10), {"bias": True, "nonlinearity": "relu"}))
    for cons_args, cons_kwargs in samples:
        torch.manual_seed(0)
        m = cell(mode, source)(*cons_args, **cons_kwargs).to(dtype)
        h = (torch.randn(10, dtype=dtype), torch.randn(10, dtype=dtype))
        args = (torch.randn(5, dtype=dtype), h if mode == "LSTMCell" else h[0])
        out = forward_without_training(m, args, mode)
        want = cell(mode, source)(*cons_args, **cons_kwargs).to(dtype)
        want.load_state_dict(m.state_dict())
        for a, b in zip(flatten_out(out), flatten_out(want.eval()(*args)), strict=True):
            assert a.shape == (10,) and a.dtype == dtype
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("mode,implementation", layer_cases())
def test_module_if_train_and_eval_modes_differ(mode, implementation):
    """test_modules.py::test_if_train_and_eval_modes_differ on the layers' module inputs (they
    may read ``training``: their ModuleInfo says train and eval differ, by dropout)."""
    for cons, args, _ in module_inputs(mode)[::3]:
        m = layer(mode, implementation)(**cons)
        out = forward_without_training(m, args, mode)
        assert out is None or len(flatten_out(out)) == (3 if mode == "LSTM" else 2)


# --------------------------------------------------------------------------------------
# common_modules.py: module_error_inputs_*


RNN_GRU_CELL_ERRORS = [  # module_error_inputs_torch_nn_RNN_GRU_Cell
    (
        (10, 20),
        ((3, 11), (3, 20)),
        RuntimeError,
        "input has inconsistent input_size: got 11 expected 10",
    ),
    (
        (10, 20),
        ((3, 10), (3, 21)),
        RuntimeError,
        "hidden0 has inconsistent hidden_size: got 21, expected 20",
    ),
    (
        (10, 20),
        ((3, 10), (5, 20)),
        RuntimeError,
        "Input batch size 3 doesn't match hidden0 batch size 5",
    ),
    (
        (10, 20),
        ((3, 10), (3, 1, 1, 20)),
        ValueError,
        "Expected hidden to be 1D or 2D, got 4D instead",
    ),
    (
        (10, 20, "relu"),
        ((3, 10), (3, 21)),
        RuntimeError,
        "hidden0 has inconsistent hidden_size: got 21, expected 20",
    ),
    (
        (10, 20, "tanh"),
        ((3, 10), (3, 21)),
        RuntimeError,
        "hidden0 has inconsistent hidden_size: got 21, expected 20",
    ),
]
LSTM_CELL_ERRORS = [  # module_error_inputs_torch_nn_LSTMCell
    ((3, 11), (3, 20), RuntimeError, "input has inconsistent input_size: got 11 expected 10"),
    ((3, 10), (3, 21), RuntimeError, "hidden0 has inconsistent hidden_size: got 21, expected 20"),
    ((3, 10), (5, 20), RuntimeError, "Input batch size 3 doesn't match hidden0 batch size 5"),
    ((3, 10), (3, 1, 1, 20), ValueError, r"Expected hx\[0\] to be 1D or 2D, got 4D instead"),
]


@pytest.mark.parametrize("mode", ["RNNCell", "GRUCell"])
@pytest.mark.parametrize("source", ["lstmkit", "torch.nn"])
@pytest.mark.parametrize("case", range(len(RNN_GRU_CELL_ERRORS)))
def test_cell_error_inputs(mode, source, case):
    cons, (x_shape, h_shape), exc, regex = RNN_GRU_CELL_ERRORS[case]
    m = cell(mode, source)(*cons)  # GRUCell(10, 20, 'relu'): a truthy positional bias
    with pytest.raises(exc, match=regex):
        m(torch.randn(x_shape), torch.randn(h_shape))


@pytest.mark.parametrize("source", ["lstmkit", "torch.nn"])
@pytest.mark.parametrize("case", range(len(LSTM_CELL_ERRORS)))
def test_lstm_cell_error_inputs(source, case):
    x_shape, h_shape, exc, regex = LSTM_CELL_ERRORS[case]
    m = cell("LSTMCell", source)(10, 20)
    with pytest.raises(exc, match=regex):
        m(torch.randn(x_shape), (torch.randn(h_shape), torch.randn(h_shape)))


RNN_GRU_CONSTRUCTION_ERRORS = [  # module_error_inputs_torch_nn_RNN_GRU (construction)
    ((10, 0, 1), {}, ValueError, "hidden_size must be greater than zero"),
    ((10, 10, 0), {}, ValueError, "num_layers must be greater than zero"),
    ((3, 5), {"bias": 0}, TypeError, "bias should be of type bool, got: int"),
    ((3, 5), {"bias": 1}, TypeError, "bias should be of type bool, got: int"),
    ((3, 5), {"bias": "True"}, TypeError, "bias should be of type bool, got: str"),
    ((3, 5), {"batch_first": 0}, TypeError, "batch_first should be of type bool, got: int"),
    ((3, 5), {"batch_first": 1}, TypeError, "batch_first should be of type bool, got: int"),
    ((3, 5), {"batch_first": "False"}, TypeError, "batch_first should be of type bool, got: str"),
    ((3.0, 5), {}, TypeError, "input_size should be of type int, got: float"),
    (("10", 5), {}, TypeError, "input_size should be of type int, got: str"),
    ((0, 5), {}, ValueError, "input_size must be greater than zero"),
    ((-1, 5), {}, ValueError, "input_size must be greater than zero"),
    ((3, 5.0), {}, TypeError, "hidden_size should be of type int, got: float"),
]


@pytest.mark.parametrize("mode,implementation", layer_cases())
def test_rnn_error_inputs(mode, implementation):
    """module_error_inputs_torch_nn_RNN_GRU (LSTM uses the same)."""
    cls = layer(mode, implementation)
    for args, kwargs, exc, regex in RNN_GRU_CONSTRUCTION_ERRORS:
        with pytest.raises(exc, match=regex):
            cls(*args, **kwargs)
    m = cls(3, 5, dtype=torch.float32)
    with pytest.raises(
        ValueError,
        match=r"RNN input dtype .* does not match weight dtype .* "
        r"Convert input: input\.to\(.*\), or convert model: model\.to\(.*\)",
    ):
        m(torch.randn(2, 4, 3, dtype=torch.float64))


# --------------------------------------------------------------------------------------
# test_nn.py: TestNN


@pytest.mark.parametrize("source", ["lstmkit", "torch.nn"])
def test_RNN_cell(source):
    # this is just a smoke test; these modules are implemented through autograd
    for module in (cell("RNNCell", source), cell("GRUCell", source)):
        for bias in (True, False):
            input = torch.randn(3, 10)
            hx = torch.randn(3, 20)
            c = module(10, 20, bias=bias)
            for _ in range(6):
                hx = c(input, hx)
            hx.sum().backward()
            assert c.weight_hh.grad is not None and hx.shape == (3, 20)


@pytest.mark.parametrize("source", ["lstmkit", "torch.nn"])
def test_RNN_cell_forward_zero_hidden_size(source):
    input = torch.randn(3, 10)
    hx = torch.randn(3, 0)
    for c in (
        cell("RNNCell", source)(10, 0, nonlinearity="relu"),
        cell("RNNCell", source)(10, 0, nonlinearity="tanh"),
        cell("GRUCell", source)(10, 0),
    ):
        assert c(input, hx).shape == torch.Size([3, 0])


@pytest.mark.parametrize("source", ["lstmkit", "torch.nn"])
def test_RNN_cell_no_broadcasting(source):
    def test(cell_module, input, hx, input_size, hidden_size):
        c = cell_module(input_size, hidden_size)
        with pytest.raises(RuntimeError):
            c(input, hx)

    def test_all(hidden_size, bad_hx, good_hx, input_size, input):
        test(cell("RNNCell", source), input, bad_hx, input_size, hidden_size)
        test(cell("GRUCell", source), input, bad_hx, input_size, hidden_size)
        test(cell("LSTMCell", source), input, (bad_hx, good_hx), input_size, hidden_size)
        test(cell("LSTMCell", source), input, (good_hx, bad_hx), input_size, hidden_size)

    hidden_size = 20
    input_size = 10
    input = torch.randn(3, input_size)
    bad_hx = torch.randn(1, hidden_size)
    good_hx = torch.randn(3, hidden_size)
    # hidden/input batch size broadcasting
    test_all(hidden_size, bad_hx, good_hx, input_size, input)
    # hx's hidden_size vs module's hidden_size broadcasting
    bad_hx = torch.randn(3, 1)
    test_all(hidden_size, bad_hx, good_hx, input_size, input)
    # input's input_size vs module's input_size broadcasting
    bad_input = torch.randn(3, 1)
    test_all(hidden_size, good_hx, good_hx, input_size, bad_input)


@pytest.mark.parametrize("source", ["lstmkit", "torch.nn"])
def test_LSTM_cell(source):
    for bias in (True, False):
        input = torch.randn(3, 10)
        hx = torch.randn(3, 20)
        cx = torch.randn(3, 20)
        lstm = cell("LSTMCell", source)(10, 20, bias=bias)
        for _ in range(6):
            hx, cx = lstm(input, (hx, cx))
        (hx + cx).sum().backward()
        assert lstm.weight_ih.grad is not None


@pytest.mark.parametrize("source", ["lstmkit", "torch.nn"])
def test_LSTM_cell_forward_input_and_hidden_size(source):
    lstm = cell("LSTMCell", source)(10, 20)
    with pytest.raises(RuntimeError, match="input has inconsistent input_size"):
        lstm(torch.randn(3, 11), (torch.randn(3, 20), torch.randn(3, 20)))
    hx, cx = torch.randn(3, 21), torch.randn(3, 20)
    with pytest.raises(RuntimeError, match="hidden0 has inconsistent hidden_size: got 21"):
        lstm(torch.randn(3, 10), (hx, cx))
    with pytest.raises(RuntimeError, match="hidden1 has inconsistent hidden_size: got 21"):
        lstm(torch.randn(3, 10), (cx, hx))


@pytest.mark.parametrize("implementation", LSTM_IMPLEMENTATIONS)
def test_cudnn_forward_exception(implementation):
    """The errors cuDNN's path must raise, checked on the CPU."""
    layers = all_layers(implementation)
    rnns = [
        (layers["LSTM"](10, 20, batch_first=True), (torch.zeros(1, 2, 19), torch.zeros(1, 2, 19))),
        (
            layers["LSTM"](10, 20, batch_first=True, proj_size=10),
            (torch.zeros(1, 2, 19), torch.zeros(1, 2, 19)),
        ),
        (layers["GRU"](10, 20, batch_first=True), torch.zeros(1, 2, 19)),
        (layers["RNN"](10, 20, batch_first=True), torch.zeros(1, 2, 19)),
    ]
    x_wrong = torch.randn(2, 3, 3)
    x_right = torch.randn(2, 3, 10)
    for rnn, hidden in rnns:
        with pytest.raises(RuntimeError, match="Expected hidden.*size.*got"):
            rnn(x_right, hidden)
        with pytest.raises(
            RuntimeError, match=re.escape("input.size(-1) must be equal to input_size")
        ):
            rnn(x_wrong)


@pytest.mark.parametrize("implementation", LSTM_IMPLEMENTATIONS)
def test_rnn_args_check(implementation):
    input_size, hidden_size, num_layers, batch_size, seq_len = 3, 5, 2, 4, 6
    num_directions = 1
    bad_size = 7  # prime number so that no size can divide it
    layers = all_layers(implementation)

    def test(input_shape, hidden_shape, mode):
        for input, hidden in get_inputs(input_shape, hidden_shape, mode):
            model = layers[mode](input_size, hidden_size, num_layers)
            with pytest.raises(RuntimeError):
                model(input, hidden)

    correct_input_shape = (seq_len, batch_size, input_size)
    correct_hidden_shape = (num_layers * num_directions, batch_size, hidden_size)

    def update_shape(shape, dim, new_dim_size):
        new_shape = list(shape)
        new_shape[dim] = new_dim_size
        return tuple(new_shape)

    def get_inputs(input_shape, hidden_shape, mode):
        """returns list( tuple(input, hidden) ) where input, hidden are inputs to a model"""
        input = torch.randn(input_shape)
        hidden = torch.randn(hidden_shape)
        if mode != "LSTM":
            return [(input, hidden)]
        if hidden_shape == correct_hidden_shape:
            return [(input, (hidden, hidden))]
        good_hidden = torch.randn(correct_hidden_shape)
        return [(input, (hidden, good_hidden)), (input, (good_hidden, hidden))]

    for mode in ("RNN", "GRU", "LSTM"):
        # Incorrect input batch size
        test(update_shape(correct_input_shape, 1, bad_size), correct_hidden_shape, mode)
        # Incorrect hidden batch size
        test(correct_input_shape, update_shape(correct_hidden_shape, 1, bad_size), mode)
        # Incorrect input size
        test(update_shape(correct_input_shape, 2, bad_size), correct_hidden_shape, mode)
        # Incorrect hidden size
        test(correct_input_shape, update_shape(correct_hidden_shape, 2, bad_size), mode)
        # Incorrect hidden[0]
        test(correct_input_shape, update_shape(correct_hidden_shape, 0, bad_size), mode)


@pytest.mark.parametrize("implementation", LSTM_IMPLEMENTATIONS)
def test_projections_lstm_args_check(implementation):
    input_size, hidden_size, proj_size, num_layers, batch_size, seq_len = 3, 5, 2, 2, 4, 6
    num_directions = 1
    bad_size = 7
    lstm = layer("LSTM", implementation)

    def test(input_shape, hidden_h_shape, hidden_c_shape):
        model = lstm(input_size, hidden_size, num_layers, proj_size=proj_size)
        input = torch.randn(input_shape)
        hidden = (torch.randn(hidden_h_shape), torch.randn(hidden_c_shape))
        with pytest.raises(RuntimeError):
            model(input, hidden)

    x = (seq_len, batch_size, input_size)
    h = (num_layers * num_directions, batch_size, proj_size)
    c = (num_layers * num_directions, batch_size, hidden_size)
    test((seq_len, bad_size, input_size), h, c)  # input batch size
    test(x, (num_layers, bad_size, proj_size), c)  # hidden batch size
    test((seq_len, batch_size, bad_size), h, c)  # input size
    test(x, (num_layers, batch_size, bad_size), c)  # hidden h size
    test(x, h, (num_layers, batch_size, bad_size))  # hidden c size
    test(x, (bad_size, batch_size, proj_size), c)  # hidden[0] h
    test(x, h, (bad_size, batch_size, hidden_size))  # hidden[0] c
    test(x, (num_layers, batch_size, hidden_size), c)  # h of cell size (no projection)
    test(x, h, (num_layers, batch_size, proj_size))  # c of the projection's size


@pytest.mark.parametrize("implementation", LSTM_IMPLEMENTATIONS)
def test_rnn_check_device(implementation):
    """torch checks input, parameters and hidden state on one device; 'meta' stands in for
    the CUDA device of the original."""
    input_size, hidden_size, num_layers, batch_size, seq_len = 3, 5, 2, 4, 6
    correct_input_shape = (seq_len, batch_size, input_size)
    correct_hidden_shape = (num_layers, batch_size, hidden_size)
    for mode, cls in all_layers(implementation).items():
        model = cls(input_size, hidden_size, num_layers)
        input = torch.randn(correct_input_shape)
        hidden = torch.randn(correct_hidden_shape)
        with pytest.raises(
            RuntimeError, match="Input and parameter tensors are not at the same device"
        ):
            model(input.to("meta"))
        meta_hidden = hidden.to("meta")
        with pytest.raises(
            RuntimeError, match=r"Input and hidden tensors are not at the same device"
        ):
            model(input, (meta_hidden, meta_hidden) if mode == "LSTM" else meta_hidden)
        if mode == "LSTM":
            with pytest.raises(
                RuntimeError, match="Input and hidden tensors are not at the same device"
            ):
                model(input, (hidden, meta_hidden))


@pytest.mark.parametrize("implementation", LSTM_IMPLEMENTATIONS)
def test_rnn_initial_hidden_state(implementation):
    for mode, cls in all_layers(implementation).items():
        rnn = cls(30, 20, 2)
        input = torch.randn(10, 32, 30)
        hidden = torch.zeros(2, 32, 20)
        if mode == "LSTM":
            hidden = (hidden, hidden)
        output1, hidden1 = rnn(input, hidden)
        output2, hidden2 = rnn(input)
        torch.testing.assert_close(output1, output2, rtol=0, atol=0)
        torch.testing.assert_close(hidden1, hidden2, rtol=0, atol=0)


@pytest.mark.parametrize("implementation", LSTM_IMPLEMENTATIONS)
def test_projections_lstm_initial_hidden_state(implementation):
    for bidir in (False, True):
        rnn = layer("LSTM", implementation)(30, 20, 2, bidirectional=bidir, proj_size=10)
        num_dirs = 2 if bidir else 1
        input = torch.randn(10, 32, 30)
        hidden = (torch.zeros(2 * num_dirs, 32, 10), torch.zeros(2 * num_dirs, 32, 20))
        output1, hidden1 = rnn(input, hidden)
        output2, hidden2 = rnn(input)
        torch.testing.assert_close(output1, output2, rtol=0, atol=0)
        torch.testing.assert_close(hidden1, hidden2, rtol=0, atol=0)


@pytest.mark.parametrize("implementation", RNN_IMPLEMENTATIONS)
def test_projections_errors_on_gru_and_rnn(implementation):
    error_msg = "proj_size argument is only supported for LSTM, not RNN or GRU"
    for mode in ("RNN", "GRU"):
        with pytest.raises(ValueError, match=error_msg):
            layer(mode, implementation)(30, 20, 2, proj_size=10)


def _copy_weights(dst, src):
    """Copy ``src``'s weights into ``dst`` layer by layer through ``all_weights``."""
    with torch.no_grad():
        for x_layer, y_layer in zip(dst.all_weights, src.all_weights, strict=True):
            for x, y in zip(x_layer, y_layer, strict=True):
                x.copy_(y)


def _forward_backward(
    rnn, input_val, grad_output, weights_from, hx_val, grad_hy, cx_val=None, grad_cy=None
):
    """test_nn.py's _test_RNN_cpu_vs_cudnn.forward_backward, on the CPU."""
    is_lstm = isinstance(rnn, (nn.LSTM, L.LSTM))
    _copy_weights(rnn, weights_from)
    if isinstance(input_val, rnn_utils.PackedSequence):
        input = rnn_utils.PackedSequence(
            input_val.data.detach().clone().requires_grad_(True), input_val.batch_sizes
        )
        input_var = input.data
    else:
        input = input_val.clone().requires_grad_(True)
        input_var = input
    if is_lstm:
        cx = hx_val.add(1) if cx_val is None else cx_val.add(1)
        hx = (hx_val.clone().requires_grad_(True), cx.requires_grad_(True))
    else:
        hx = hx_val.clone().requires_grad_(True)
    output, hy = rnn(input, hx)
    if isinstance(output, rnn_utils.PackedSequence):
        output = output.data
    if is_lstm:
        grad_c = grad_hy + 1 if grad_cy is None else grad_cy + 1
        torch.autograd.backward([output, hy[0], hy[1]], [grad_output, grad_hy, grad_c])
    else:
        torch.autograd.backward([output, hy], [grad_output, grad_hy])
    return {
        "output": output.detach(),
        "hy": hy[0].detach() if is_lstm else hy.detach(),
        "weights": rnn.all_weights,
        "grad_input": input_var.grad,
        "grad_hx": hx[0].grad if is_lstm else hx.grad,
        "cy": hy[1].detach() if is_lstm else None,
        "grad_cx": hx[1].grad if is_lstm else None,
    }


def _compare(a, b):
    assert list(a) == list(b)
    for key in a:
        if key == "weights":  # the weights' gradients, layer by layer
            for x_layer, y_layer in zip(a[key], b[key], strict=True):
                for x, y in zip(x_layer, y_layer, strict=True):
                    torch.testing.assert_close(x.grad, y.grad, rtol=0, atol=1e-10, msg=key)
        elif a[key] is not None:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-10, msg=key)


@pytest.mark.parametrize("implementation", LSTM_IMPLEMENTATIONS)
@pytest.mark.parametrize("dropout", [0, 1])
def test_RNN_vs_torch(implementation, dropout):
    """test_RNN_cpu_vs_cudnn_{no,with}_dropout with torch.nn's CPU modules as the reference
    (dropout 1 is deterministic: everything between layers is zeroed). ``all_weights`` copies
    the weights layer by layer, as the original does."""
    input_size, hidden_size, proj_size, num_layers, seq_length, batch = 10, 6, 3, 2, 7, 6

    def make_noncontig(tensor):
        ndim = tensor.dim()
        return torch.stack([tensor.clone().zero_(), tensor], ndim).select(ndim, 1)

    layers = all_layers(implementation)
    # a third of the original's 64 flag combinations per mode: each flag both ways
    combos = list(itertools.product((True, False), repeat=6))[::3]
    for mode in ("RNN", "GRU", "LSTM"):
        for bias, bidirectional, batch_first, contig, variable_len, lens_as_tensor in combos:
            num_directions = 2 if bidirectional else 1
            if batch_first:
                input_val = torch.randn(batch, seq_length, input_size)
                grad_output = torch.randn(batch, seq_length, hidden_size * num_directions)
            else:
                input_val = torch.randn(seq_length, batch, input_size)
                grad_output = torch.randn(seq_length, batch, hidden_size * num_directions)
            hx_val = torch.randn(num_layers * num_directions, batch, hidden_size)
            grad_hy = torch.randn(num_layers * num_directions, batch, hidden_size)
            if not contig:
                grad_output = make_noncontig(grad_output)
                grad_hy = make_noncontig(grad_hy)
                input_val = make_noncontig(input_val)
                hx_val = make_noncontig(hx_val)
            if variable_len:
                lengths = [7, 5, 5, 2, 1, 1]
                if lens_as_tensor:
                    lengths = torch.tensor(lengths, dtype=torch.long)
                input_val = rnn_utils.pack_padded_sequence(
                    input_val, lengths, batch_first=batch_first
                )
                grad_output = rnn_utils.pack_padded_sequence(
                    grad_output, lengths, batch_first=batch_first
                ).data
            kwargs = dict(
                bias=bias, dropout=dropout, bidirectional=bidirectional, batch_first=batch_first
            )
            reference = CLASSES[mode][1](input_size, hidden_size, num_layers, **kwargs)
            outputs_torch = _forward_backward(
                reference, input_val, grad_output, reference, hx_val, grad_hy
            )
            rnn = layers[mode](input_size, hidden_size, num_layers, **kwargs)
            outputs = _forward_backward(rnn, input_val, grad_output, reference, hx_val, grad_hy)
            _compare(outputs_torch, outputs)

    for nonlinearity in ("tanh", "relu"):
        hx_val = torch.randn(num_layers, batch, hidden_size)
        input_val = torch.randn(seq_length, batch, input_size)
        grad_output = torch.randn(seq_length, batch, hidden_size)
        grad_hy = torch.randn(num_layers, batch, hidden_size)
        reference = nn.RNN(input_size, hidden_size, num_layers, nonlinearity=nonlinearity)
        want = _forward_backward(reference, input_val, grad_output, reference, hx_val, grad_hy)
        rnn = layers["RNN"](input_size, hidden_size, num_layers, nonlinearity=nonlinearity)
        _compare(want, _forward_backward(rnn, input_val, grad_output, reference, hx_val, grad_hy))

    # LSTM with projections
    for bias, bidirectional, batch_first, contig, variable_len, lens_as_tensor in combos:
        num_directions = 2 if bidirectional else 1
        if batch_first:
            input_val = torch.randn(batch, seq_length, input_size)
            grad_output = torch.randn(batch, seq_length, proj_size * num_directions)
        else:
            input_val = torch.randn(seq_length, batch, input_size)
            grad_output = torch.randn(seq_length, batch, proj_size * num_directions)
        hx_val = torch.randn(num_layers * num_directions, batch, proj_size)
        cx_val = torch.randn(num_layers * num_directions, batch, hidden_size)
        grad_hy = torch.randn(num_layers * num_directions, batch, proj_size)
        grad_cy = torch.randn(num_layers * num_directions, batch, hidden_size)
        if not contig:
            grad_output, grad_hy, grad_cy = map(make_noncontig, (grad_output, grad_hy, grad_cy))
            input_val, hx_val, cx_val = map(make_noncontig, (input_val, hx_val, cx_val))
        if variable_len:
            lengths = [7, 5, 5, 2, 1, 1]
            if lens_as_tensor:
                lengths = torch.tensor(lengths, dtype=torch.long)
            input_val = rnn_utils.pack_padded_sequence(input_val, lengths, batch_first=batch_first)
            grad_output = rnn_utils.pack_padded_sequence(
                grad_output, lengths, batch_first=batch_first
            ).data
        kwargs = dict(
            bias=bias,
            dropout=dropout,
            bidirectional=bidirectional,
            batch_first=batch_first,
            proj_size=proj_size,
        )
        reference = nn.LSTM(input_size, hidden_size, num_layers, **kwargs)
        args = (input_val, grad_output, reference, hx_val, grad_hy, cx_val, grad_cy)
        want = _forward_backward(reference, *args)
        rnn = layers["LSTM"](input_size, hidden_size, num_layers, **kwargs)
        _compare(want, _forward_backward(rnn, *args))


@pytest.mark.parametrize("implementation", LSTM_IMPLEMENTATIONS)
def test_RNN_weight_norm(implementation):
    """test_RNN_cudnn_weight_norm on the CPU: weight_norm on weight_hh_l0 / weight_hr_l0
    leaves the output as it was, and so does removing it."""
    input_size, hidden_size, num_layers, seq_length, batch = 10, 6, 2, 7, 6

    def check_weight_norm(m, name):
        input = torch.randn(seq_length, batch, input_size)
        expected_output = m(input)
        m = torch.nn.utils.weight_norm(m, name=name)
        torch.testing.assert_close(m(input), expected_output)
        m = torch.nn.utils.remove_weight_norm(m, name=name)
        torch.testing.assert_close(m(input), expected_output)

    lstm = layer("LSTM", implementation)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # weight_norm's deprecation
        check_weight_norm(lstm(input_size, hidden_size, num_layers), "weight_hh_l0")
        check_weight_norm(lstm(input_size, hidden_size, num_layers, proj_size=3), "weight_hr_l0")


@pytest.mark.parametrize("implementation", LSTM_IMPLEMENTATIONS)
def test_partial_flat_weights(implementation):
    """test_partial_flat_weights on the CPU: a module with a weight deleted can be moved
    (``.double()`` for ``.cuda()``), and works again once the weight is back."""
    m = layer("LSTM", implementation)(10, 6, 2)
    inp = torch.randn(3, 2, 10)
    out_expected = m(inp)
    weight_orig = m.weight_hh_l0
    del m.weight_hh_l0
    assert not hasattr(m, "weight_hh_l0")
    m.double()
    m.weight_hh_l0 = weight_orig
    torch.testing.assert_close(m(inp)[0], out_expected[0])


@pytest.mark.parametrize("implementation", LSTM_IMPLEMENTATIONS)
def test_weight_tying(implementation):
    """test_cudnn_weight_tying on the CPU: a bias shared by both directions trains as one
    parameter, and the result equals torch.nn's with the same tying."""
    results = []
    for impl in ("torch.nn", implementation):
        layers = all_layers(impl)
        rnns = [
            layers["LSTM"](10, 20, batch_first=True, bidirectional=True),
            layers["LSTM"](10, 20, batch_first=True, bidirectional=True, proj_size=10),
            layers["GRU"](10, 20, batch_first=True, bidirectional=True),
            layers["RNN"](10, 20, batch_first=True, bidirectional=True),
        ]
        got = []
        for k, rnn in enumerate(rnns):
            torch.manual_seed(k)
            for p in rnn.parameters():
                torch.nn.init.uniform_(p, -0.2, 0.2)
            rnn.bias_ih_l0_reverse = rnn.bias_ih_l0
            input = torch.randn(5, 4, 10, requires_grad=True)
            hx = torch.randn(2, 5, 20, requires_grad=True)
            opt = torch.optim.SGD(rnn.parameters(), lr=0.1)
            opt.zero_grad()
            if "LSTM" in type(rnn).__name__:
                if rnn.proj_size > 0:
                    hx = torch.randn(2, 5, 10, requires_grad=True)
                hx = (hx, torch.randn(2, 5, 20, requires_grad=True))
            output = rnn(input, hx)
            output[0].sum().backward()
            opt.step()
            assert rnn.bias_ih_l0_reverse is rnn.bias_ih_l0
            got.append(rnn(input, hx)[0].detach())
        results.append(got)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("implementation", RNN_IMPLEMENTATIONS)
def test_RNN_dropout(implementation):
    # checking the assumption that dropout sits between the RNN layers
    for p in (0, 0.276, 0.731, 1):
        for train in (True, False):
            rnn = layer("RNN", implementation)(
                10, 1000, 2, bias=False, dropout=p, nonlinearity="relu"
            )
            rnn.train(train)
            with torch.no_grad():
                for name in ("weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"):
                    getattr(rnn, name).fill_(1)
            input = torch.ones(1, 1, 10)
            hx = torch.zeros(2, 1, 1000)
            output, hy = rnn(input, hx)
            assert output.min() == output.max()
            output_val = output[0][0][0]
            if p == 0 or not train:
                assert output_val == 10000
            elif p == 1:
                assert output_val == 0
            else:
                assert 8000 < output_val < 12000
                denorm_mod = (output_val * (1 - p)) % 10
                assert min(denorm_mod, 10 - denorm_mod) < 1e-2
            assert hy[0].min() == hy[0].max()
            assert hy[1].min() == hy[1].max()
            assert hy[0][0][0] == 10
            assert hy[1][0][0] == output_val


@pytest.mark.parametrize("implementation", RNN_IMPLEMENTATIONS)
def test_RNN_dropout_state(implementation):
    for p in (0, 0.1234):
        for train in (True, False):
            rnn = layer("RNN", implementation)(
                100, 100, 2, bias=False, dropout=p, nonlinearity="relu"
            )
            rnn.train(train)
            input = torch.rand(1, 1, 100)
            hx = torch.rand(2, 1, 100)
            output1, hy1 = rnn(input, hx)
            output2, hy2 = rnn(input, hx)
            buf = io.BytesIO()
            torch.save(rnn, buf)
            buf.seek(0)
            rnn2 = torch.load(buf, weights_only=False)
            rnn2.flatten_parameters()
            output3, hy3 = rnn2(input, hx)
            if p == 0 or not train:
                assert torch.equal(output1, output2) and torch.equal(output1, output3)
                assert torch.equal(hy1, hy2) and torch.equal(hy1, hy3)
            else:
                assert not torch.equal(output1, output2) and not torch.equal(output1, output3)
                assert not torch.equal(hy1, hy2) and not torch.equal(hy1, hy3)


@pytest.mark.parametrize("implementation", RNN_IMPLEMENTATIONS)
def test_RNN_change_dropout(implementation):
    for train in (True, False):
        rnn = layer("RNN", implementation)(100, 100, 2, dropout=0, nonlinearity="relu")
        input = torch.rand(3, 2, 100)
        rnn.train(train)
        prev_output = None
        for p in (0, 0.5, 0, 0.7, 0.2, 1, 0.2, 0):
            rnn.dropout = p
            output1, hy1 = rnn(input)
            output2, hy2 = rnn(input)
            if p == 0 or p == 1 or not train:
                assert torch.equal(output1, output2) and torch.equal(hy1, hy2)
            else:
                assert not torch.equal(output1, output2) and not torch.equal(hy1, hy2)
            if prev_output is not None:
                if not train:
                    assert torch.equal(output1, prev_output)
                    assert torch.equal(output2, prev_output)
                else:
                    assert not torch.equal(output1, prev_output)
                    assert not torch.equal(output2, prev_output)
            prev_output = output1


@pytest.mark.parametrize("implementation", LSTM_IMPLEMENTATIONS)
def test_error_RNN_seq_len_zero(implementation):
    # checking error message when RNN has seq_len = 0
    for cls in all_layers(implementation).values():
        for bidirectional in (True, False):
            input = torch.ones(0, 10, 5)
            rnn = cls(5, 6, bidirectional=bidirectional)
            with pytest.raises(
                RuntimeError, match="Expected sequence length to be larger than 0 in RNN"
            ):
                rnn(input)


@pytest.mark.parametrize("implementation", LSTM_IMPLEMENTATIONS)
def test_RNN_input_size_zero(implementation):
    for cls in all_layers(implementation).values():
        input = torch.zeros((5, 0, 3))
        rnn = cls(input_size=3, hidden_size=4)
        outs = rnn(input)
        assert outs[0].shape == torch.Size([5, 0, 4])
        # Check that backward does not cause a hard error
        outs[0].sum().backward()


@pytest.mark.parametrize("implementation", RNN_IMPLEMENTATIONS)
def test_RNN_nonlinearity(implementation):
    rnn_cls = layer("RNN", implementation)
    assert rnn_cls(1, 10).nonlinearity == "tanh"
    assert rnn_cls(1, 10, nonlinearity="relu").nonlinearity == "relu"
    with pytest.raises(ValueError, match="Unknown nonlinearity"):
        rnn_cls(1, 10, nonlinearity="garbage")
    assert rnn_cls(2, 3, 1, "relu").nonlinearity == "relu"  # passed as an argument


# --------------------------------------------------------------------------------------
# test_nn.py: TestNNDeviceType (CPU) and test_autograd.py


@pytest.mark.parametrize("implementation", LSTM_IMPLEMENTATIONS)
def test_rnn_retain_variables(implementation):
    for cls in all_layers(implementation).values():
        rnn = cls(10, 20, num_layers=2)
        input = torch.randn(5, 6, 10, requires_grad=True)
        output = rnn(input)
        output[0].sum().backward(retain_graph=True)
        grads = [input.grad.clone()] + [p.grad.clone() for p in rnn.parameters()]
        for _ in range(4):
            rnn.zero_grad()
            input.grad.zero_()
            output[0].sum().backward(retain_graph=True)
            grads2 = [input.grad] + [p.grad for p in rnn.parameters()]
            for a, b in zip(grads, grads2):
                torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("implementation", LSTM_IMPLEMENTATIONS)
def test_variable_sequence(implementation):
    """A packed batch equals each sequence run on its own (forward and backward)."""
    lstm_cls = layer("LSTM", implementation)

    def pad(var, length):
        if var.size(0) == length:
            return var
        return torch.cat([var, var.new_zeros(length - var.size(0), *var.size()[1:])])

    def maybe_index_tuple(maybe_tuple_of_tensors, index):
        if maybe_tuple_of_tensors is None:
            return None
        return tuple(t[:, index : index + 1, :].contiguous() for t in maybe_tuple_of_tensors)

    def check_lengths(lengths, enforce_sorted, use_default_hiddens, proj_size):
        input_size, hidden_size, num_layers, bidirectional = 3, 4, 2, True
        max_length = max(lengths)
        x_leaf = torch.randn(max_length, len(lengths), input_size, requires_grad=True)
        num_directions = 2 if bidirectional else 1
        lstm = lstm_cls(
            input_size,
            hidden_size,
            bidirectional=bidirectional,
            num_layers=num_layers,
            proj_size=proj_size,
        )
        lstm2 = copy.deepcopy(lstm)
        x = x_leaf
        hidden0 = None
        if not use_default_hiddens:
            real_hidden_size = hidden_size if proj_size == 0 else proj_size
            hidden0 = (
                torch.randn(num_directions * num_layers, len(lengths), real_hidden_size),
                torch.randn(num_directions * num_layers, len(lengths), hidden_size),
            )
        # Compute sequences separately
        seq_outs, seq_hiddens = [], []
        for i, length in enumerate(lengths):
            hidden_i = maybe_index_tuple(hidden0, i)
            out, hid = lstm2(x[:length, i : i + 1], hidden_i)
            seq_outs.append(pad(out, max_length))
            seq_hiddens.append(hid)
        seq_out = torch.cat(seq_outs, 1)
        seq_hidden = tuple(torch.cat(hids, 1) for hids in zip(*seq_hiddens))
        # Use packed format
        packed = rnn_utils.pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
        packed_out, packed_hidden = lstm(packed, hidden0)
        unpacked, unpacked_len = rnn_utils.pad_packed_sequence(packed_out)
        # Check forward
        prec = 1e-10
        torch.testing.assert_close(packed_hidden, seq_hidden, atol=prec, rtol=0)
        torch.testing.assert_close(unpacked, seq_out, atol=prec, rtol=0)
        assert unpacked_len.tolist() == list(lengths)
        # Check backward
        seq_out.sum().backward()
        grad_x = x_leaf.grad.clone()
        x_leaf.grad.zero_()
        unpacked.sum().backward()
        torch.testing.assert_close(x_leaf.grad, grad_x, atol=prec, rtol=0)
        for p1, p2 in zip(lstm.parameters(), lstm2.parameters()):
            torch.testing.assert_close(p1.grad, p2.grad, atol=prec, rtol=0)

    tests = [
        # enforce_sorted, lengths
        [True, [5]],
        [False, [5]],
        [True, [10, 10, 6, 2, 2, 1, 1]],
        [False, [10, 10, 6, 2, 2, 1, 1]],
        [False, [2, 1, 3, 2, 10, 5, 3]],
    ]
    for enforce_sorted, seq_lens in tests:
        for use_default_hiddens in (True, False):
            for proj_size in (0, 2):
                check_lengths(seq_lens, enforce_sorted, use_default_hiddens, proj_size)


@pytest.mark.parametrize("mode,implementation", layer_cases(("LSTM", "GRU")))
def test_grad_and_gradgrad(mode, implementation):
    """test_autograd.py's test_LSTM_grad_and_gradgrad / test_GRU_grad_and_gradgrad."""
    hsize = 4
    inp = torch.rand(1, 3, hsize, dtype=torch.float64, requires_grad=True)
    for bias in (True, False):
        mod = layer(mode, implementation)(hsize, hsize, bias=bias).to(torch.float64)

        def flatten_out(inp, mod=mod):
            out = mod(inp)
            return tuple([t if isinstance(t, torch.Tensor) else tt for t in out for tt in t])

        assert gradcheck(flatten_out, inp, check_batched_grad=False)
        assert gradgradcheck(flatten_out, inp, check_batched_grad=False)


@pytest.mark.parametrize("implementation", LSTM_IMPLEMENTATIONS)
def test_LSTM_differentiable_backward(implementation):
    """test_LSTM_differentiable_backward_using_oneDNN: the derivative of a 20-layer LSTM's
    output w.r.t. its input, differentiated again, equals torch.nn's (oneDNN off and on)."""
    batch, seq_len, input = 10, 12, 3
    torch.manual_seed(0)
    net = nn.LSTM(input, 3, 20, batch_first=True)
    ours = layer("LSTM", implementation)(input, 3, 20, batch_first=True)
    ours.load_state_dict(net.state_dict())
    x = torch.rand(batch, seq_len, input)
    results = []
    for m, mkldnn in ((net, False), (net, True), (ours, True)):
        before = torch._C._get_mkldnn_enabled()
        torch._C._set_mkldnn_enabled(mkldnn)
        try:
            x1 = x.clone().requires_grad_(True)
            out1, _ = m(x1)
            der_out1 = torch.autograd.grad(
                out1,
                x1,
                grad_outputs=torch.ones_like(out1),
                retain_graph=True,
                create_graph=True,
            )[0]
            der_out1.sum().backward(retain_graph=True)
        finally:
            torch._C._set_mkldnn_enabled(before)
        results.append((der_out1, x1.grad))
    assert results[0][1].abs().sum() > 0
    for got in results[1:]:
        torch.testing.assert_close(got[0], results[0][0], rtol=0, atol=1e-10)
        torch.testing.assert_close(got[1], results[0][1], rtol=0, atol=1e-10)


@pytest.mark.parametrize("implementation", LSTM_IMPLEMENTATIONS)
def test_rnn_backward_to_input_but_not_parameters(implementation):
    """(CUDA-only in torch.) Frozen parameters: the input still gets its gradient."""
    lstm = layer("LSTM", implementation)(2, 3)
    for p in lstm.parameters():
        p.requires_grad = False
    s = torch.randn(1, 1, 2, requires_grad=True)
    out, _ = lstm(s)
    out.sum().backward()
    assert not (s.grad is None or s.grad.abs().sum().item() == 0)


@pytest.mark.parametrize("source", ["lstmkit", "torch.nn"])
def test_lstmcell_backward_only_one_output_grad(source):
    """(CUDA-only in torch.) Undefined gradients do not hamper the backward (#11872)."""
    c = cell("LSTMCell", source)(2, 3).double()
    s = torch.randn(1, 2, dtype=torch.double, requires_grad=True)
    for i in range(2):
        out = c(s)[i]
        out.sum().backward()
        assert not (s.grad is None or s.grad.abs().sum().item() == 0)


# --------------------------------------------------------------------------------------
# The API these tests lean on


@pytest.mark.parametrize("mode,implementation", layer_cases())
def test_all_weights_and_flat_weights_match_torch(mode, implementation):
    """``all_weights`` and ``_flat_weights`` as torch has them (names, order, identity)."""
    kwargs = dict(num_layers=2, bidirectional=True)
    if mode == "LSTM":
        kwargs["proj_size"] = 2
    ours = layer(mode, implementation)(3, 4, **kwargs)
    theirs = CLASSES[mode][1](3, 4, **kwargs)
    assert ours._flat_weights_names == theirs._flat_weights_names
    assert isinstance(ours._flat_weights, list)
    assert all(w is getattr(ours, n) for w, n in zip(ours._flat_weights, ours._flat_weights_names))
    assert [[w.shape for w in g] for g in ours.all_weights] == [
        [w.shape for w in g] for g in theirs.all_weights
    ]


def test_all_weights_of_an_lstm_with_variants_follow_torchs():
    """DIFFERENCE (an extension): variant parameters follow torch's in each group, so a
    layer-by-layer copy between two lstmkit LSTMs copies everything."""
    m = L.LSTM(3, 4, num_layers=2, peephole=True, layer_norm=True)
    names = [[n for n, p in m.named_parameters() if any(p is w for w in g)] for g in m.all_weights]
    assert names[1] == [
        "weight_ih_l1",
        "weight_hh_l1",
        "bias_ih_l1",
        "bias_hh_l1",
        "weight_ci_l1",
        "weight_cf_l1",
        "weight_co_l1",
        "ln_ih_weight_l1",
        "ln_hh_weight_l1",
        "ln_c_weight_l1",
        "ln_c_bias_l1",
    ]
    assert m._flat_weights_names[:4] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]


def test_cell_positional_bias_is_truthy_as_in_torch():
    """``RNNCell(10, 20, 'relu')``: the third positional argument is ``bias``, not the
    nonlinearity; torch takes any truthy value, and so does lstmkit."""
    for source in ("lstmkit", "torch.nn"):
        c = cell("RNNCell", source)(10, 20, "relu")
        assert c.nonlinearity == "tanh" and c.bias_ih is not None
        assert repr(c) == "RNNCell(10, 20, bias=relu)"


def test_cell_input_size_zero_is_refused():
    """DIFFERENCE: torch builds ``LSTMCell(0, 3)`` (an input without features); lstmkit
    refuses it as the mistake it almost always is. Its ``hidden_size`` 0 works as torch's."""
    nn.LSTMCell(0, 3)
    with pytest.raises(ValueError, match="input_size must be greater than zero"):
        L.LSTMCell(0, 3)
    h, c = L.LSTMCell(10, 0)(torch.randn(2, 10))
    assert h.shape == c.shape == (2, 0)


def test_cell_dtype_error_is_clearer_than_torchs():
    """DIFFERENCE (message only): torch fails inside the matrix product ("mat1 and mat2 must
    have the same dtype"); lstmkit names the input and the weight, with the same type."""
    with pytest.raises(RuntimeError, match="mat1 and mat2 must have the same dtype"):
        nn.GRUCell(3, 5).float()(torch.randn(2, 3))
    with pytest.raises(
        RuntimeError,
        match=re.escape(
            "GRUCell input dtype (torch.float64) does not match weight dtype (torch.float32)"
        ),
    ):
        L.GRUCell(3, 5).float()(torch.randn(2, 3))
