"""ONNX graphs of the forecast, speech and translate models (the builder and the LSTM layers
are :mod:`lstmkit.export.onnx`'s).

Graphs (dims named by letter are dynamic):

* forecast (:func:`forecast_graph`): ``z`` (N, L) the normalised window, ``phase`` (N,)
  int64 -> ``quantiles`` (N, h, Q) sorted, and ``members`` (M, N, h, Q) each ensemble
  member's unsorted output (what training and validation scoring read). The ES-RNN hybrid's
  smoothing, which reads the raw history of a known series, stays outside the graph, as it
  stays outside :meth:`Forecaster.forward`.
* speech (:func:`speech_graph`): ``feats`` (T, N, V * n_mels) log-mel frames (V views of
  each, ``features.normalize``), ``lengths`` (N,) int64 -> ``log_probs`` (T', N, C+1)
  (CTC) or ``logits`` (N, C) (isolated words), and ``steps`` (N,) the frame counts after
  subsampling. A unidirectional model also takes the state ``h0``, ``c0`` (layers, N, H)
  and returns ``h_n``, ``c_n``: the streaming step graph (one chunk in, its outputs and the
  state to carry out).
* translate (:func:`translate_graphs`): two graphs, as decoding runs:

  - ``encoder``: ``src`` (N, S) int64, ``lengths`` (N,) int64 -> the
    :class:`~lstmkit.tasks.translate.model.Memory`: ``keys`` (N, S, 2H_enc), ``mask``
    (N, S) bool, ``projected`` (N, S, A) and the decoder's first state ``h``, ``c``
    (layers, N, H_dec), ``feed`` (N, E').
  - ``decoder``: one step of it, ``tokens`` (N,) int64 and the memory with the state ->
    ``log_probs`` (N, V), ``weights`` (N, S) and ``h_out``, ``c_out``, ``feed_out``.
    Greedy and beam search run on it unchanged (:class:`lstmkit.export.runtime.OrtSeq2Seq`).
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from lstmkit.export.onnx import (
    Graph,
    _gates,
    _head,
    _linear,
    _mask,
    _np,
    _pooling,
    lstm_layers,
)

F32, I64 = TensorProto.FLOAT, TensorProto.INT64


def _info(name: str, dtype: int, shape: list[Any]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def _ints(g: Graph, hint: str, values: list[int]) -> str:
    return g.const(hint, np.array(values, np.int64))


def _layer_state(g: Graph, state: str, k: int, dirs: int) -> str:
    """Layer ``k``'s (D, N, H) of a stacked state (layers * D, N, H)."""
    return g.op("Slice", [state, _ints(g, "start", [k * dirs]), _ints(g, "end", [(k + 1) * dirs]),
                          _ints(g, "axes", [0])])  # fmt: skip


def _stack_states(g: Graph, finals: list[tuple[str, str]], which: int, out: str) -> None:
    names = [pair[which] for pair in finals]
    g.op("Concat" if len(names) > 1 else "Identity", names, [out], **(
        {"axis": 0} if len(names) > 1 else {}))  # fmt: skip


# -- forecast ---------------------------------------------------------------------------------


def forecast_graph(model: nn.Module) -> onnx.ModelProto:
    """The graph of a :class:`~lstmkit.tasks.forecast.model.Forecaster` (module docstring)."""
    g = Graph()
    steps, chunk, season = model.steps, model.chunk, model.season
    chunks = g.op("Reshape", ["z", _ints(g, "shape", [0, steps, chunk])])  # (N, T, chunk)
    if model.config.position:  # the phase of each chunk's first value, as sin and cos
        offsets = g.const("offsets", (chunk * np.arange(steps))[None].astype(np.int64))
        starts = g.op("Add", [g.op("Unsqueeze", ["phase", _ints(g, "axes", [1])]), offsets])
        where = g.op("Cast", [g.op("Mod", [starts, g.const("season", np.array(season, np.int64))])],
                     to=F32)  # fmt: skip
        angle = g.op("Div", [g.op("Mul", [where, g.const("two_pi", np.array(2 * math.pi,
                                                                            np.float32))]),
                             g.const("season_f", np.array(season, np.float32))])  # fmt: skip
        axes = _ints(g, "axes", [2])
        sin = g.op("Unsqueeze", [g.op("Sin", [angle]), axes])
        cos = g.op("Unsqueeze", [g.op("Cos", [angle]), axes])
        chunks = g.op("Concat", [chunks, sin, cos], axis=2)
    x = g.op("Transpose", [chunks], perm=[1, 0, 2])  # (T, N, F)
    horizon, q = model.horizon, len(model.config.quantiles)
    outs = []
    for member in model.members:
        _, finals = lstm_layers(g, member.rnn, x, None)
        last = g.op("Squeeze", [finals[-1][0], _ints(g, "axes", [0])])  # out[-1]: (N, H)
        y = _linear(g, last, member.head)
        if member.skip is not None:
            y = g.op("Add", [y, _linear(g, "z", member.skip)])
        y = g.op("Reshape", [y, _ints(g, "shape", [0, horizon, q])])
        outs.append(g.op("Unsqueeze", [y, _ints(g, "axes", [0])]))
    g.op("Concat", outs, ["members"], axis=0)
    mean = g.op("ReduceMean", ["members"], axes=[0], keepdims=0)
    # quantiles never cross: sorted ascending, as Forecaster.forward sorts them
    g.op("TopK", [mean, _ints(g, "k", [q])], ["quantiles", g.fresh("order")], axis=-1,
         largest=0, sorted=1)  # fmt: skip
    return g.model(
        "lstmkit-forecast",
        [_info("z", F32, ["N", model.input_size]), _info("phase", I64, ["N"])],
        [_info("quantiles", F32, ["N", horizon, q]),
         _info("members", F32, [len(model.members), "N", horizon, q])],
    )  # fmt: skip


# -- speech -----------------------------------------------------------------------------------


def speech_streams(model: nn.Module) -> bool:
    """Whether the speech graph carries the state in and out (a unidirectional model)."""
    return not model.config.bidirectional


def _frequency_conv(g: Graph, conv: nn.Module, feats: str) -> str:
    """:class:`~lstmkit.tasks.speech.model.FrequencyConv`: each frame's bands (T, N, F) as one
    (T*N, V, F) row (V views) through its layers -> (T, N, C * (F // 4))."""
    x = g.op("Reshape", [feats, _ints(g, "rows", [-1, conv.views, conv.n_mels])])
    x = _head(g, x, conv.layers)
    shape = g.op("Concat", [g.op("Shape", [feats], start=0, end=2),
                            _ints(g, "width", [conv.out_features])], axis=0)  # fmt: skip
    return g.op("Reshape", [x, shape])


def _stack(g: Graph, x: str, k: int, width: int) -> str:
    """:func:`~lstmkit.tasks.speech.model.stack_frames` of ``x`` (T, N, width): k frames a
    step, zero-padded at the end -> (ceil(T / k), N, k * width)."""
    if k == 1:
        return x
    t = g.op("Shape", [x], start=0, end=1)
    kk = _ints(g, "k", [k])
    pad = g.op("Mod", [g.op("Sub", [kk, g.op("Mod", [t, kk])]), kk])
    pads = g.op("Concat", [_ints(g, "zeros", [0, 0, 0]), pad, _ints(g, "zeros", [0, 0])], axis=0)
    x = g.op("Pad", [x, pads])
    n = g.op("Shape", [x], start=1, end=2)
    shape = g.op("Concat", [_ints(g, "steps_k", [-1, k]), n, _ints(g, "f", [width])], axis=0)
    x = g.op("Reshape", [x, shape])  # (T / k, k, N, F)
    x = g.op("Transpose", [x], perm=[0, 2, 1, 3])
    return g.op("Reshape", [x, _ints(g, "shape", [0, 0, k * width])])


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
        steps = g.op("Div", [g.op("Add", ["lengths", g.const("k1", np.array(k - 1, np.int64))]),
                             g.const("k", np.array(k, np.int64))])  # fmt: skip
    g.op("Identity", [steps], ["steps"])
    seq_lens = g.op("Cast", ["steps"], to=TensorProto.INT32)
    inputs = [_info("feats", F32, ["T", "N", width_in]), _info("lengths", I64, ["N"])]
    outputs = []
    states = None
    first = members[0]
    layers, h = first.rnn.num_layers, first.rnn.hidden_size
    if speech_streams(model):
        inputs += [_info("h0", F32, [layers, "N", h]), _info("c0", F32, [layers, "N", h])]
        states = [(_layer_state(g, "h0", k_, 1), _layer_state(g, "c0", k_, 1))
                  for k_ in range(layers)]  # fmt: skip
    heads = []
    for member in members:
        x, width = "feats", width_in
        if member.conv is not None:
            x, width = _frequency_conv(g, member.conv, x), member.conv.out_features
        out, finals = lstm_layers(g, member.rnn, _stack(g, x, k, width), seq_lens, states)
        if member.head_kind == "ctc":
            heads.append(g.op("LogSoftmax", [_linear(g, out, member.out)], axis=-1))
        else:
            pooling = SimpleNamespace(parts=c.pooling.split("+"))
            pooled = _pooling(g, pooling, out, _mask(g, out, "steps"), "")
            heads.append(_linear(g, pooled, member.out))
    classes = first.out.out_features
    if first.head_kind == "ctc":
        g.op("Identity", heads, ["log_probs"])
        outputs.append(_info("log_probs", F32, ["T2", "N", classes]))
    else:
        if len(heads) == 1:
            g.op("Identity", heads, ["logits"])
        else:  # log(mean softmax): average_probabilities
            axes = _ints(g, "axes", [0])
            logs = [g.op("Unsqueeze", [g.op("LogSoftmax", [y], axis=-1), axes]) for y in heads]
            total = g.op("ReduceLogSumExp", [g.op("Concat", logs, axis=0)], axes=[0], keepdims=0)
            log_k = g.const("log_members", np.array(math.log(len(heads)), np.float32))
            g.op("Sub", [total, log_k], ["logits"])
        outputs.append(_info("logits", F32, ["N", classes]))
    outputs.append(_info("steps", I64, ["N"]))
    if states is not None:
        _stack_states(g, finals, 0, "h_n")
        _stack_states(g, finals, 1, "c_n")
        outputs += [_info("h_n", F32, [layers, "N", h]), _info("c_n", F32, [layers, "N", h])]
    return g.model("lstmkit-speech", inputs, outputs)


# -- translate --------------------------------------------------------------------------------


def _project_keys(g: Graph, attention: nn.Module, keys: str) -> str:
    if attention.kind == "general":
        return _linear(g, keys, attention.W_a)
    if attention.kind == "additive":
        return _linear(g, keys, attention.W_k)
    return g.op("Identity", [keys])


def translate_encoder(model: nn.Module) -> onnx.ModelProto:
    """The encoder graph of a :class:`~lstmkit.tasks.translate.model.Seq2Seq`."""
    g, c = Graph(), model.config
    # an empty source is read as one padding token, as Seq2Seq.encode does
    lengths = g.op("Max", ["lengths", g.const("one", np.array(1, np.int64))])
    src_t = g.op("Transpose", ["src"], perm=[1, 0])  # (S, N): time-major for the LSTM op
    x = g.op("Gather", [g.const("src_embed", _np(model.src_embed.weight)), src_t], axis=0)
    out, finals = lstm_layers(g, model.encoder, x, g.op("Cast", [lengths], to=TensorProto.INT32),
                              time_major=True)  # fmt: skip
    g.op("Transpose", [out], ["keys"], perm=[1, 0, 2])  # (N, S, 2H)
    mask = g.op("Squeeze", [_mask(g, x, lengths), _ints(g, "axes", [2])])
    g.op("Transpose", [mask], ["mask"], perm=[1, 0])
    g.op("Identity", [_project_keys(g, model.attention, "keys")], ["projected"])
    halves = []
    for s in (0, 1):  # the top layer's final h and c, both directions: (2, N, H) -> (N, 2H)
        t = g.op("Transpose", [finals[-1][s]], perm=[1, 0, 2])
        halves.append(g.op("Reshape", [t, _ints(g, "shape", [0, -1])]))
    h0 = g.op("Tanh", [_linear(g, halves[0], model.bridge_h)])
    c0 = _linear(g, halves[1], model.bridge_c)
    repeat = _ints(g, "repeat", [c.dec_layers, 1, 1])
    for name, v in (("h", h0), ("c", c0)):
        g.op("Tile", [g.op("Unsqueeze", [v, _ints(g, "axes", [0])]), repeat], [name])
    n = g.op("Shape", ["src"], start=0, end=1)
    zeros_shape = g.op("Concat", [n, _ints(g, "size", [model.att_size])], axis=0)
    g.op("ConstantOfShape", [zeros_shape], ["feed"],
         value=helper.make_tensor("value", F32, [1], [0.0]))  # fmt: skip
    enc2, proj = 2 * c.enc_hidden, _projected_size(model)
    return g.model(
        "lstmkit-translate-encoder",
        [_info("src", I64, ["N", "S"]), _info("lengths", I64, ["N"])],
        [_info("keys", F32, ["N", "S", enc2]), _info("mask", TensorProto.BOOL, ["N", "S"]),
         _info("projected", F32, ["N", "S", proj]),
         _info("h", F32, [c.dec_layers, "N", c.dec_hidden]),
         _info("c", F32, [c.dec_layers, "N", c.dec_hidden]),
         _info("feed", F32, ["N", model.att_size])],
    )  # fmt: skip


def _projected_size(model: nn.Module) -> int:
    a = model.attention
    if a.kind == "general":
        return a.W_a.out_features
    if a.kind == "additive":
        return a.W_k.out_features
    return a.key_size


def _cell(g: Graph, cell: nn.Module, x: str, h0: str, c0: str) -> tuple[str, str, str]:
    """One step of a plain :class:`lstmkit.nn.LSTMCell` as an ONNX ``LSTM`` op: x (1, N, I),
    h0 and c0 (1, N, H) -> (Y (1, 1, N, H), Y_h, Y_c)."""
    if cell.layer_norm or cell.peephole or cell.coupled:
        raise ValueError("ONNX export reads plain LSTM cells in the decoder")
    hidden = cell.hidden_size
    w = _gates(_np(cell.weight_ih), hidden)[None]
    r = _gates(_np(cell.weight_hh), hidden)[None]
    if cell.bias_ih is not None:
        b = np.concatenate([_gates(_np(cell.bias_ih), hidden), _gates(_np(cell.bias_hh), hidden)])
    else:
        b = np.zeros(8 * hidden, np.float32)
    return g.op("LSTM", [x, g.const("W", w), g.const("R", r), g.const("B", b[None]), "", h0, c0],
                3, hidden_size=hidden)  # fmt: skip


def translate_decoder(model: nn.Module) -> onnx.ModelProto:
    """The decoder step graph of a :class:`~lstmkit.tasks.translate.model.Seq2Seq`."""
    g, c = Graph(), model.config
    x = g.op("Gather", [g.const("tgt_embed", _np(model.tgt_embed.weight)), "tokens"], axis=0)
    axis0 = lambda: _ints(g, "axes", [0])  # noqa: E731
    hs, cs = [], []
    if c.input_feeding:
        inp = g.op("Unsqueeze", [g.op("Concat", [x, "feed"], axis=-1), axis0()])  # (1, N, I)
        for k, cell in enumerate(model.cells):
            y, h, cc = _cell(g, cell, inp, _layer_state(g, "h", k, 1), _layer_state(g, "c", k, 1))
            hs.append(h)
            cs.append(cc)
            inp = g.op("Squeeze", [y, _ints(g, "axes", [1])])  # (1, N, H)
        s = g.op("Squeeze", [inp, axis0()])
    else:
        states = [(_layer_state(g, "h", k, 1), _layer_state(g, "c", k, 1))
                  for k in range(c.dec_layers)]  # fmt: skip
        out, finals = lstm_layers(g, model.decoder, g.op("Unsqueeze", [x, axis0()]), None,
                                  states, time_major=True)  # fmt: skip
        hs, cs = [f[0] for f in finals], [f[1] for f in finals]
        s = g.op("Squeeze", [out, axis0()])  # (N, H_dec)
    _stack_states(g, [(h, cc) for h, cc in zip(hs, cs)], 0, "h_out")
    _stack_states(g, [(h, cc) for h, cc in zip(hs, cs)], 1, "c_out")
    # attention of the query s (N, H_dec) over the keys: scores (N, 1, S)
    a = model.attention
    query = g.op("Unsqueeze", [s, _ints(g, "axes", [1])])
    if a.kind == "additive":
        hidden = g.op("Tanh", [g.op("Add", [_linear(g, query, a.W_q), "projected"])])  # (N,S,A)
        scores = g.op("Transpose", [_linear(g, hidden, a.v_a)], perm=[0, 2, 1])
    else:
        scores = g.op("MatMul", [query, g.op("Transpose", ["projected"], perm=[0, 2, 1])])
    mask = g.op("Unsqueeze", ["mask", _ints(g, "axes", [1])])
    scores = g.op("Where", [mask, scores, g.const("neg_inf", np.array(-np.inf, np.float32))])
    weights = g.op("Softmax", [scores], axis=-1)
    context = g.op("Squeeze", [g.op("MatMul", [weights, "keys"]), _ints(g, "axes", [1])])
    g.op("Squeeze", [weights, _ints(g, "axes", [1])], ["weights"])
    att = g.op("Tanh", [_linear(g, g.op("Concat", [context, s], axis=-1), model.combine)])
    g.op("Identity", [att], ["feed_out"])
    weight = model.tgt_embed.weight if c.tie_embeddings else model.out.weight
    logits = g.op("Add", [g.op("MatMul", [att, g.const("out_t", _np(weight).T.copy())]),
                          g.const("out_bias", _np(model.out_bias))])  # fmt: skip
    g.op("LogSoftmax", [logits], ["log_probs"], axis=-1)
    enc2, proj, v = 2 * c.enc_hidden, _projected_size(model), model.out_bias.shape[0]
    state = [c.dec_layers, "N", c.dec_hidden]
    return g.model(
        "lstmkit-translate-decoder",
        [_info("tokens", I64, ["N"]), _info("keys", F32, ["N", "S", enc2]),
         _info("mask", TensorProto.BOOL, ["N", "S"]), _info("projected", F32, ["N", "S", proj]),
         _info("h", F32, state), _info("c", F32, state), _info("feed", F32, ["N", model.att_size])],
        [_info("log_probs", F32, ["N", v]), _info("weights", F32, ["N", "S"]),
         _info("h_out", F32, state), _info("c_out", F32, state),
         _info("feed_out", F32, ["N", model.att_size])],
    )  # fmt: skip


def translate_graphs(model: nn.Module) -> dict[str, onnx.ModelProto]:
    return {"encoder": translate_encoder(model), "decoder": translate_decoder(model)}


# -- random inputs and the eager model's answers ------------------------------------------------


def random_feeds(task: str, model: nn.Module, part: str, batch: int, steps: int,
                 seed: int) -> dict[str, np.ndarray]:  # fmt: skip
    """Random feeds of one graph (``part``: ``""``, or translate's ``encoder``/``decoder``):
    distinct lengths, one of them the full ``steps``; random states where the graph takes
    one."""
    rng = np.random.default_rng(seed)
    lengths = np.array([steps, *rng.integers(1, steps + 1, batch - 1)], np.int64)
    if task == "forecast":
        z = rng.normal(0, 1, (batch, model.input_size)).astype(np.float32)
        return {"z": z, "phase": rng.integers(0, model.season, batch).astype(np.int64)}
    if task == "speech":
        width = model.in_features
        feeds = {"feats": rng.normal(0, 1, (steps, batch, width)).astype(np.float32),
                 "lengths": lengths}  # fmt: skip
        if speech_streams(model):  # a single unidirectional CTC model, never an ensemble
            shape = (model.rnn.num_layers, batch, model.rnn.hidden_size)
            feeds["h0"] = rng.normal(0, 0.5, shape).astype(np.float32)
            feeds["c0"] = rng.normal(0, 0.5, shape).astype(np.float32)
        return feeds
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
        "keys": memory.keys.numpy(), "mask": memory.mask.numpy(),
        "projected": memory.projected.numpy(),
        "h": rng.normal(0, 0.5, state).astype(np.float32),
        "c": rng.normal(0, 0.5, state).astype(np.float32),
        "feed": rng.normal(0, 0.5, (batch, model.att_size)).astype(np.float32),
    }  # fmt: skip


@torch.no_grad()
def eager_feeds(task: str, model: nn.Module, part: str,
                feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:  # fmt: skip
    """The eager model's answers to ``feeds``, by the graph's output names."""
    t = {k: torch.from_numpy(v) for k, v in feeds.items()}
    if task == "forecast":
        members = torch.stack(model.forward_members(t["z"], t["phase"]))
        return {"quantiles": model(t["z"], t["phase"]).numpy(), "members": members.numpy()}
    if task == "speech":
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
    from lstmkit.tasks.translate.model import DecoderState, Memory

    if part == "encoder":
        m = model.encode(t["src"], t["lengths"])
        parts = {"keys": m.keys, "mask": m.mask, "projected": m.projected, **m.state._asdict()}
        return {k: v.numpy() for k, v in parts.items()}
    memory = Memory(t["keys"], t["mask"], t["projected"], DecoderState(t["h"], t["c"], t["feed"]))
    log_probs, weights, state = model.step(t["tokens"], memory)
    return {"log_probs": log_probs.numpy(), "weights": weights.numpy(), "h_out": state.h.numpy(),
            "c_out": state.c.numpy(), "feed_out": state.feed.numpy()}  # fmt: skip
