"""The fused LSTM direction equals the reference loop of ``lstm_step``: values and gradients."""

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from lstmkit.kernels import fused_lstm
from lstmkit.kernels.fused_lstm import (
    DirectionInputs,
    FusedLSTMDirection,
    extension_available,
    lstm_direction,
)
from lstmkit.nn import functional as LF

LENGTHS = [5, 7, 1, 5, 2, 1]  # for T = 7, N = 6

CONFIGS = {
    "standard": dict(),
    "no_bias": dict(bias=False),
    "proj": dict(proj=True),
    "peephole": dict(peephole=True),
    "layer_norm": dict(layer_norm=True),
    "layer_norm_no_bias": dict(layer_norm=True, bias=False),
    "coupled": dict(coupled=True),
    "coupled_peephole": dict(coupled=True, peephole=True),
    "zoneout": dict(zoneout=True),
    "recurrent_dropout": dict(rec_mask=True),
    "lengths": dict(lengths=True),
    "all": dict(
        proj=True,
        peephole=True,
        layer_norm=True,
        coupled=True,
        zoneout=True,
        rec_mask=True,
        lengths=True,
    ),
    "all_uncoupled_no_bias": dict(
        bias=False,
        proj=True,
        peephole=True,
        layer_norm=True,
        zoneout=True,
        rec_mask=True,
        lengths=True,
    ),
}


@pytest.fixture(scope="module")
def extension():
    if os.environ.get("LSTMKIT_NO_EXTENSION") == "1":
        pytest.skip("the C++ extension is disabled by LSTMKIT_NO_EXTENSION=1")
    if not extension_available():
        pytest.skip(
            "the C++ extension could not be built (no C++ compiler or ninja?); see the "
            "warning logged by lstmkit.kernels.fused_lstm"
        )


@pytest.fixture
def no_extension(monkeypatch):
    monkeypatch.setenv("LSTMKIT_NO_EXTENSION", "1")


def make_case(cfg, dtype=torch.float64, steps=7, batch=6, hidden=5, proj_size=3, seed=0):
    """Leaf tensors (all requiring grad; layer-norm parameters off their init) and masks."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.5):
        return torch.randn(*shape, generator=gen, dtype=dtype) * scale

    gh = (3 if cfg.get("coupled") else 4) * hidden
    p = proj_size if cfg.get("proj") else hidden
    leaves = {
        "xw": rand(steps, batch, gh, scale=1.0),
        "h0": rand(batch, p),
        "c0": rand(batch, hidden),
        "w_hh": rand(gh, p),
    }
    if cfg.get("bias", True):
        leaves["b_hh"] = rand(gh)
    if cfg.get("proj"):
        leaves["w_hr"] = rand(p, hidden)
    if cfg.get("peephole"):
        if not cfg.get("coupled"):
            leaves["w_ci"] = rand(hidden)
        leaves["w_cf"] = rand(hidden)
        leaves["w_co"] = rand(hidden)
    if cfg.get("layer_norm"):
        leaves["ln_hh_weight"] = 1 + rand(gh, scale=0.2)
        leaves["ln_c_weight"] = 1 + rand(hidden, scale=0.2)
        leaves["ln_ih_weight"] = 1 + rand(gh, scale=0.2)
        if cfg.get("bias", True):
            leaves["ln_c_bias"] = rand(hidden, scale=0.2)
            leaves["b_ih"] = rand(gh)
    for leaf in leaves.values():
        leaf.requires_grad_(True)
    masks = {}
    if cfg.get("zoneout"):
        masks["zoneout_h"] = torch.rand(steps, batch, p, generator=gen) < 0.3
        masks["zoneout_c"] = torch.rand(steps, batch, hidden, generator=gen) < 0.4
    if cfg.get("rec_mask"):
        masks["rec_mask"] = (torch.rand(batch, p, generator=gen) > 0.3).to(dtype) / 0.7
    if cfg.get("lengths"):
        lengths = torch.tensor(LENGTHS) if batch == len(LENGTHS) else torch.arange(batch) % steps
        masks["valid"] = torch.arange(steps).unsqueeze(1) < lengths.clamp(min=1)
    return leaves, masks


def call_args(leaves, masks, cfg, collect):
    """``lstm_direction``'s positional and keyword arguments for a case."""
    peephole = None
    if "w_cf" in leaves:
        peephole = (leaves.get("w_ci"), leaves["w_cf"], leaves["w_co"])
    ln_c = (leaves["ln_c_weight"], leaves.get("ln_c_bias")) if "ln_c_weight" in leaves else None
    ln_ih = (leaves["ln_ih_weight"], leaves.get("b_ih")) if "ln_ih_weight" in leaves else None
    args = tuple(leaves.get(k) for k in ("xw", "h0", "c0", "w_hh", "b_hh", "w_hr"))
    kwargs = dict(
        peephole=peephole,
        ln_hh_weight=leaves.get("ln_hh_weight"),
        ln_c=ln_c,
        ln_ih=ln_ih,
        coupled=bool(cfg.get("coupled")),
        collect=collect,
        **masks,
    )
    return args, kwargs


def reference(
    xw,
    h0,
    c0,
    w_hh,
    b_hh=None,
    w_hr=None,
    *,
    peephole=None,
    ln_hh_weight=None,
    ln_c=None,
    ln_ih=None,
    coupled=False,
    rec_mask=None,
    zoneout_h=None,
    zoneout_c=None,
    valid=None,
    collect=False,
):
    """The loop of ``LSTM._run_direction`` with ``RecurrentBase._scan``, written out."""
    if ln_ih is not None:  # the end of input_projection with ln_weight
        xw = LF.layer_norm(xw, ln_ih[0])
        xw = xw if ln_ih[1] is None else xw + ln_ih[1]
    h, c = h0, c0
    outputs, extras = [], []
    for t in range(xw.size(0)):
        h_in = h if rec_mask is None else h * rec_mask
        h_new, c_new, (i, f, g, o) = LF.lstm_step(
            xw[t],
            (h_in, c),
            w_hh,
            b_hh,
            w_hr,
            peephole=peephole,
            ln_hh_weight=ln_hh_weight,
            ln_c=ln_c,
            coupled=coupled,
        )
        if zoneout_h is not None:
            h_new = LF.zoneout(h_new, h, zoneout_h[t])
        if zoneout_c is not None:
            c_new = LF.zoneout(c_new, c, zoneout_c[t])
        extras.append((i, f, g, o, c_new))
        if valid is not None:
            keep = valid[t].unsqueeze(-1)
            h_new, c_new = torch.where(keep, h_new, h), torch.where(keep, c_new, c)
        h, c = h_new, c_new
        outputs.append(h)
    output = torch.stack(outputs)
    gates = tuple(torch.stack(g) for g in zip(*extras)) if collect else ()
    if valid is not None:
        pad = ~valid.unsqueeze(-1)
        output = output.masked_fill(pad, 0.0)
        gates = tuple(g.masked_fill(pad, 0.0) for g in gates)
    return output, (h, c), gates


def run(fn, leaves, masks, cfg, collect, seed=1):
    """Values (out, h_n, c_n, *gates) and the gradients of a random linear loss by leaf."""
    args, kwargs = call_args(leaves, masks, cfg, collect)
    out, (h_n, c_n), gates = fn(*args, **kwargs)
    gen = torch.Generator().manual_seed(seed)
    loss = sum(
        (y * torch.randn(y.shape, generator=gen, dtype=torch.float64).to(y.dtype)).sum()
        for y in (out, h_n, c_n)
    )
    grads = torch.autograd.grad(loss, list(leaves.values()))
    values = [y.detach() for y in (out, h_n, c_n, *gates)]
    return out, values, dict(zip(leaves, grads))


def assert_same(got, want, atol, rtol):
    (_, values, grads), (_, ref_values, ref_grads) = got, want
    assert len(values) == len(ref_values)
    for k, (a, b) in enumerate(zip(values, ref_values)):
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m, k=k: f"value {k}: {m}")
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(
            grads[name], ref_grads[name], atol=atol, rtol=rtol, msg=lambda m, n=name: f"d{n}: {m}"
        )


@pytest.mark.parametrize("collect", [False, True], ids=["plain", "collect"])
@pytest.mark.parametrize("name", CONFIGS)
def test_matches_reference_float64(extension, name, collect):
    cfg = CONFIGS[name]
    leaves, masks = make_case(cfg)
    got = run(lstm_direction, leaves, masks, cfg, collect)
    assert type(got[0].grad_fn).__name__ == "FusedLSTMDirectionBackward"  # not the fallback
    assert_same(got, run(reference, leaves, masks, cfg, collect), atol=1e-8, rtol=0)


@pytest.mark.parametrize("name", CONFIGS)
def test_matches_reference_float32(extension, name):
    """Against the float64 reference on the same inputs: the float32 reference loop itself is
    off by up to ~2e-5 with layer norm, the fused kernel by under 1e-6."""
    cfg = CONFIGS[name]
    leaves, masks = make_case(cfg, dtype=torch.float32)
    _, values, grads = run(lstm_direction, leaves, masks, cfg, collect=True)
    assert all(v.dtype == torch.float32 for v in (*values, *grads.values()))
    leaves64 = {k: v.detach().double().requires_grad_(True) for k, v in leaves.items()}
    masks64 = {k: v.double() if v.is_floating_point() else v for k, v in masks.items()}
    got = (None, [v.double() for v in values], {k: g.double() for k, g in grads.items()})
    assert_same(got, run(reference, leaves64, masks64, cfg, True), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["peephole", "all_uncoupled_no_bias"])
def test_float32_saturated_gates(extension, name):
    """The float32 kernel's own exp and tanh saturate cleanly: huge and infinite
    pre-activations give the float64 reference's values, no NaN."""
    cfg = CONFIGS[name]
    leaves, masks = make_case(cfg, dtype=torch.float32)
    # the pre-activations themselves are huge: no input layer norm to tame (or NaN) them
    leaves = {k: v.detach() for k, v in leaves.items() if k not in ("ln_ih_weight", "b_ih")}
    leaves["xw"] = leaves["xw"] * 1e3
    leaves["xw"][0, :, :2] = torch.tensor([float("inf"), -float("inf")])
    args, kwargs = call_args(leaves, masks, cfg, collect=True)
    out, (h_n, c_n), gates = lstm_direction(*args, **kwargs)
    args64 = [None if a is None else a.double() for a in args]
    kwargs64 = call_args({k: v.double() for k, v in leaves.items()}, masks, cfg, True)[1]
    kwargs64 = {
        k: v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
        for k, v in kwargs64.items()
    }
    ref_out, (ref_h, ref_c), ref_gates = reference(*args64, **kwargs64)
    for got, want in zip((out, h_n, c_n, *gates), (ref_out, ref_h, ref_c, *ref_gates)):
        assert not got.isnan().any()
        torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["standard", "all", "all_uncoupled_no_bias"])
@pytest.mark.parametrize("threads", [1, 2, 3, 5])
def test_any_team_size(extension, name, threads):
    """The kernel's thread team splits each step's GEMM columns (in blocks of 16) and the batch
    rows; any number of threads, with uneven or empty blocks, gives the reference's values."""
    cfg = CONFIGS[name]
    leaves, masks = make_case(cfg, steps=5, batch=7, hidden=37, proj_size=19)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = run(lstm_direction, leaves, masks, cfg, collect=True)
    finally:
        torch.set_num_threads(before)
    assert_same(got, run(reference, leaves, masks, cfg, True), atol=1e-8, rtol=0)


@pytest.mark.parametrize("name", ["standard", "all", "all_uncoupled_no_bias"])
def test_gradcheck(extension, name):
    cfg = CONFIGS[name]
    leaves, masks = make_case(cfg, steps=4, batch=3, hidden=3, proj_size=2)
    masks.pop("valid", None)
    if cfg.get("lengths"):
        masks["valid"] = torch.tensor([[1, 1, 1], [1, 0, 1], [1, 0, 0], [1, 0, 0]], dtype=bool)
    inputs = direction_inputs(leaves, masks)
    assert gradcheck(
        FusedLSTMDirection.apply, (bool(cfg.get("coupled")), True, *inputs), eps=1e-6, atol=1e-7
    )


def direction_inputs(leaves, masks):
    """A case as the Function's named inputs (``xw`` already projected: no ``w_ih``)."""
    named = {"x": leaves["xw"], **leaves, **masks}
    return DirectionInputs(*(named.get(k) for k in DirectionInputs._fields))


@pytest.mark.parametrize("name", ["standard", "all", "all_uncoupled_no_bias"])
def test_gradgradcheck(extension, name):
    """Second derivatives through the kernel (its backward differentiates the reference
    recurrence on the saved inputs and masks when create_graph is set)."""
    cfg = CONFIGS[name]
    leaves, masks = make_case(cfg, steps=3, batch=2, hidden=2, proj_size=1)
    masks.pop("valid", None)
    if cfg.get("lengths"):
        masks["valid"] = torch.tensor([[1, 1], [1, 0], [1, 0]], dtype=bool)
    inputs = direction_inputs(leaves, masks)
    coupled = bool(cfg.get("coupled"))

    def f(*tensors):
        return FusedLSTMDirection.apply(coupled, False, *tensors)

    assert gradgradcheck(f, inputs, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("create_graph", [False, True])
def test_a_tensor_given_twice_gets_both_gradients(extension, create_graph):
    """h0 is c0 and b_hh is b_ih here: each place's gradient counts once, on both backward
    paths (the C++ one, and the differentiable one of create_graph)."""
    leaves, masks = make_case(CONFIGS["layer_norm"], proj_size=5)
    shared, bias = leaves["h0"], leaves["b_hh"]
    args = (leaves["xw"], shared, shared, leaves["w_hh"], bias)
    kwargs = dict(
        ln_ih_weight=leaves["ln_ih_weight"], b_ih=bias, ln_hh_weight=leaves["ln_hh_weight"]
    )
    out, (h_n, c_n), _ = lstm_direction(*args, **kwargs)
    loss = out.sum() + h_n.square().sum() + c_n.sum()
    got = torch.autograd.grad(loss, [shared, bias], create_graph=create_graph)
    out, (h_n, c_n), _ = reference(
        *args, ln_ih=(leaves["ln_ih_weight"], bias), ln_hh_weight=leaves["ln_hh_weight"]
    )
    want = torch.autograd.grad(out.sum() + h_n.square().sum() + c_n.sum(), [shared, bias])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_collected_gates_are_detached(extension):
    leaves, masks = make_case(CONFIGS["all"])
    args, kwargs = call_args(leaves, masks, CONFIGS["all"], collect=True)
    out, _, gates = lstm_direction(*args, **kwargs)
    assert out.requires_grad
    assert len(gates) == 5 and not any(g.requires_grad for g in gates)


def test_extension_builds_where_a_compiler_is_present():
    """Every other test here skips when the extension is unavailable, so a compile error would
    pass unnoticed: where a C++ compiler and ninja exist, it must build."""
    from torch.utils.cpp_extension import is_ninja_available

    if os.environ.get("LSTMKIT_NO_EXTENSION") == "1":
        pytest.skip("the C++ extension is disabled by LSTMKIT_NO_EXTENSION=1")
    if shutil.which("c++") is None or not is_ninja_available():
        pytest.skip("no C++ compiler or no ninja: the fallback is tested instead")
    assert extension_available(), "the fused LSTM extension failed to build: see the warning"


def test_disabled_by_environment(no_extension):
    assert not extension_available()
    leaves, masks = make_case(CONFIGS["standard"])
    args, kwargs = call_args(leaves, masks, CONFIGS["standard"], collect=False)
    with pytest.raises(RuntimeError, match="use the reference path"):
        lstm_direction(*args, **kwargs)


def test_build_failure_warns_once(monkeypatch, caplog):
    def failing_load(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.delenv("LSTMKIT_NO_EXTENSION", raising=False)
    monkeypatch.setattr(fused_lstm, "_module", fused_lstm._NOT_TRIED)
    monkeypatch.setattr("torch.utils.cpp_extension.load", failing_load)
    with caplog.at_level(logging.WARNING, logger=fused_lstm.__name__):
        assert not extension_available()
        assert not extension_available()
    warnings = [r for r in caplog.records if "could not be built" in r.getMessage()]
    assert len(warnings) == 1 and "no compiler here" in warnings[0].getMessage()


def test_extension_checks_shapes(extension):
    leaves, masks = make_case(CONFIGS["standard"])
    args, kwargs = call_args(leaves, masks, CONFIGS["standard"], collect=False)
    xw, h0, c0, w_hh, b_hh, _ = args
    with pytest.raises(RuntimeError, match="w_hh must be"):
        lstm_direction(xw, h0, c0, w_hh[:-1], b_hh, **kwargs)
    gh = w_hh.size(0)
    with pytest.raises(RuntimeError, match=r"ln_ih_weight must be \[20\]"):
        lstm_direction(xw, h0, c0, w_hh, b_hh, **{**kwargs, "ln_ih": (xw.new_ones(gh - 1), None)})


def test_kernel_normalises_the_input_product_in_its_own_pass(extension):
    """With ``ln_ih`` the kernel is handed the raw product and no layer_norm op runs."""
    leaves, masks = make_case(CONFIGS["layer_norm"])
    args, kwargs = call_args(leaves, masks, CONFIGS["layer_norm"], collect=False)
    with torch.autograd.profiler.profile() as prof:
        lstm_direction(*args, **kwargs)[0].sum().backward()
    names = {event.name for event in prof.function_events}
    assert "FusedLSTMDirection" in names
    assert not any("layer_norm" in name for name in names)


def _train_step(steps=64, batch=32, hidden=64):
    """A float32 case whose (T, N, 4H) buffers are 2 MiB: large enough for the cache."""
    gen = torch.Generator().manual_seed(0)
    xw = torch.randn(steps, batch, 4 * hidden, generator=gen, requires_grad=True)
    h0 = torch.zeros(batch, hidden)
    w_hh = torch.randn(4 * hidden, hidden, generator=gen) * 0.1
    out, _, _ = lstm_direction(xw, h0, h0, w_hh.requires_grad_(True))
    out.sum().backward()
    return out.detach(), xw.grad, w_hh.grad


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the cache maps memory on Linux")
def test_buffer_cache_reuses_freed_buffers(extension):
    fused_lstm.empty_cache()
    first = _train_step()
    kept = fused_lstm.cached_bytes()
    assert kept >= 2 * 2**20 and kept % 2**21 == 0  # whole 2 MiB mappings
    second = _train_step()  # served from the cache: same results, nothing more kept
    assert fused_lstm.cached_bytes() == kept
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    assert fused_lstm.empty_cache() >= 1
    assert fused_lstm.cached_bytes() == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the cache maps memory on Linux")
def test_buffer_cache_limit_from_environment(extension):
    script = (
        "from tests.kernels.test_fused_lstm import _train_step\n"
        "from lstmkit.kernels import fused_lstm\n"
        "_train_step(); print(fused_lstm.cached_bytes())\n"
    )
    env = {**os.environ, "LSTMKIT_BUFFER_CACHE_MB": "0"}
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=root, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "0"


def test_runs_under_saved_tensor_hooks(extension):
    """Saved-tensor hooks put Python objects in autograd's thread-local state; the kernel's
    threads must not need them (a copy would wait for the GIL the caller holds: a deadlock).
    Run in a subprocess so that a regression fails on the timeout instead of hanging."""
    script = (
        "import torch\n"
        "from tests.kernels.test_fused_lstm import _train_step\n"
        "with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):\n"
        "    _train_step()\n"
        "print('done')\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "done"


def test_inference_mode_with_a_projection(extension):
    """Under inference_mode the kernel's buffers are inference tensors: the thread team must
    be in inference mode too to write them (the projection's GEMM output, split by columns)."""
    from lstmkit.nn import LSTM

    torch.manual_seed(0)
    m = LSTM(16, 64, proj_size=32, peephole=True).eval()
    x = torch.randn(5, 3, 16)
    with torch.no_grad():
        want = m(x)
    with torch.inference_mode():
        got = m(x)
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=0)
    torch.testing.assert_close(got[1], want[1], rtol=0, atol=0)


def test_concurrent_calls_from_python_threads(extension):
    """The kernel releases the GIL: calls from several Python threads run at once (each with
    its own thread team, sharing the buffer cache) and give the single-threaded results."""
    from concurrent.futures import ThreadPoolExecutor

    want = _train_step()
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: _train_step(), range(6)))
    for got in results:  # the weight gradients' large GEMMs may split differently under load
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
