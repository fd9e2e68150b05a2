"""The speech models in ONNX: the graph, random feeds, the eager model's answers to them,
and the onnxruntime module that runs the graph in the Predictor's place.

Graph: ``feats`` (T, N, V * n_mels) log-mel frames (V views of each,
``features.normalize``), ``lengths`` (N,) int64 -> ``log_probs`` (T', N, C+1) (CTC) or
``logits`` (N, C) (isolated words), and ``steps`` (N,) the frame counts after subsampling.
A unidirectional model also takes the state ``h0``, ``c0`` (layers, N, H) and returns
``h_n``, ``c_n``: the streaming step graph (one chunk in, its outputs and the state to carry
out).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto
from torch import Tensor, nn

from lstmkit.export.graph import (
    F32,
    I64,
    Graph,
    head,
    info,
    ints,
    layer_state,
    linear,
    mask,
    pooling,
    stack_states,
)
from lstmkit.export.layers import lstm_layers
from lstmkit.export.runtime import OnnxExport, OrtModule, session


def speech_streams(model: nn.Module) -> bool:
    """Whether the speech graph carries the state in and out (a unidirectional model)."""
    return not model.config.bidirectional


def _frequency_conv(g: Graph, conv: nn.Module, feats: str) -> str:
    """:class:`~lstmkit.tasks.speech.model.FrequencyConv`: each frame's bands (T, N, F) as one
    (T*N, V, F) row (V views) through its layers -> (T, N, C * (F // 4))."""
    x = g.op("Reshape", [feats, ints(g, "rows", [-1, conv.views, conv.n_mels])])
    x = head(g, x, conv.layers)
    shape = g.op(
        "Concat",
        [g.op("Shape", [feats], start=0, end=2), ints(g, "width", [conv.out_features])],
        axis=0,
    )
    return g.op("Reshape", [x, shape])


def _stack(g: Graph, x: str, k: int, width: int) -> str:
    """:func:`~lstmkit.tasks.speech.model.stack_frames` of ``x`` (T, N, width): k frames a
    step, zero-padded at the end -> (ceil(T / k), N, k * width)."""
    if k == 1:
        return x
    t = g.op("Shape", [x], start=0, end=1)
    kk = ints(g, "k", [k])
    pad = g.op("Mod", [g.op("Sub", [kk, g.op("Mod", [t, kk])]), kk])
    pads = g.op("Concat", [ints(g, "zeros", [0, 0, 0]), pad, ints(g, "zeros", [0, 0])], axis=0)
    x = g.op("Pad", [x, pads])
    n = g.op("Shape", [x], start=1, end=2)
    shape = g.op("Concat", [ints(g, "steps_k", [-1, k]), n, ints(g, "f", [width])], axis=0)
    x = g.op("Reshape", [x, shape])  # (T / k, k, N, F)
    x = g.op("Transpose", [x], perm=[0, 2, 1, 3])
    return g.op("Reshape", [x, ints(g, "shape", [0, 0, k * width])])


def speech_graph(model: nn.Module) -> onnx.ModelProto:
    """The graph of a :class:`~lstmkit.tasks.speech.model.SpeechModel` or
    :class:`~lstmkit.tasks.speech.model.SpeechEnsemble` (module docstring); an ensemble's
    ``logits`` are the log of its members' mean probabilities, as its ``forward``."""
    from lstmkit.tasks.speech.model import members_of

    g = Graph()
    c, k, width_in = model.config, model.config.subsample, model.in_features
    members = members_of(model)
    steps = "lengths"
    if k > 1:  # stack_frames: lengths ceil(/ k)
        steps = g.op(
            "Div",
            [
                g.op("Add", ["lengths", g.const("k1", np.array(k - 1, np.int64))]),
                g.const("k", np.array(k, np.int64)),
            ],
        )
    g.op("Identity", [steps], ["steps"])
    seq_lens = g.op("Cast", ["steps"], to=TensorProto.INT32)
    inputs = [info("feats", F32, ["T", "N", width_in]), info("lengths", I64, ["N"])]
    outputs = []
    states = None
    first = members[0]
    layers, h = first.rnn.num_layers, first.rnn.hidden_size
    if speech_streams(model):
        inputs += [info("h0", F32, [layers, "N", h]), info("c0", F32, [layers, "N", h])]
        states = [
            (layer_state(g, "h0", k_, 1), layer_state(g, "c0", k_, 1)) for k_ in range(layers)
        ]
    heads = []
    for member in members:
        x, width = "feats", width_in
        if member.conv is not None:
            x, width = _frequency_conv(g, member.conv, x), member.conv.out_features
        out, finals = lstm_layers(g, member.rnn, _stack(g, x, k, width), seq_lens, states)
        if member.head_kind == "ctc":
            heads.append(g.op("LogSoftmax", [linear(g, out, member.out)], axis=-1))
        else:
            pooled = pooling(g, c.pooling.split("+"), out, mask(g, out, "steps"), "")
            heads.append(linear(g, pooled, member.out))
    classes = first.out.out_features
    if first.head_kind == "ctc":
        g.op("Identity", heads, ["log_probs"])
        outputs.append(info("log_probs", F32, ["T2", "N", classes]))
    else:
        if len(heads) == 1:
            g.op("Identity", heads, ["logits"])
        else:  # log(mean softmax): average_probabilities
            axes = ints(g, "axes", [0])
            logs = [g.op("Unsqueeze", [g.op("LogSoftmax", [y], axis=-1), axes]) for y in heads]
            total = g.op("ReduceLogSumExp", [g.op("Concat", logs, axis=0)], axes=[0], keepdims=0)
            log_k = g.const("log_members", np.array(math.log(len(heads)), np.float32))
            g.op("Sub", [total, log_k], ["logits"])
        outputs.append(info("logits", F32, ["N", classes]))
    outputs.append(info("steps", I64, ["N"]))
    if states is not None:
        stack_states(g, finals, 0, "h_n")
        stack_states(g, finals, 1, "c_n")
        outputs += [info("h_n", F32, [layers, "N", h]), info("c_n", F32, [layers, "N", h])]
    return g.model("lstmkit-speech", inputs, outputs)


def graphs(model: nn.Module) -> dict[str, onnx.ModelProto]:
    return {"": speech_graph(model)}


def random_feeds(
    model: nn.Module, part: str, batch: int, steps: int, seed: int
) -> dict[str, np.ndarray]:
    """Random features of distinct lengths (one of them the full ``steps``), and a random
    state where the graph streams."""
    rng = np.random.default_rng(seed)
    lengths = np.array([steps, *rng.integers(1, steps + 1, batch - 1)], np.int64)
    width = model.in_features
    feeds = {
        "feats": rng.normal(0, 1, (steps, batch, width)).astype(np.float32),
        "lengths": lengths,
    }
    if speech_streams(model):  # a single unidirectional CTC model, never an ensemble
        shape = (model.rnn.num_layers, batch, model.rnn.hidden_size)
        feeds["h0"] = rng.normal(0, 0.5, shape).astype(np.float32)
        feeds["c0"] = rng.normal(0, 0.5, shape).astype(np.float32)
    return feeds


@torch.no_grad()
def expected_outputs(
    model: nn.Module, part: str, feeds: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    t = {k: torch.from_numpy(v) for k, v in feeds.items()}
    name = "log_probs" if model.head_kind == "ctc" else "logits"
    if not speech_streams(model):  # forward (an ensemble too), in eval mode
        out, steps = model(t["feats"], t["lengths"])
        return {name: out.numpy(), "steps": steps.numpy()}
    out, steps, (h, c) = model.encode(t["feats"], t["lengths"], (t["h0"], t["c0"]))
    extra = {"h_n": h.numpy(), "c_n": c.numpy()}
    if model.head_kind == "ctc":
        extra[name] = model.out(out).log_softmax(-1).numpy()
    else:
        extra[name] = model.out(model.pool(out, steps)).numpy()
    return {**extra, "steps": steps.numpy()}


class OrtSpeech(OrtModule):
    """A speech graph run by onnxruntime with :class:`SpeechModel`'s ``forward`` and, for a
    unidirectional CTC model, its streaming ``step``."""

    def __init__(self, path: str | Path, threads: int = 0, eager: nn.Module | None = None) -> None:
        super().__init__()
        if eager is None:
            raise ValueError("OrtSpeech needs the eager model (its configuration)")
        self.session = session(path, threads)
        self.config, self.head_kind = eager.config, eager.head_kind
        from lstmkit.tasks.speech.model import members_of

        first = members_of(eager)[0]  # an ensemble's members are alike
        self.layers, self.hidden = first.rnn.num_layers, first.rnn.hidden_size
        self.streams = any(i.name == "h0" for i in self.session.get_inputs())
        self.first = "log_probs" if self.head_kind == "ctc" else "logits"

    def _run(self, feats: Tensor, lengths: Tensor, state: Any = None) -> list[Tensor]:
        feeds = {
            "feats": feats.cpu().float().numpy(),
            "lengths": torch.as_tensor(lengths).cpu().long().numpy(),
        }
        names = [self.first, "steps"]
        if self.streams:
            n = feats.shape[1]
            h, c = state if state is not None else (torch.zeros(self.layers, n, self.hidden),) * 2
            feeds["h0"], feeds["c0"] = h.cpu().float().numpy(), c.cpu().float().numpy()
            names += ["h_n", "c_n"]
        return [torch.from_numpy(a) for a in self.session.run(names, feeds)]

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        out, steps, *_ = self._run(feats, lengths)
        return out, steps

    def check_streamable(self) -> None:
        if not self.streams or self.head_kind != "ctc":
            raise ValueError(
                "streaming needs a unidirectional CTC model (model.bidirectional "
                "false, task_kind connected)"
            )

    def step(self, feats: Tensor, state: Any = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        self.check_streamable()
        if feats.shape[0] % self.config.subsample:
            raise ValueError(f"a chunk must hold a multiple of {self.config.subsample} frames")
        lengths = torch.full((feats.shape[1],), feats.shape[0], dtype=torch.long)
        out, _, h, c = self._run(feats, lengths, state)
        return out, (h, c)


def runtime(path: Any, threads: int, eager: nn.Module) -> nn.Module:
    return OrtSpeech(path, threads, eager=eager)


def scores(predictor: Any) -> dict[str, float]:
    """Accuracy (isolated digits) or WER and CER (connected digits) on the validation
    recordings."""
    from lstmkit.tasks.speech.task import TASK

    got = TASK.score(predictor.model, TASK.eval_data(predictor, None, "val"))
    return {k: got[k] for k in ("accuracy", "wer", "cer") if k in got}


ONNX = OnnxExport(graphs, random_feeds, expected_outputs, runtime, scores)
