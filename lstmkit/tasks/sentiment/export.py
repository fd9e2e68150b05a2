"""The sentiment classifier in ONNX: its graph, random feeds, the eager model's answers to
them, and the onnxruntime module that runs the graph in the Predictor's place.

Graph: ``ids`` (L, N) int64, ``lengths`` (N,) int64 -> ``logits`` (N, C), ``probabilities``
(N, C). From-scratch encoders only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import Tensor, nn

from lstmkit.export.graph import Graph, head, mask, pooling, to_numpy
from lstmkit.export.layers import lstm_layers
from lstmkit.export.runtime import OnnxExport, OrtModule, session


def sentiment_graph(model: nn.Module) -> onnx.ModelProto:
    """The ONNX graph of a :class:`~lstmkit.tasks.sentiment.model.SentimentClassifier` with a
    from-scratch :class:`RecurrentEncoder` (see the module docstring)."""
    from lstmkit.tasks.sentiment.model import RecurrentEncoder

    encoder = model.encoder
    if not isinstance(encoder, RecurrentEncoder):
        raise ValueError(
            "ONNX export reads sentiment classifiers trained from scratch; a "
            "language-model encoder (model.pretrained) is not supported"
        )
    g = Graph()
    lengths32 = g.op("Cast", ["lengths"], to=TensorProto.INT32)
    x = g.op("Gather", [g.const("embedding", to_numpy(encoder.embedding.weight)), "ids"], axis=0)
    out, finals = lstm_layers(g, encoder.rnn, x, lengths32)
    # last: the top layer's final h of each direction, concatenated: (D, N, H) -> (N, D*H)
    y_h = g.op("Transpose", [finals[-1][0]], perm=[1, 0, 2])
    last = g.op("Reshape", [y_h, g.const("shape", np.array([0, -1], np.int64))])
    valid = mask(g, "ids", "lengths")
    pooled = pooling(g, model.pooling.parts, out, valid, last, model.pooling.attention)
    g.op("Identity", [head(g, pooled, model.head)], ["logits"])
    g.op("Softmax", ["logits"], ["probabilities"], axis=-1)
    classes = model.head[-1].out_features
    return g.model(
        "lstmkit-sentiment",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["L", "N"]),
            helper.make_tensor_value_info("lengths", TensorProto.INT64, ["N"]),
        ],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", classes]),
        ],
    )


def graphs(model: nn.Module) -> dict[str, onnx.ModelProto]:
    return {"": sentiment_graph(model)}


def random_feeds(
    model: nn.Module, part: str, batch: int, steps: int, seed: int
) -> dict[str, np.ndarray]:
    """Token ids of distinct lengths (one of them the full ``steps``), padded with 0."""
    rng = np.random.default_rng(seed)
    vocab = model.encoder.embedding.num_embeddings
    ids = rng.integers(1, vocab, (steps, batch)).astype(np.int64)
    lengths = np.array([steps, *rng.integers(1, steps + 1, batch - 1)], np.int64)
    for n, length in enumerate(lengths):
        ids[length:, n] = 0
    return {"ids": ids, "lengths": lengths}


@torch.no_grad()
def expected_outputs(
    model: nn.Module, part: str, feeds: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    logits = model(torch.from_numpy(feeds["ids"]), torch.from_numpy(feeds["lengths"]))
    return {"logits": logits.numpy(), "probabilities": logits.softmax(-1).numpy()}


class OrtSentiment(OrtModule):
    """A sentiment graph run by onnxruntime: ``(ids (L, N), lengths (N,)) -> logits (N, C)``."""

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        super().__init__()
        self.session = session(path, threads)

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        feeds = {
            "ids": ids.cpu().long().numpy(),
            "lengths": torch.as_tensor(lengths).cpu().long().numpy(),
        }
        (logits,) = self.session.run(["logits"], feeds)
        return torch.from_numpy(logits)


def runtime(path: Any, threads: int, eager: nn.Module) -> nn.Module:
    return OrtSentiment(path, threads)


def scores(predictor: Any) -> dict[str, float]:
    """Accuracy on the model's validation reviews."""
    from lstmkit.tasks.sentiment.task import TASK

    data = TASK.eval_data(predictor, None, "val")
    return {"accuracy": TASK.score(predictor.model, data)["accuracy"]}


ONNX = OnnxExport(graphs, random_feeds, expected_outputs, runtime, scores)
