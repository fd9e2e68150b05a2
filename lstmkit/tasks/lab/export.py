"""The lab's sequence models in ONNX: the graph, random feeds, the eager model's answers to
them, and the onnxruntime module that runs the graph in the Predictor's place.

Graph: ``x`` (L, N, I) float (and ``lengths`` (N,) int64 unless the problem answers at
every step) -> ``output``: (N,) or (N, C), or (L, N, C) per step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import Tensor, nn

from lstmkit.export.graph import Graph, linear
from lstmkit.export.layers import lstm_layers
from lstmkit.export.runtime import OnnxExport, OrtModule, session


def lab_graph(model: nn.Module) -> onnx.ModelProto:
    """The graph of a lab :class:`~lstmkit.tasks.lab.task.SequenceModel` with an LSTM:
    ``x`` (L, N, I) float (and ``lengths`` (N,) int64 unless the problem answers at every
    step) -> ``output``: (N,) or (N, C), or (L, N, C) per step."""
    from lstmkit.nn import LSTM

    if not isinstance(model.rnn, LSTM):
        raise ValueError(
            f"ONNX export reads lab models with an LSTM, not a {type(model.rnn).__name__}"
        )
    g = Graph()
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["L", "N", model.rnn.input_size])
    ]
    out_features = model.head.out_features
    if model.per_step:
        out, _ = lstm_layers(g, model.rnn, "x", None)
        shape: list[Any] = ["L", "N", out_features]
    else:
        inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT64, ["N"]))
        # one direction: the top layer's final h is its output at each sequence's last step
        _, finals = lstm_layers(g, model.rnn, "x", g.op("Cast", ["lengths"], to=TensorProto.INT32))
        out = g.op("Squeeze", [finals[-1][0], g.const("axes", np.array([0], np.int64))])
        shape = ["N"] if out_features == 1 else ["N", out_features]
    y = linear(g, out, model.head)
    if not model.per_step and out_features == 1:
        y = g.op("Squeeze", [y, g.const("axes", np.array([-1], np.int64))])
    g.op("Identity", [y], ["output"])
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)
    return g.model("lstmkit-lab", inputs, [output])


def graphs(model: nn.Module) -> dict[str, onnx.ModelProto]:
    return {"": lab_graph(model)}


def random_feeds(
    model: nn.Module, part: str, batch: int, steps: int, seed: int
) -> dict[str, np.ndarray]:
    """Random inputs and (unless the model answers at every step) distinct lengths."""
    rng = np.random.default_rng(seed)
    feeds = {"x": rng.normal(0, 1, (steps, batch, model.rnn.input_size)).astype(np.float32)}
    if not model.per_step:
        feeds["lengths"] = np.array([steps, *rng.integers(1, steps + 1, batch - 1)], np.int64)
    return feeds


@torch.no_grad()
def expected_outputs(
    model: nn.Module, part: str, feeds: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    lengths = feeds.get("lengths")
    lengths = None if lengths is None else torch.from_numpy(lengths)
    return {"output": model(torch.from_numpy(feeds["x"]), lengths).numpy()}


class OrtLab(OrtModule):
    """A lab graph run by onnxruntime: ``(x (L, N, I), lengths (N,) or None) -> output``."""

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        super().__init__()
        self.session = session(path, threads)
        self.needs_lengths = any(i.name == "lengths" for i in self.session.get_inputs())

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        feeds = {"x": x.cpu().float().numpy()}
        if self.needs_lengths:  # None: every sequence runs to the end
            full = torch.full((x.size(1),), x.size(0)) if lengths is None else lengths
            feeds["lengths"] = torch.as_tensor(full).cpu().long().numpy()
        (out,) = self.session.run(["output"], feeds)
        return torch.from_numpy(out)


def runtime(path: Any, threads: int, eager: nn.Module) -> nn.Module:
    return OrtLab(path, threads)


def scores(predictor: Any) -> dict[str, float]:
    """The solved fraction or accuracy on fresh test sequences of an unseen seed."""
    from lstmkit.tasks.lab.task import TASK

    got = TASK.score(predictor.model, TASK.eval_data(predictor, None, "test"))
    return {k: got[k] for k in ("solved_fraction", "accuracy") if k in got}


ONNX = OnnxExport(graphs, random_feeds, expected_outputs, runtime, scores)
