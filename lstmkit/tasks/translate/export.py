"""The translation model in ONNX: two graphs, as decoding runs, their random feeds, the
eager model's answers to them, and the onnxruntime module that runs them in the Predictor's
place.

- ``encoder``: ``src`` (N, S) int64, ``lengths`` (N,) int64 -> the
  :class:`~lstmkit.tasks.translate.model.Memory`: ``keys`` (N, S, 2H_enc), ``mask``
  (N, S) bool, ``projected`` (N, S, A) and the decoder's first state ``h``, ``c``
  (layers, N, H_dec), ``feed`` (N, E').
- ``decoder``: one step of it, ``tokens`` (N,) int64 and the memory with the state ->
  ``log_probs`` (N, V), ``weights`` (N, S) and ``h_out``, ``c_out``, ``feed_out``.
  Greedy and beam search run on it unchanged (:class:`OrtSeq2Seq`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import Tensor, nn

from lstmkit.export.graph import (
    F32,
    I64,
    Graph,
    info,
    ints,
    layer_state,
    linear,
    mask,
    stack_states,
    to_numpy,
)
from lstmkit.export.layers import lstm_cell, lstm_layers
from lstmkit.export.runtime import OnnxExport, OrtModule, part_path, session
from lstmkit.tasks.translate.model import DecoderState, Memory


def _project_keys(g: Graph, attention: nn.Module, keys: str) -> str:
    if attention.kind == "general":
        return linear(g, keys, attention.W_a)
    if attention.kind == "additive":
        return linear(g, keys, attention.W_k)
    return g.op("Identity", [keys])


def translate_encoder(model: nn.Module) -> onnx.ModelProto:
    """The encoder graph of a :class:`~lstmkit.tasks.translate.model.Seq2Seq`."""
    g, c = Graph(), model.config
    # an empty source is read as one padding token, as Seq2Seq.encode does
    lengths = g.op("Max", ["lengths", g.const("one", np.array(1, np.int64))])
    src_t = g.op("Transpose", ["src"], perm=[1, 0])  # (S, N): time-major for the LSTM op
    x = g.op("Gather", [g.const("src_embed", to_numpy(model.src_embed.weight)), src_t], axis=0)
    out, finals = lstm_layers(
        g, model.encoder, x, g.op("Cast", [lengths], to=TensorProto.INT32), time_major=True
    )
    g.op("Transpose", [out], ["keys"], perm=[1, 0, 2])  # (N, S, 2H)
    valid = g.op("Squeeze", [mask(g, x, lengths), ints(g, "axes", [2])])
    g.op("Transpose", [valid], ["mask"], perm=[1, 0])
    g.op("Identity", [_project_keys(g, model.attention, "keys")], ["projected"])
    halves = []
    for s in (0, 1):  # the top layer's final h and c, both directions: (2, N, H) -> (N, 2H)
        t = g.op("Transpose", [finals[-1][s]], perm=[1, 0, 2])
        halves.append(g.op("Reshape", [t, ints(g, "shape", [0, -1])]))
    h0 = g.op("Tanh", [linear(g, halves[0], model.bridge_h)])
    c0 = linear(g, halves[1], model.bridge_c)
    repeat = ints(g, "repeat", [c.dec_layers, 1, 1])
    for name, v in (("h", h0), ("c", c0)):
        g.op("Tile", [g.op("Unsqueeze", [v, ints(g, "axes", [0])]), repeat], [name])
    n = g.op("Shape", ["src"], start=0, end=1)
    zeros_shape = g.op("Concat", [n, ints(g, "size", [model.att_size])], axis=0)
    g.op(
        "ConstantOfShape",
        [zeros_shape],
        ["feed"],
        value=helper.make_tensor("value", F32, [1], [0.0]),
    )
    enc2, proj = 2 * c.enc_hidden, _projected_size(model)
    return g.model(
        "lstmkit-translate-encoder",
        [info("src", I64, ["N", "S"]), info("lengths", I64, ["N"])],
        [
            info("keys", F32, ["N", "S", enc2]),
            info("mask", TensorProto.BOOL, ["N", "S"]),
            info("projected", F32, ["N", "S", proj]),
            info("h", F32, [c.dec_layers, "N", c.dec_hidden]),
            info("c", F32, [c.dec_layers, "N", c.dec_hidden]),
            info("feed", F32, ["N", model.att_size]),
        ],
    )


def _projected_size(model: nn.Module) -> int:
    a = model.attention
    if a.kind == "general":
        return a.W_a.out_features
    if a.kind == "additive":
        return a.W_k.out_features
    return a.key_size


def translate_decoder(model: nn.Module) -> onnx.ModelProto:
    """The decoder step graph of a :class:`~lstmkit.tasks.translate.model.Seq2Seq`."""
    g, c = Graph(), model.config
    x = g.op("Gather", [g.const("tgt_embed", to_numpy(model.tgt_embed.weight)), "tokens"], axis=0)
    axis0 = lambda: ints(g, "axes", [0])  # noqa: E731
    hs, cs = [], []
    if c.input_feeding:
        inp = g.op("Unsqueeze", [g.op("Concat", [x, "feed"], axis=-1), axis0()])  # (1, N, I)
        for k, cell in enumerate(model.cells):
            y, h, cc = lstm_cell(g, cell, inp, layer_state(g, "h", k, 1), layer_state(g, "c", k, 1))
            hs.append(h)
            cs.append(cc)
            inp = g.op("Squeeze", [y, ints(g, "axes", [1])])  # (1, N, H)
        s = g.op("Squeeze", [inp, axis0()])
    else:
        states = [
            (layer_state(g, "h", k, 1), layer_state(g, "c", k, 1)) for k in range(c.dec_layers)
        ]
        out, finals = lstm_layers(
            g, model.decoder, g.op("Unsqueeze", [x, axis0()]), None, states, time_major=True
        )
        hs, cs = [f[0] for f in finals], [f[1] for f in finals]
        s = g.op("Squeeze", [out, axis0()])  # (N, H_dec)
    stack_states(g, [(h, cc) for h, cc in zip(hs, cs)], 0, "h_out")
    stack_states(g, [(h, cc) for h, cc in zip(hs, cs)], 1, "c_out")
    # attention of the query s (N, H_dec) over the keys: scores (N, 1, S)
    a = model.attention
    query = g.op("Unsqueeze", [s, ints(g, "axes", [1])])
    if a.kind == "additive":
        hidden = g.op("Tanh", [g.op("Add", [linear(g, query, a.W_q), "projected"])])  # (N,S,A)
        scores = g.op("Transpose", [linear(g, hidden, a.v_a)], perm=[0, 2, 1])
    else:
        scores = g.op("MatMul", [query, g.op("Transpose", ["projected"], perm=[0, 2, 1])])
    mask = g.op("Unsqueeze", ["mask", ints(g, "axes", [1])])
    scores = g.op("Where", [mask, scores, g.const("neg_inf", np.array(-np.inf, np.float32))])
    weights = g.op("Softmax", [scores], axis=-1)
    context = g.op("Squeeze", [g.op("MatMul", [weights, "keys"]), ints(g, "axes", [1])])
    g.op("Squeeze", [weights, ints(g, "axes", [1])], ["weights"])
    att = g.op("Tanh", [linear(g, g.op("Concat", [context, s], axis=-1), model.combine)])
    g.op("Identity", [att], ["feed_out"])
    weight = model.tgt_embed.weight if c.tie_embeddings else model.out.weight
    logits = g.op(
        "Add",
        [
            g.op("MatMul", [att, g.const("out_t", to_numpy(weight).T.copy())]),
            g.const("out_bias", to_numpy(model.out_bias)),
        ],
    )
    g.op("LogSoftmax", [logits], ["log_probs"], axis=-1)
    enc2, proj, v = 2 * c.enc_hidden, _projected_size(model), model.out_bias.shape[0]
    state = [c.dec_layers, "N", c.dec_hidden]
    return g.model(
        "lstmkit-translate-decoder",
        [
            info("tokens", I64, ["N"]),
            info("keys", F32, ["N", "S", enc2]),
            info("mask", TensorProto.BOOL, ["N", "S"]),
            info("projected", F32, ["N", "S", proj]),
            info("h", F32, state),
            info("c", F32, state),
            info("feed", F32, ["N", model.att_size]),
        ],
        [
            info("log_probs", F32, ["N", v]),
            info("weights", F32, ["N", "S"]),
            info("h_out", F32, state),
            info("c_out", F32, state),
            info("feed_out", F32, ["N", model.att_size]),
        ],
    )


def graphs(model: nn.Module) -> dict[str, onnx.ModelProto]:
    return {"encoder": translate_encoder(model), "decoder": translate_decoder(model)}


def random_feeds(
    model: nn.Module, part: str, batch: int, steps: int, seed: int
) -> dict[str, np.ndarray]:
    """Random sources of distinct lengths (one of them the full ``steps``) for the
    ``encoder``; for the ``decoder``, tokens, the encoder's memory of such sources and a
    random state."""
    rng = np.random.default_rng(seed)
    lengths = np.array([steps, *rng.integers(1, steps + 1, batch - 1)], np.int64)
    src = rng.integers(4, model.src_embed.num_embeddings, (batch, steps)).astype(np.int64)
    for n, length in enumerate(lengths):
        src[n, length:] = 0
    if part == "encoder":
        return {"src": src, "lengths": lengths}
    with torch.no_grad():
        memory = model.encode(torch.from_numpy(src), torch.from_numpy(lengths))
    c = model.config
    state = (c.dec_layers, batch, c.dec_hidden)
    return {
        "tokens": rng.integers(2, model.tgt_embed.num_embeddings, batch).astype(np.int64),
        "keys": memory.keys.numpy(),
        "mask": memory.mask.numpy(),
        "projected": memory.projected.numpy(),
        "h": rng.normal(0, 0.5, state).astype(np.float32),
        "c": rng.normal(0, 0.5, state).astype(np.float32),
        "feed": rng.normal(0, 0.5, (batch, model.att_size)).astype(np.float32),
    }


@torch.no_grad()
def expected_outputs(
    model: nn.Module, part: str, feeds: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    t = {k: torch.from_numpy(v) for k, v in feeds.items()}
    if part == "encoder":
        m = model.encode(t["src"], t["lengths"])
        parts = {"keys": m.keys, "mask": m.mask, "projected": m.projected, **m.state._asdict()}
        return {k: v.numpy() for k, v in parts.items()}
    memory = Memory(t["keys"], t["mask"], t["projected"], DecoderState(t["h"], t["c"], t["feed"]))
    log_probs, weights, state = model.step(t["tokens"], memory)
    return {
        "log_probs": log_probs.numpy(),
        "weights": weights.numpy(),
        "h_out": state.h.numpy(),
        "c_out": state.c.numpy(),
        "feed_out": state.feed.numpy(),
    }


class OrtSeq2Seq(OrtModule):
    """A translate model's two graphs run by onnxruntime with :class:`Seq2Seq`'s ``encode``
    and ``step``, so greedy and beam search run on them unchanged. ``path``: the name the
    export was given (the graphs are ``NAME.encoder.onnx`` and ``NAME.decoder.onnx``)."""

    def __init__(self, path: str | Path, threads: int = 0, eager: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder = session(part_path(path, "encoder"), threads)
        self.decoder = session(part_path(path, "decoder"), threads)
        self.config = None if eager is None else eager.config

    def encode(self, src: Tensor, lengths: Tensor) -> Any:
        feeds = {"src": src.cpu().long().numpy(), "lengths": lengths.cpu().long().numpy()}
        keys, mask, projected, h, c, feed = (
            torch.from_numpy(a)
            for a in self.encoder.run(["keys", "mask", "projected", "h", "c", "feed"], feeds)
        )
        return Memory(keys, mask, projected, DecoderState(h, c, feed))

    def step(self, tokens: Tensor, memory: Any) -> tuple[Tensor, Tensor, Any]:
        s = memory.state
        feeds = {
            "tokens": tokens.cpu().long().numpy(),
            "keys": memory.keys.numpy(),
            "mask": memory.mask.numpy(),
            "projected": memory.projected.numpy(),
            "h": s.h.numpy(),
            "c": s.c.numpy(),
            "feed": s.feed.numpy(),
        }
        names = ["log_probs", "weights", "h_out", "c_out", "feed_out"]
        log_probs, weights, h, c, feed = (
            torch.from_numpy(a) for a in self.decoder.run(names, feeds)
        )
        return log_probs, weights, DecoderState(h, c, feed)


def runtime(path: Any, threads: int, eager: nn.Module) -> nn.Module:
    return OrtSeq2Seq(path, threads, eager=eager)


def scores(predictor: Any) -> dict[str, float]:
    """BLEU and chrF of the validation translations."""
    from lstmkit.tasks.translate.task import TASK

    got = TASK.score(predictor.model, TASK.eval_data(predictor, None, "val"))
    return {k: got[k] for k in ("bleu", "chrf") if k in got}


ONNX = OnnxExport(graphs, random_feeds, expected_outputs, runtime, scores)
