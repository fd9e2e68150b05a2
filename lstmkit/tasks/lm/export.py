"""The language model in ONNX: its step graph, random feeds, the eager model's answers to
them, and the onnxruntime module that runs the graph in the Predictor's place.

Graph: ``ids`` (L, N) int64, ``h{k}``/``c{k}`` (1, N, H_k) per layer -> ``logits``
(L, N, V), ``h{k}_out``/``c{k}_out``: the step graph generation runs with ``L = 1`` and the
state carried in and out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import Tensor, nn

from lstmkit.export.graph import Graph, linear, to_numpy
from lstmkit.export.layers import lstm_layers
from lstmkit.export.runtime import OnnxExport, OrtModule, session


def lm_graph(model: nn.Module) -> onnx.ModelProto:
    """The step graph of a :class:`~lstmkit.models.LanguageModel`: token ids and the state
    in, logits and the new state out (see the module docstring)."""
    g = Graph()
    sizes = model.config.layer_sizes()
    x = g.op("Gather", [g.const("embedding", to_numpy(model.embedding.weight)), "ids"], axis=0)
    inputs = [helper.make_tensor_value_info("ids", TensorProto.INT64, ["L", "N"])]
    outputs = []
    for k, (layer, size) in enumerate(zip(model.layers, sizes)):
        for s in "hc":
            inputs.append(
                helper.make_tensor_value_info(f"{s}{k}", TensorProto.FLOAT, [1, "N", size])
            )
        x, finals = lstm_layers(g, layer, x, None, [(f"h{k}", f"c{k}")])
        for s, name in zip("hc", finals[0]):
            g.op("Identity", [name], [f"{s}{k}_out"])
            outputs.append(
                helper.make_tensor_value_info(f"{s}{k}_out", TensorProto.FLOAT, [1, "N", size])
            )
    g.op("Identity", [linear(g, x, model.decoder)], ["logits"])
    vocab = model.decoder.out_features
    outputs.insert(0, helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["L", "N", vocab]))
    return g.model("lstmkit-lm", inputs, outputs)


def graphs(model: nn.Module) -> dict[str, onnx.ModelProto]:
    return {"": lm_graph(model)}


def random_feeds(
    model: nn.Module, part: str, batch: int, steps: int, seed: int
) -> dict[str, np.ndarray]:
    """Token ids and a random state of every layer."""
    rng = np.random.default_rng(seed)
    feeds = {"ids": rng.integers(1, model.vocab_size, (steps, batch)).astype(np.int64)}
    for k, size in enumerate(model.config.layer_sizes()):
        for s in "hc":
            feeds[f"{s}{k}"] = rng.normal(0, 0.5, (1, batch, size)).astype(np.float32)
    return feeds


@torch.no_grad()
def expected_outputs(
    model: nn.Module, part: str, feeds: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    n = len(model.config.layer_sizes())
    state = [(torch.from_numpy(feeds[f"h{k}"]), torch.from_numpy(feeds[f"c{k}"])) for k in range(n)]
    logits, new = model(torch.from_numpy(feeds["ids"]), state)
    out = {"logits": logits.numpy()}
    for k, (h, c) in enumerate(new):
        out[f"h{k}_out"], out[f"c{k}_out"] = h.numpy(), c.numpy()
    return out


class OrtLM(OrtModule):
    """An lm step graph run by onnxruntime, with :class:`LanguageModel`'s call:
    ``(ids (L, N), state) -> (logits (L, N, V), state)``; ``state`` is a list of (h, c)
    per layer, each (1, N, H_k), ``None`` for zeros."""

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        super().__init__()
        self.session = session(path, threads)
        self.sizes = [i.shape[-1] for i in self.session.get_inputs() if i.name.startswith("h")]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def forward(self, ids: Tensor, state: list | None = None) -> tuple[Tensor, list]:
        n = ids.size(1)
        feeds: dict[str, np.ndarray] = {"ids": ids.cpu().long().numpy()}
        for k, size in enumerate(self.sizes):
            h, c = state[k] if state is not None else (torch.zeros(1, n, size),) * 2
            feeds[f"h{k}"], feeds[f"c{k}"] = h.numpy(), c.numpy()
        out = [torch.from_numpy(a) for a in self.session.run(self.outputs, feeds)]
        return out[0], [(out[1 + 2 * k], out[2 + 2 * k]) for k in range(len(self.sizes))]


def runtime(path: Any, threads: int, eager: nn.Module) -> nn.Module:
    return OrtLM(path, threads)


def scores(predictor: Any) -> dict[str, float]:
    """Nats per character of the validation text."""
    from lstmkit.tasks.lm.task import TASK

    data = TASK.eval_data(predictor, predictor.config.data.path, "val", batch_size=1)
    return {"nats_per_char": TASK.score(predictor.model, data)["nats_per_char"]}


ONNX = OnnxExport(graphs, random_feeds, expected_outputs, runtime, scores)
