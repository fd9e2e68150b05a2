"""onnxruntime in place of the eager model, int8 dynamic quantization, and the parity check.

A task that exports declares an :class:`OnnxExport` (its package's ``export`` module): the
graphs of its model, random feeds for them, the eager model's answers to those feeds, the
``nn.Module`` that runs the graphs with the eager model's call signature (so the task's
Predictor, the server and decoding run an exported graph unchanged), and the headline
scores compared between eager and graph. Everything here is generic over that declaration.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class OnnxExport:
    """How a task's model is exported and run in onnxruntime.

    Args:
        graphs: ``graphs(model) -> {part: onnx.ModelProto}`` of the model in eval mode;
            part ``""`` for a one-graph model, else named parts (``encoder``, ``decoder``).
        random_feeds: ``random_feeds(model, part, batch, steps, seed) -> feeds`` for one
            part's graph: distinct lengths, random states where the graph takes one.
        expected_outputs: ``expected_outputs(model, part, feeds) -> {output name: array}``:
            the eager model's answers, compared with onnxruntime's by :func:`max_difference`.
        runtime: ``runtime(path, threads, eager) -> nn.Module`` running the graphs of the
            export named ``path`` with the eager model's call signature.
        scores: ``scores(predictor) -> {name: number}``: the task's headline numbers on its
            validation data with the predictor's model (eager or a graph).
        float_nodes: ``float_nodes(graph) -> node names`` that int8 quantization leaves in
            float (parts whose precision the task's score needs); ``None``: none.
    """

    graphs: Callable[[nn.Module], dict[str, Any]]
    random_feeds: Callable[[nn.Module, str, int, int, int], Feeds]
    expected_outputs: Callable[[nn.Module, str, Feeds], Feeds]
    runtime: Callable[[Any, int, nn.Module], nn.Module]
    scores: Callable[[Any], dict[str, float]]
    float_nodes: Callable[[Any], list[str]] | None = None


def session(path: str | Path, threads: int = 0) -> Any:
    """An onnxruntime CPU session (``threads`` intra-op threads; 0: onnxruntime's choice)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # idle worker threads sleep instead of spinning: on a few shared cores a spinning pool
    # takes the CPU the event loop and the other requests need
    if os.environ.get("LSTMKIT_ORT_SPIN", "0") != "1":
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OrtModule(nn.Module):
    """A module whose work onnxruntime does; its one (empty) parameter answers code that asks
    for the model's device: the CPU."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()), requires_grad=False)


def part_path(out: str | Path, part: str) -> Path:
    """Where graph ``part`` of an export named ``out`` lives: ``out`` itself for a one-graph
    task, ``model.encoder.onnx`` for part ``encoder`` of ``model.onnx``."""
    out = Path(out)
    return out if not part else out.with_name(f"{out.stem}.{part}{out.suffix or '.onnx'}")


def quantize_int8(source: str | Path, out: str | Path, keep_float: list[str] = ()) -> Path:
    """Dynamic int8 quantization of ``source`` (weights of LSTM and MatMul ops and embedding
    tables read by Gather stored as int8, activations quantized on the fly) written to
    ``out``; the nodes named in ``keep_float`` stay in float."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process applies to static quantization
    try:
        quantize_dynamic(
            str(source),
            str(out),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["LSTM", "MatMul", "Gather"],
            nodes_to_exclude=list(keep_float),
        )
    finally:
        root.setLevel(level)
    return Path(out)


def max_difference(
    spec: OnnxExport, model: nn.Module, session: Any, part: str = "", seeds: int = 3
) -> float:
    """The largest absolute difference between the eager model's outputs and ``session``'s
    (an onnxruntime session of graph ``part``) over ``seeds`` random feeds, every output
    the task names compared."""
    worst = 0.0
    for seed in range(seeds):
        feeds = spec.random_feeds(model, part, 4, 9 + seed, seed)
        expected = spec.expected_outputs(model, part, feeds)
        got = session.run(list(expected), feeds)
        for a, b in zip(expected.values(), got):
            if a.shape != b.shape:
                raise AssertionError(f"shape {b.shape} from onnxruntime, {a.shape} eager")
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            # -inf == -inf (log-probabilities of never-emitted tokens) differ by 0
            diff[np.isinf(a) & (a == b)] = 0
            worst = max(worst, float(diff.max()))
    return worst


def write_graphs(
    spec: OnnxExport, model: nn.Module, out: str | Path, quantize: str | None = None
) -> dict[str, Path]:
    """Write the graphs of ``model`` (eval mode) as the export named ``out`` (one file per
    part, :func:`part_path`), int8-quantized with ``quantize="int8"``; the files written, by
    part."""
    import tempfile

    import onnx

    if quantize not in (None, "int8"):
        raise ValueError(f"--quantize must be int8, got {quantize!r}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    files = {}
    for part, graph in spec.graphs(model.eval()).items():
        path = part_path(out, part)
        if quantize == "int8":
            keep = spec.float_nodes(graph) if spec.float_nodes is not None else []
            with tempfile.TemporaryDirectory() as tmp:
                fp32 = Path(tmp) / "fp32.onnx"
                onnx.save(graph, str(fp32))
                quantize_int8(fp32, path, keep)
        else:
            onnx.save(graph, str(path))
        files[part] = path
    return files
