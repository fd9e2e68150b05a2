"""Which reduced precisions this machine can train in, probed once.

oneDNN's bfloat16 LSTM needs native bf16 support in the CPU: on an AVX2-only CPU it fails
with "could not create a primitive descriptor for the LSTM forward propagation primitive",
for ``torch.nn.LSTM`` and ``lstmkit.nn.LSTM`` alike. :func:`check_precision` turns that into
a clear error before any data is read or any step is run.

``auto`` (:func:`resolve_precision`) picks bf16 where the hardware multiplies in bf16
natively (a CPU with AVX512-BF16 or AMX, a GPU that reports bf16 support) and fp32
elsewhere: a CPU preset then takes bf16's speed where it exists (1.5x per step for the
character LM here, BENCHMARKS.md) and still runs on any other machine.
"""

from __future__ import annotations

import functools

import torch


@functools.cache
def bf16_supported(device_type: str = "cpu") -> bool:
    """Whether an LSTM trains (forward and backward) under bf16 autocast on this device."""
    from lstmkit.nn import LSTM

    try:
        for lstm in (torch.nn.LSTM(4, 4), LSTM(4, 4)):
            lstm.to(device_type)
            x = torch.randn(3, 2, 4, device=device_type, requires_grad=True)
            with torch.autocast(device_type, dtype=torch.bfloat16):
                out, _ = lstm(x)
            out.float().sum().backward()
    except RuntimeError:
        return False
    return True


def native_bf16(device_type: str = "cpu") -> bool:
    """Whether the hardware multiplies in bf16 natively (emulated bf16 is slower than fp32)."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so looked up
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16``: ``precision`` itself, or for ``auto`` bf16 where the device
    has native bf16 and an LSTM trains under bf16 autocast, else fp32."""
    if precision != "auto":
        return precision
    ok = native_bf16(device.type) and bf16_supported(device.type)
    return "bf16" if ok else "fp32"


def check_precision(precision: str, device: torch.device) -> None:
    """Raise a ValueError naming the setting when ``precision`` cannot run on ``device``."""
    if precision == "bf16" and not bf16_supported(device.type):
        raise ValueError(
            f"train.precision bf16: this {device.type.upper()} cannot run an LSTM under bf16 "
            "autocast (oneDNN has no bf16 LSTM without native bf16 support, e.g. on AVX2-only "
            "CPUs); use train.precision fp32"
        )
