"""The forecaster in ONNX: its graph, random feeds, the eager model's answers to them, and
the onnxruntime module that runs the graph in the Predictor's place.

Graph: ``z`` (N, L) the normalised window, ``phase`` (N,) int64 -> ``quantiles`` (N, h, Q)
sorted, and ``members`` (M, N, h, Q) each ensemble member's unsorted output (what training
and validation scoring read). The ES-RNN hybrid's smoothing, which reads the raw history of
a known series, stays outside the graph, as it stays outside :meth:`Forecaster.forward`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from lstmkit.export.graph import F32, I64, Graph, info, ints, linear
from lstmkit.export.layers import lstm_layers
from lstmkit.export.runtime import OnnxExport, OrtModule, session


def forecast_graph(model: nn.Module) -> onnx.ModelProto:
    """The graph of a :class:`~lstmkit.tasks.forecast.model.Forecaster` (module docstring)."""
    g = Graph()
    steps, chunk, season = model.steps, model.chunk, model.season
    chunks = g.op("Reshape", ["z", ints(g, "shape", [0, steps, chunk])])  # (N, T, chunk)
    if model.config.position:  # the phase of each chunk's first value, as sin and cos
        offsets = g.const("offsets", (chunk * np.arange(steps))[None].astype(np.int64))
        starts = g.op("Add", [g.op("Unsqueeze", ["phase", ints(g, "axes", [1])]), offsets])
        where = g.op(
            "Cast", [g.op("Mod", [starts, g.const("season", np.array(season, np.int64))])], to=F32
        )
        angle = g.op(
            "Div",
            [
                g.op("Mul", [where, g.const("two_pi", np.array(2 * math.pi, np.float32))]),
                g.const("season_f", np.array(season, np.float32)),
            ],
        )
        axes = ints(g, "axes", [2])
        sin = g.op("Unsqueeze", [g.op("Sin", [angle]), axes])
        cos = g.op("Unsqueeze", [g.op("Cos", [angle]), axes])
        chunks = g.op("Concat", [chunks, sin, cos], axis=2)
    x = g.op("Transpose", [chunks], perm=[1, 0, 2])  # (T, N, F)
    horizon, q = model.horizon, len(model.config.quantiles)
    outs = []
    for member in model.members:
        _, finals = lstm_layers(g, member.rnn, x, None)
        last = g.op("Squeeze", [finals[-1][0], ints(g, "axes", [0])])  # out[-1]: (N, H)
        y = linear(g, last, member.head)
        if member.skip is not None:
            y = g.op("Add", [y, linear(g, "z", member.skip)])
        y = g.op("Reshape", [y, ints(g, "shape", [0, horizon, q])])
        outs.append(g.op("Unsqueeze", [y, ints(g, "axes", [0])]))
    g.op("Concat", outs, ["members"], axis=0)
    mean = g.op("ReduceMean", ["members"], axes=[0], keepdims=0)
    # quantiles never cross: sorted ascending, as Forecaster.forward sorts them
    g.op(
        "TopK",
        [mean, ints(g, "k", [q])],
        ["quantiles", g.fresh("order")],
        axis=-1,
        largest=0,
        sorted=1,
    )
    return g.model(
        "lstmkit-forecast",
        [info("z", F32, ["N", model.input_size]), info("phase", I64, ["N"])],
        [
            info("quantiles", F32, ["N", horizon, q]),
            info("members", F32, [len(model.members), "N", horizon, q]),
        ],
    )


def graphs(model: nn.Module) -> dict[str, onnx.ModelProto]:
    return {"": forecast_graph(model)}


def random_feeds(
    model: nn.Module, part: str, batch: int, steps: int, seed: int
) -> dict[str, np.ndarray]:
    """A random normalised window and phase per series (``steps`` unused: the window's
    length is the model's)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1, (batch, model.input_size)).astype(np.float32)
    return {"z": z, "phase": rng.integers(0, model.season, batch).astype(np.int64)}


@torch.no_grad()
def expected_outputs(
    model: nn.Module, part: str, feeds: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    z, phase = torch.from_numpy(feeds["z"]), torch.from_numpy(feeds["phase"])
    members = torch.stack(model.forward_members(z, phase))
    return {"quantiles": model(z, phase).numpy(), "members": members.numpy()}


class OrtForecaster(OrtModule):
    """A forecast graph run by onnxruntime with :class:`Forecaster`'s calls (``forward``,
    ``forward_members``) and attributes; the ES-RNN hybrid's smoothing (outside the graph)
    stays the eager model's."""

    def __init__(self, path: str | Path, threads: int = 0, eager: nn.Module | None = None) -> None:
        super().__init__()
        if eager is None:
            raise ValueError("OrtForecaster needs the eager model (its sizes and smoothing)")
        self.session = session(path, threads)
        self.es = eager.es
        for name in ("config", "input_size", "season", "horizon", "history", "chunk", "steps"):
            setattr(self, name, getattr(eager, name))

    def _run(self, z: Tensor, phase: Tensor) -> list[Tensor]:
        feeds = {"z": z.cpu().float().numpy(), "phase": phase.cpu().long().numpy()}
        return [torch.from_numpy(a) for a in self.session.run(["quantiles", "members"], feeds)]

    def forward(self, z: Tensor, phase: Tensor) -> Tensor:
        return self._run(z, phase)[0]

    def forward_members(self, z: Tensor, phase: Tensor) -> list[Tensor]:
        return list(self._run(z, phase)[1])


def runtime(path: Any, threads: int, eager: nn.Module) -> nn.Module:
    return OrtForecaster(path, threads, eager=eager)


def scores(predictor: Any) -> dict[str, float]:
    """sMAPE, MASE and OWA of the last horizon of every validation series."""
    from lstmkit.tasks.forecast.task import TASK

    got = TASK.score(predictor.model, TASK.eval_data(predictor, None, "val"))
    return {k: got[k] for k in ("smape", "mase", "owa") if k in got}


def float_nodes(graph: onnx.ModelProto) -> list[str]:
    """The head's and the skip connection's MatMuls: int8 keeps only the LSTM weights, since
    the forecast is read off the head's outputs at full scale and 8-bit rounding of them
    moved OWA by several percent."""
    return [node.name for node in graph.graph.node if node.op_type == "MatMul"]


ONNX = OnnxExport(graphs, random_feeds, expected_outputs, runtime, scores, float_nodes)
