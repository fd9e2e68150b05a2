"""One LSTM layer in one direction with the time loop fused in C++ (CPU), or in PyTorch.

:func:`lstm_direction` computes what :meth:`lstmkit.nn.LSTM._run_direction` computes after
the input projection: :func:`lstmkit.nn.functional.lstm_step` at every step, with recurrent
dropout, zoneout and variable lengths, in the return convention of
:meth:`lstmkit.nn.base.RecurrentBase._scan`. On the CPU in float32/float64 it runs
``lstm_cpu.cpp``: the whole loop and a hand-written backward through time in C++, built with
:func:`torch.utils.cpp_extension.load` at first use and cached in torch's extension directory.
Anywhere else (CUDA, bfloat16, mixed dtypes under autocast), with
``LSTMKIT_NO_EXTENSION=1``, or when the extension cannot be built (a warning is logged once),
:func:`fusable` is false and :class:`lstmkit.nn.LSTM` runs its reference path instead: the
same equations differentiated by autograd. The kernel runs its time loop on a team of
threads and keeps its large freed buffers for reuse (``kernels/cpu_runtime.h``;
:func:`empty_cache`).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

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


def _build() -> ModuleType | None:
    try:
        from torch.utils.cpp_extension import load

        suffix, isa_flags = _isa()
        # OpenMP makes at::parallel_for parallel (the extension shares torch's libgomp); the
        # two -fno-* flags, also torch's own, let GCC vectorise the gate loops' selects
        return load(
            name="lstmkit_lstm_cpu" + suffix,
            sources=[str(_SOURCE)],
            extra_cflags=["-O3", "-fopenmp", "-fno-trapping-math", "-fno-math-errno", *isa_flags],
            extra_ldflags=["-fopenmp"],
        )
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


class FusedLSTMDirection(torch.autograd.Function):
    """Autograd wrapper of the extension's ``forward`` and ``backward`` (see ``lstm_cpu.cpp``).

    Inputs in order: ``xw, h0, c0, w_hh, b_hh, w_hr, w_ci, w_cf, w_co, ln_hh_weight,
    ln_c_weight, ln_c_bias, ln_ih_weight, b_ih, rec_mask, zoneout_h, zoneout_c, valid, coupled,
    collect`` (shapes as in :func:`lstm_direction`; optional ones ``None``). Returns ``out, h_n,
    c_n`` and, with ``collect``, ``f, i, o, g, c``; those five are not differentiable. Not twice
    differentiable.
    """

    @staticmethod
    def forward(ctx, xw, h0, c0, w_hh, *rest):
        *weights_and_masks, coupled, collect = rest
        params = (w_hh, *weights_and_masks)  # w_hh ... valid, as the extension orders them
        ext = _extension()
        if ext is None:
            raise RuntimeError("the fused LSTM extension is unavailable: see extension_available()")
        args = [_absent(t, xw) for t in params]
        outputs, gates, saved = ext.forward(xw, h0, c0, *args, coupled, collect)
        ctx.ext, ctx.coupled = ext, coupled  # the module that saved the buffers reads them
        ctx.save_for_backward(*params, *saved)
        ctx.mark_non_differentiable(*gates)
        return (*outputs, *gates)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, dh_n, dc_n, *_gates):
        stored = ctx.saved_tensors
        params, saved = stored[:15], stored[15:]
        like = stored[0]
        grads = ctx.ext.backward(
            dout,
            dh_n,
            dc_n,
            [_absent(t, like) for t in saved],
            *(_absent(t, like) for t in params),
            ctx.coupled,
        )
        # xw, h0, c0, then w_hh ... b_ih; no gradients for the masks and flags
        return (*grads, None, None, None, None, None, None)


def lstm_direction(
    xw: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None = None,
    w_hr: Tensor | None = None,
    *,
    peephole: tuple[Tensor | None, Tensor, Tensor] | None = None,
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
    """Run one LSTM layer in one direction over ``xw``, the projected input sequence.

    Args:
        xw: ``input_projection(x, w_ih, b_ih)`` for all steps, (T, N, G*H); with ``ln_ih``
            the raw product ``x W_ih^T`` instead.
        h0, c0: initial states (N, P) and (N, H); P = proj_size or H.
        w_hh: (G*H, P), already multiplied by the weight-drop mask if any.
        b_hh: (G*H), added after the recurrent layer norm. w_hr: projection (P, H).
        peephole, ln_hh_weight, ln_c, coupled: as in :func:`lstmkit.nn.functional.lstm_step`.
        ln_ih: ``(ln_ih_weight, b_ih)``: the rest of ``input_projection(x, w_ih, b_ih,
            ln_ih_weight)``, ``LN(xw) * ln_ih_weight + b_ih``, computed in the kernel's pass
            over each row (``b_ih`` may be ``None``).
        rec_mask: recurrent dropout (N, P): ``h_{t-1} * rec_mask`` enters ``W_hh`` (only there).
        zoneout_h, zoneout_c: bool (T, N, P) and (T, N, H); true keeps the previous value.
        valid: bool (T, N), false past a sequence's length: the state is frozen there and the
            output and gates are zero.
        collect: also return the gates.

    Returns:
        ``out`` (T, N, P), ``(h_n, c_n)`` and, with ``collect``, the detached per-step
        ``(f, i, o, g, c)``, each (T, N, H) (``c`` is the cell state after zoneout); else ``()``.
    """
    w_ci, w_cf, w_co = (None, None, None) if peephole is None else peephole
    ln_c_weight, ln_c_bias = (None, None) if ln_c is None else ln_c
    ln_ih_weight, b_ih = (None, None) if ln_ih is None else ln_ih
    params = (w_hh, b_hh, w_hr, w_ci, w_cf, w_co, ln_hh_weight, ln_c_weight, ln_c_bias)
    params += (ln_ih_weight, b_ih, rec_mask)
    if not fusable(xw, h0, c0, *params):
        raise RuntimeError(
            "the fused LSTM kernel needs CPU float32/float64 tensors of one dtype and the built "
            "extension (see extension_available()); use the reference path"
        )
    out, h_n, c_n, *gates = FusedLSTMDirection.apply(
        xw, h0, c0, *params, zoneout_h, zoneout_c, valid, coupled, collect
    )
    return out, (h_n, c_n), tuple(gates)


def fusable(xw: Tensor, *tensors: Tensor | None) -> bool:
    """Whether :func:`lstm_direction` can run: CPU, float32/float64, one dtype throughout, no
    autocast (it would change the input projection's dtype), and the extension available (the
    first call may build it)."""
    if xw.device.type != "cpu" or xw.dtype not in (torch.float32, torch.float64):
        return False
    if torch.is_autocast_enabled("cpu"):
        return False
    if any(t is not None and (t.dtype != xw.dtype or t.device != xw.device) for t in tensors):
        return False
    return _extension() is not None
