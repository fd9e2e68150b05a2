"""Speed and memory of LSTM layers: lstmkit's paths vs torch.nn.LSTM vs a naive loop.

Run from the repository root::

    python -m benchmarks.layers            # every size and configuration
    python -m benchmarks.layers --quick    # fewer repeats, the two smaller sizes

All numbers come from ONE process, so the ratios compare like with like. First a square float32
GEMM gives the machine's practical peak; then, for each size (T, B, I, H) and configuration,
forward-only and forward+backward are timed (median of repeats after warm-up, more repeats
where a step is short; the repeats of all implementations of a size are interleaved
round-robin, so that a shared machine's slow phases hit them alike) for ``torch.nn.LSTM`` (the
baseline: the standard configuration of the same size), ``lstmkit`` with
``implementation="auto"`` (its fast path: torch's kernel for the standard configurations,
lstmkit's fused kernel for the variants), lstmkit's fused kernel forced on the standard
configuration, the reference path, and a naive per-step autograd loop (the tutorial LSTM). The
"variable lengths (packed)" configuration feeds every layer the same PackedSequence (lengths
uniform in [T/2, T]); its baseline is torch.nn.LSTM on that input and its FLOPs count only the
steps inside the sequences. Reported: ms, the ratio to torch.nn.LSTM, GFLOP/s of the gate GEMMs
(forward 2·T·B·4H·(I+H) per layer and direction, backward twice that), the fraction of the GEMM
peak, and the memory autograd saves for backward (the activations that dominate training's peak
memory; distinct storages, in MB).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from lstmkit.nn import LSTM

SIZES = [(200, 32, 128, 256), (100, 64, 256, 512), (50, 8, 64, 128), (500, 16, 64, 64)]
QUICK_SIZES = [(50, 8, 64, 128), (500, 16, 64, 64)]
CONFIGS = {
    "standard": {},
    "bidirectional 2-layer": {"num_layers": 2, "bidirectional": True},
    "layer_norm": {"layer_norm": True},
    "peephole": {"peephole": True},
    "zoneout + recurrent_dropout": {"zoneout": 0.1, "recurrent_dropout": 0.25},
    "weight_drop": {"weight_drop": 0.5},
    "variable lengths (packed)": {"packed": True},
}
STRUCTURE = ("num_layers", "bidirectional")


class NaiveLSTM(nn.Module):
    """The per-step autograd loop most tutorials write (standard equations, one layer)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(input_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.size(1), self.cell.hidden_size)
        c = torch.zeros_like(h)
        outputs = []
        for t in range(x.size(0)):
            gates = x[t] @ self.cell.weight_ih.T + self.cell.bias_ih
            gates = gates + h @ self.cell.weight_hh.T + self.cell.bias_hh
            i, f, g, o = gates.chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs)


@dataclass
class Timing:
    forward_ms: float
    train_ms: float
    saved_mb: float


def gemm_peak(n: int = 1024, repeats: int = 10) -> float:
    """GFLOP/s of an n x n float32 matrix product (median of repeats)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def _interleaved_medians(
    fns: dict[str, Callable[[], None]], warmup: int, repeats: int
) -> dict[str, float]:
    """Median ms of each function, timed round-robin: repeat r of every function runs before
    repeat r + 1 of any, so that a shared VM's slow phases hit all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(ts) for name, ts in times.items()}


def _saved_mb(module: nn.Module, x: torch.Tensor) -> float:
    """MB of distinct storages autograd keeps for the backward pass of one forward."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _output(module, x).sum()
    return sum(storages.values()) / 2**20


def _output(module: nn.Module, x: torch.Tensor | PackedSequence) -> torch.Tensor:
    out = module(x)
    out = out[0] if isinstance(out, tuple) else out
    return out.data if isinstance(out, PackedSequence) else out


def packed_batch(x: torch.Tensor) -> PackedSequence:
    """``x`` (T, B, I) as a packed batch of lengths uniform in [T/2, T], the longest T."""
    T, B = x.size(0), x.size(1)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=torch.Generator().manual_seed(0))
    lengths[0] = T
    return pack_padded_sequence(x, lengths, enforce_sorted=False)


def measure(
    cases: dict[str, tuple[nn.Module, torch.Tensor | PackedSequence]], warmup: int, repeats: int
) -> dict[str, Timing]:
    """Forward-only and training times (interleaved across ``cases``) and saved memory."""
    forward_fns, train_fns = {}, {}
    for name, (module, x) in cases.items():
        module.train()

        def forward(module=module, x=x) -> None:
            with torch.no_grad():
                _output(module, x)

        def train(module=module, x=x) -> None:
            module.zero_grad(set_to_none=True)
            _output(module, x).sum().backward()

        forward_fns[name], train_fns[name] = forward, train
    forward_ms = _interleaved_medians(forward_fns, warmup, repeats)
    train_ms = _interleaved_medians(train_fns, warmup, repeats)
    return {
        name: Timing(forward_ms[name], train_ms[name], _saved_mb(module, x))
        for name, (module, x) in cases.items()
    }


def gate_flops(T: int, B: int, H_in: int, H: int, layers: int = 1, directions: int = 1) -> float:
    """Forward FLOPs of the gate GEMMs: 2·T·B·4H·(in + H) per layer and direction."""
    total, size_in = 0.0, H_in
    for _ in range(layers):
        total += directions * 2 * T * B * 4 * H * (size_in + H)
        size_in = H * directions
    return total


def _repeats_for(cases: dict, warmup: int, repeats: int) -> int:
    """``repeats``, or more where a training step is short: about 1 s of the baseline's steps,
    at most 10x (the median of 5 steps of about 20 ms moved by 21% between two runs here)."""
    module, x = next(iter(cases.values()))  # the first configuration's torch.nn.LSTM

    def step() -> None:
        _output(module, x).sum().backward()

    step_ms = _interleaved_medians({"baseline": step}, warmup, 1)["baseline"]
    return max(repeats, min(10 * repeats, int(1000 / max(step_ms, 1e-3))))


def run(sizes, warmup: int, repeats: int, configs: list[str] | None = None) -> dict:
    torch.manual_seed(0)
    peak = gemm_peak()
    rows = []
    for T, B, H_in, H in sizes:
        x = torch.randn(T, B, H_in)
        cases: dict[str, tuple[nn.Module, torch.Tensor | PackedSequence]] = {}
        plan = []  # (configuration, its baseline's case, its implementations' cases, FLOPs)
        for name, kwargs in CONFIGS.items():
            if configs is not None and name not in configs:
                continue
            packed = kwargs.get("packed", False)
            kwargs = {k: v for k, v in kwargs.items() if k != "packed"}
            x_in = packed_batch(x) if packed else x
            structure = {k: v for k, v in kwargs.items() if k in STRUCTURE}
            layers, directions = (
                structure.get("num_layers", 1),
                1 + structure.get("bidirectional", 0),
            )
            base = f"torch.nn.LSTM {sorted(structure.items())} packed={packed}"
            if base not in cases:
                cases[base] = (nn.LSTM(H_in, H, **structure), x_in)
            flops = gate_flops(T, B, H_in, H, layers, directions)
            if packed:  # only the steps inside each sequence count
                flops *= x_in.batch_sizes.sum().item() / (T * B)
            impls = {
                "lstmkit auto": (LSTM(H_in, H, **kwargs), x_in),
                "lstmkit reference": (LSTM(H_in, H, implementation="reference", **kwargs), x_in),
            }
            if not kwargs and not packed:  # lstmkit's own kernel on the standard configuration
                impls["lstmkit fused"] = (LSTM(H_in, H, implementation="fused"), x)
            if not structure and not packed:
                impls["naive loop"] = (NaiveLSTM(H_in, H), x)
            for impl, case in impls.items():
                cases[f"{name}: {impl}"] = case
            plan.append((name, base, ["torch.nn.LSTM", *impls], flops))
        size_repeats = _repeats_for(cases, warmup, repeats)
        timings = measure(cases, warmup, size_repeats)
        for name, base_case, impls, flops in plan:
            base = timings[base_case]
            for impl in impls:
                timing = base if impl == "torch.nn.LSTM" else timings[f"{name}: {impl}"]
                rows.append(
                    {
                        "T": T,
                        "B": B,
                        "I": H_in,
                        "H": H,
                        "config": name,
                        "impl": impl,
                        "forward_ms": timing.forward_ms,
                        "train_ms": timing.train_ms,
                        "forward_ratio": timing.forward_ms / base.forward_ms,
                        "train_ratio": timing.train_ms / base.train_ms,
                        "train_gflops": 3 * flops / timing.train_ms / 1e6,
                        "train_peak_fraction": 3 * flops / timing.train_ms / 1e6 / peak,
                        "saved_mb": timing.saved_mb,
                        "memory_ratio": timing.saved_mb / base.saved_mb,
                        "repeats": size_repeats,
                    }
                )
                _print_row(rows[-1])
    return {"gemm_peak_gflops": peak, "rows": rows}


def _print_row(r: dict) -> None:
    print(
        f"{r['T']:>4} {r['B']:>3} {r['I']:>4} {r['H']:>4}  {r['config']:<28} {r['impl']:<18} "
        f"fwd {r['forward_ms']:8.1f} ms ({r['forward_ratio']:5.2f}x)  "
        f"train {r['train_ms']:8.1f} ms ({r['train_ratio']:5.2f}x)  "
        f"{r['train_gflops']:6.1f} GFLOP/s ({r['train_peak_fraction']:4.0%})  "
        f"saved {r['saved_mb']:7.1f} MB ({r['memory_ratio']:4.2f}x)",
        flush=True,
    )


def markdown(result: dict) -> str:
    lines = [
        f"GEMM peak (1024² float32 matmul): {result['gemm_peak_gflops']:.1f} GFLOP/s",
        "",
        "| T | B | I | H | config | implementation | forward ms | ×torch | train ms | ×torch "
        "| train GFLOP/s | % of peak | saved MB | ×torch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['T']} | {r['B']} | {r['I']} | {r['H']} | {r['config']} | {r['impl']} "
            f"| {r['forward_ms']:.1f} | {r['forward_ratio']:.2f} | {r['train_ms']:.1f} "
            f"| {r['train_ratio']:.2f} | {r['train_gflops']:.1f} | {r['train_peak_fraction']:.0%} "
            f"| {r['saved_mb']:.1f} | {r['memory_ratio']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two sizes, fewer repeats")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="also write a Markdown table")
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=list(CONFIGS),
        metavar="NAME",
        help=f"only these configurations (torch's baseline is always timed): {', '.join(CONFIGS)}",
    )
    args = parser.parse_args(argv)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}",
        flush=True,
    )
    sizes, warmup, repeats = (QUICK_SIZES, 1, 3) if args.quick else (SIZES, 2, 5)
    result = run(sizes, warmup, repeats, args.configs)
    print(f"GEMM peak: {result['gemm_peak_gflops']:.1f} GFLOP/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(result) + "\n")


if __name__ == "__main__":
    main()
