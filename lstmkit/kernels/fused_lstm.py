"""One LSTM layer in one direction with the time loop fused in C++ (CPU), or in PyTorch.

:func:`lstm_direction` computes what :meth:`lstmkit.nn.LSTM._run_direction` computes after
the input projection: :func:`lstmkit.nn.functional.lstm_step` at every step, with recurrent
dropout, zoneout and variable lengths, in the return convention of
:meth:`lstmkit.nn.base.RecurrentBase._scan`. On the CPU in float32/float64 it runs
``lstm_cpu.cpp``: the whole loop and a hand-written backward through time in C++, built with
:func:`torch.utils.cpp_extension.load` at first use and cached in torch's extension directory.
Anywhere else (CUDA, bfloat16, mixed dtypes under autocast, inside ``torch.func`` transforms
or forward-mode AD), with ``LSTMKIT_NO_EXTENSION=1``, or when the extension cannot be built (a
warning is logged once), :func:`fusable` is false and :class:`lstmkit.nn.LSTM` runs its
reference path instead: the same equations differentiated by autograd. The kernel runs its
time loop on a team of threads and keeps its large freed buffers for reuse
(``kernels/cpu_runtime.h``; :func:`empty_cache`). Its gradients are differentiable again: a
backward with ``create_graph=True`` differentiates :func:`reference_direction` instead of the
C++ backward (see :class:`FusedLSTMDirection`).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch._C._functorch import is_functorch_wrapped_tensor, is_legacy_batchedtensor
from torch.autograd import forward_ad

logger = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("lstm_cpu.cpp")
_NOT_TRIED = object()
_module: ModuleType | None | object = _NOT_TRIED  # the built extension, None if it failed
_lock = threading.Lock()

Gates = tuple[Tensor, ...]


def _isa() -> tuple[str, list[str]]:
    """AVX2 and FMA where torch itself uses them (8 floats a vector instead of SSE2's 4), and a
    name suffix that keeps builds for different instruction sets apart in torch's cache."""
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        return "_avx2", ["-mavx2", "-mfma"]
    return "", []


def _needs_compiling(name: str) -> bool:
    """Whether torch's extension cache lacks a build of ``name`` newer than the sources."""
    try:
        from torch.utils.cpp_extension import _get_build_directory

        built = Path(_get_build_directory(name, verbose=False)) / f"{name}.so"
    except Exception:  # a private helper of torch's: if it moves, say nothing
        return False
    sources = [_SOURCE, _SOURCE.with_name("cpu_runtime.h")]
    return not built.is_file() or built.stat().st_mtime < max(p.stat().st_mtime for p in sources)


def _build() -> ModuleType | None:
    try:
        from torch.utils.cpp_extension import load

        suffix, isa_flags = _isa()
        name = "lstmkit_lstm_cpu" + suffix
        fresh = _needs_compiling(name)
        if fresh:  # a newcomer's first run would otherwise sit silent for a minute
            print(
                "lstmkit: building the fused LSTM kernel for this machine (first use only) ...",
                file=sys.stderr,
                flush=True,
            )
        start = time.monotonic()
        # OpenMP makes at::parallel_for parallel (the extension shares torch's libgomp); the
        # two -fno-* flags, also torch's own, let GCC vectorise the gate loops' selects
        module = load(
            name=name,
            sources=[str(_SOURCE)],
            extra_cflags=["-O3", "-fopenmp", "-fno-trapping-math", "-fno-math-errno", *isa_flags],
            extra_ldflags=["-fopenmp"],
        )
        if fresh:  # (a cached build of the same sources loads at once)
            print(
                f"lstmkit: fused LSTM kernel ready in {time.monotonic() - start:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        return module
    except Exception as error:  # no compiler, no ninja, a compile error: all fall back
        logger.warning(
            "lstmkit: the fused LSTM extension could not be built, using the PyTorch loop "
            "instead (%s: %s)",
            type(error).__name__,
            error,
        )
        return None


def _extension() -> ModuleType | None:
    """The compiled extension (built on first call), or ``None`` if disabled or unbuildable."""
    global _module
    if os.environ.get("LSTMKIT_NO_EXTENSION") == "1":
        return None
    with _lock:
        if _module is _NOT_TRIED:
            _module = _build()
    return _module


def empty_cache() -> int:
    """Unmap the large buffers the fused kernel keeps for reuse; returns how many there were.

    Like :func:`torch.cuda.empty_cache`: the kernel's (T, N, ...) buffers are kept when freed
    (up to ``LSTMKIT_BUFFER_CACHE_MB`` MiB, default 1024; ``0`` keeps none) because faulting
    fresh memory in costs as much as the kernel's pointwise work. Call this to return that
    memory to the system, e.g. after training.
    """
    ext = _module if isinstance(_module, ModuleType) else None
    return 0 if ext is None else ext.empty_cache()


def cached_bytes() -> int:
    """Bytes of freed buffers the fused kernel keeps for reuse (see :func:`empty_cache`)."""
    ext = _module if isinstance(_module, ModuleType) else None
    return 0 if ext is None else ext.cached_bytes()


def extension_available() -> bool:
    """Whether the C++ extension is enabled and builds (the first call may compile it)."""
    return _extension() is not None


def _absent(t: Tensor | None, like: Tensor) -> Tensor:
    """The extension's convention for an optional tensor: an empty tensor when absent."""
    return like.new_empty(0) if t is None else t


class DirectionInputs(NamedTuple):
    """Every tensor of one fused LSTM direction, by name (shapes as in :func:`lstm_direction`).

    The autograd Function receives these fields as its tensor arguments in this order and
    returns their gradients in the same order; the extension's own positional order is
    :data:`KERNEL_FIELDS`. Optional fields are ``None`` when absent.
    """

    x: Tensor  # the layer input (T, N, H_in), or the projected xw itself when w_ih is None
    h0: Tensor
    c0: Tensor
    w_ih: Tensor | None
    b_ih: Tensor | None
    w_hh: Tensor
    b_hh: Tensor | None = None
    w_hr: Tensor | None = None
    w_ci: Tensor | None = None
    w_cf: Tensor | None = None
    w_co: Tensor | None = None
    ln_ih_weight: Tensor | None = None
    ln_hh_weight: Tensor | None = None
    ln_c_weight: Tensor | None = None
    ln_c_bias: Tensor | None = None
    rec_mask: Tensor | None = None
    zoneout_h: Tensor | None = None
    zoneout_c: Tensor | None = None
    valid: Tensor | None = None


# The extension's positional arguments after (xw, h0, c0), and its gradients after
# (dxw, dh0, dc0): the one place where names meet positions (see lstm_cpu.cpp's header).
KERNEL_FIELDS = (
    "w_hh",
    "b_hh",
    "w_hr",
    "w_ci",
    "w_cf",
    "w_co",
    "ln_hh_weight",
    "ln_c_weight",
    "ln_c_bias",
    "ln_ih_weight",
    "b_ih",
    "rec_mask",
    "zoneout_h",
    "zoneout_c",
    "valid",
)
KERNEL_GRADS = KERNEL_FIELDS[: KERNEL_FIELDS.index("rec_mask")]  # the masks have none


def _kernel_args(inp: DirectionInputs, like: Tensor) -> list[Tensor]:
    """The extension's optional tensors; ``b_ih`` goes to it only with the input layer norm
    (otherwise it is added to the projection before the kernel runs)."""
    args = inp._replace(b_ih=inp.b_ih if inp.ln_ih_weight is not None else None)
    return [_absent(getattr(args, name), like) for name in KERNEL_FIELDS]


def _project(inp: DirectionInputs) -> Tensor:
    """What the kernel receives as ``xw``: ``x W_ih^T`` (+ ``b_ih`` without the input layer
    norm, which the kernel applies itself, bias included)."""
    bias = inp.b_ih if inp.ln_ih_weight is None else None
    if inp.w_ih is not None:
        return F.linear(inp.x, inp.w_ih, bias)
    return inp.x if bias is None else inp.x + bias


def needs_autograd_ops(*tensors: Tensor | None) -> bool:
    """Whether the C++ kernel cannot serve this call: inside a ``torch.func`` transform (vmap,
    grad, jacrev, ...), under forward-mode AD, or with batched (vmapped) tensors."""
    if torch._C._are_functorch_transforms_active() or forward_ad._current_level >= 0:
        return True
    return any(
        t is not None and (is_functorch_wrapped_tensor(t) or is_legacy_batchedtensor(t))
        for t in tensors
    )


def reference_direction(inp: DirectionInputs, coupled: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The fused kernel's computation in differentiable torch ops: ``out, h_n, c_n``.

    The loop of :meth:`lstmkit.nn.LSTM._run_direction` (``lstm_step`` at every step, recurrent
    dropout, zoneout, frozen state and zero output past each length), on the same tensors and
    the same saved masks as the kernel. The kernel's backward runs it where a gradient must
    itself be differentiable (``create_graph=True``) or batched (``is_grads_batched=True``).
    """
    from lstmkit.nn import functional as LF  # lstmkit.nn imports this module

    xw = _project(inp)
    if inp.ln_ih_weight is not None:  # the rest of input_projection(..., ln_weight)
        xw = LF.layer_norm(xw, inp.ln_ih_weight)
        xw = xw if inp.b_ih is None else xw + inp.b_ih
    peephole = None if inp.w_cf is None else (inp.w_ci, inp.w_cf, inp.w_co)
    ln_c = None if inp.ln_c_weight is None else (inp.ln_c_weight, inp.ln_c_bias)
    h, c = inp.h0, inp.c0
    outputs = []
    for t, xw_t in enumerate(xw.unbind(0)):
        h_in = h if inp.rec_mask is None else h * inp.rec_mask
        h_new, c_new, _ = LF.lstm_step(
            xw_t,
            (h_in, c),
            inp.w_hh,
            inp.b_hh,
            inp.w_hr,
            peephole=peephole,
            ln_hh_weight=inp.ln_hh_weight,
            ln_c=ln_c,
            coupled=coupled,
        )
        if inp.zoneout_h is not None:
            h_new = LF.zoneout(h_new, h, inp.zoneout_h[t])
        if inp.zoneout_c is not None:
            c_new = LF.zoneout(c_new, c, inp.zoneout_c[t])
        if inp.valid is not None:
            keep = inp.valid[t].unsqueeze(-1)
            h_new, c_new = torch.where(keep, h_new, h), torch.where(keep, c_new, c)
        h, c = h_new, c_new
        outputs.append(h)
    out = torch.stack(outputs)
    if inp.valid is not None:
        out = out.masked_fill(~inp.valid.unsqueeze(-1), 0.0)
    return out, h, c


class FusedLSTMDirection(torch.autograd.Function):
    """Autograd wrapper of the extension's ``forward`` and ``backward`` (see ``lstm_cpu.cpp``).

    ``apply(coupled, collect, *inputs)`` with ``inputs`` a :class:`DirectionInputs`; returns
    ``out, h_n, c_n`` and, with ``collect``, ``i, f, g, o, c`` (not differentiable).

    The backward is the C++ backward through time, except where the gradient it returns must
    itself be differentiable (``create_graph=True``: double backward, gradient penalties,
    Hessian-vector products) or is batched (``is_grads_batched=True``): there it recomputes
    the forward with :func:`reference_direction` on the saved inputs and masks and
    differentiates that, so every higher-order gradient is exact.
    """

    @staticmethod
    def forward(ctx, coupled: bool, collect: bool, *tensors: Tensor | None):
        inp = DirectionInputs(*tensors)
        ext = _extension()
        if ext is None:
            raise RuntimeError("the fused LSTM extension is unavailable: see extension_available()")
        xw = _project(inp)
        outputs, gates, saved = ext.forward(
            xw, inp.h0, inp.c0, *_kernel_args(inp, xw), coupled, collect
        )
        ctx.ext, ctx.coupled = ext, coupled  # the module that saved the buffers reads them
        ctx.save_for_backward(*inp, *saved)
        ctx.mark_non_differentiable(*gates)
        return (*outputs, *gates)

    @staticmethod
    def backward(ctx, dout, dh_n, dc_n, *_gates):
        stored = ctx.saved_tensors
        inp = DirectionInputs(*stored[: len(DirectionInputs._fields)])
        saved = stored[len(DirectionInputs._fields) :]
        needs = DirectionInputs(*ctx.needs_input_grad[2:])
        grad_outputs = (dout, dh_n, dc_n)
        if torch.is_grad_enabled() or needs_autograd_ops(*grad_outputs):
            grads = _differentiable_backward(inp, needs, grad_outputs, ctx.coupled)
        else:
            grads = _kernel_backward(ctx.ext, inp, needs, saved, grad_outputs, ctx.coupled)
        return (None, None, *grads)


def _kernel_backward(ext, inp, needs, saved, grad_outputs, coupled) -> DirectionInputs:
    """The C++ backward through time, then the input projection's backward."""
    like = inp.h0
    dxw, dh0, dc0, *rest = ext.backward(
        *grad_outputs, [_absent(t, like) for t in saved], *_kernel_args(inp, like), coupled
    )
    grads = {name: g for name, g in zip(KERNEL_GRADS, rest) if getattr(inp, name) is not None}
    if inp.b_ih is not None and inp.ln_ih_weight is None:  # added before the kernel
        grads["b_ih"] = dxw.sum((0, 1))
    if inp.w_ih is None:
        dx = dxw
    else:
        dx = torch.matmul(dxw, inp.w_ih) if needs.x else None
        if needs.w_ih:
            grads["w_ih"] = torch.mm(dxw.flatten(0, 1).t(), inp.x.flatten(0, 1))
    grads = {name: g for name, g in grads.items() if getattr(needs, name)}
    return DirectionInputs(dx, dh0, dc0, **{**dict.fromkeys(DirectionInputs._fields[3:]), **grads})


def _differentiable_backward(inp, needs, grad_outputs, coupled) -> DirectionInputs:
    """The gradients by autograd through :func:`reference_direction`, differentiable when
    grad mode is on (``create_graph=True``): the saved inputs are the forward's own tensors,
    attached to their graph, so higher-order gradients reach every one of them."""
    create_graph = torch.is_grad_enabled()
    wanted = [k for k, (t, need) in enumerate(zip(inp, needs)) if need and t is not None]
    grads: list[Tensor | None] = [None] * len(inp)
    if not wanted:
        return DirectionInputs(*grads)
    with torch.enable_grad():
        # one view per argument: a tensor given in two places (h0 = c0, say) gets each place's
        # own gradient, as the C++ backward returns them, not its total twice
        slots = [t.view_as(t) if k in wanted else t for k, t in enumerate(inp)]
        outputs = reference_direction(DirectionInputs(*slots), coupled)
        found = torch.autograd.grad(
            outputs,
            [slots[k] for k in wanted],
            grad_outputs,
            create_graph=create_graph,
            allow_unused=True,
        )
    for k, g in zip(wanted, found):
        grads[k] = g
    return DirectionInputs(*grads)


def lstm_direction(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None = None,
    w_hr: Tensor | None = None,
    *,
    w_ih: Tensor | None = None,
    b_ih: Tensor | None = None,
    peephole: tuple[Tensor | None, Tensor, Tensor] | None = None,
    ln_ih_weight: Tensor | None = None,
    ln_hh_weight: Tensor | None = None,
    ln_c: tuple[Tensor, Tensor | None] | None = None,
    ln_ih: tuple[Tensor, Tensor | None] | None = None,
    coupled: bool = False,
    rec_mask: Tensor | None = None,
    zoneout_h: Tensor | None = None,
    zoneout_c: Tensor | None = None,
    valid: Tensor | None = None,
    collect: bool = False,
) -> tuple[Tensor, tuple[Tensor, Tensor], Gates]:
    """Run one LSTM layer in one direction over the sequence ``x``.

    Args:
        x: the layer input (T, N, H_in) when ``w_ih`` is given: the kernel's Function then
            computes ``input_projection(x, w_ih, b_ih, ln_ih_weight)`` itself (and keeps only
            ``x`` and ``w_ih`` for its backward, as the projection alone would). Without
            ``w_ih``, ``x`` is the projected sequence ``xw`` (T, N, G*H) (with
            ``ln_ih_weight``: the raw product ``x W_ih^T``).
        h0, c0: initial states (N, P) and (N, H); P = proj_size or H.
        w_hh: (G*H, P), already multiplied by the weight-drop mask if any.
        b_hh: (G*H), added after the recurrent layer norm. w_hr: projection (P, H).
        w_ih, b_ih: input weights (G*H, H_in) and bias (G*H).
        peephole, ln_hh_weight, ln_c, coupled: as in :func:`lstmkit.nn.functional.lstm_step`.
        ln_ih_weight: gain of the input layer norm: ``LN(x W_ih^T) * ln_ih_weight + b_ih``,
            computed in the kernel's pass over each row.
        ln_ih: ``(ln_ih_weight, b_ih)``, the older spelling of those two arguments.
        rec_mask: recurrent dropout (N, P): ``h_{t-1} * rec_mask`` enters ``W_hh`` (only there).
        zoneout_h, zoneout_c: bool (T, N, P) and (T, N, H); true keeps the previous value.
        valid: bool (T, N), false past a sequence's length: the state is frozen there and the
            output and gates are zero.
        collect: also return the gates.

    Returns:
        ``out`` (T, N, P), ``(h_n, c_n)`` and, with ``collect``, the detached per-step
        ``(i, f, g, o, c)`` (the fields of :class:`lstmkit.nn.GateActivations`), each (T, N, H)
        (``c`` is the cell state after zoneout); else ``()``.
    """
    if ln_ih is not None:
        if ln_ih_weight is not None or b_ih is not None:
            raise ValueError("give ln_ih or (ln_ih_weight, b_ih), not both")
        ln_ih_weight, b_ih = ln_ih
    w_ci, w_cf, w_co = (None, None, None) if peephole is None else peephole
    ln_c_weight, ln_c_bias = (None, None) if ln_c is None else ln_c
    inp = DirectionInputs(
        x,
        h0,
        c0,
        w_ih,
        b_ih,
        w_hh,
        b_hh,
        w_hr,
        w_ci,
        w_cf,
        w_co,
        ln_ih_weight,
        ln_hh_weight,
        ln_c_weight,
        ln_c_bias,
        rec_mask,
        zoneout_h,
        zoneout_c,
        valid,
    )
    if not fusable(*(t for t in inp if t is None or t.dtype != torch.bool)):
        raise RuntimeError(
            "the fused LSTM kernel needs CPU float32/float64 tensors of one dtype and the built "
            "extension (see extension_available()), outside torch.func transforms and "
            "forward-mode AD; use the reference path"
        )
    out, h_n, c_n, *gates = FusedLSTMDirection.apply(coupled, collect, *inp)
    return out, (h_n, c_n), tuple(gates)


def fusable(xw: Tensor, *tensors: Tensor | None) -> bool:
    """Whether :func:`lstm_direction` can run: CPU, float32/float64, one dtype throughout, no
    autocast (it would change the input projection's dtype), no ``torch.func`` transform or
    forward-mode AD (the kernel's raw pointers serve neither), and the extension available (the
    first call may build it)."""
    if needs_autograd_ops(xw, *tensors):
        return False
    if xw.device.type != "cpu" or xw.dtype not in (torch.float32, torch.float64):
        return False
    if torch.is_autocast_enabled("cpu"):
        return False
    if any(t is not None and (t.dtype != xw.dtype or t.device != xw.device) for t in tensors):
        return False
    return _extension() is not None
