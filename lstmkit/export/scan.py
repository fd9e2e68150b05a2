"""The exported loop: LSTM layers no ONNX ``LSTM`` op can express, as an ONNX ``Scan``.

Layer normalisation (Ba et al. 2016), CIFG's coupled gates (``i = 1 - f``) and projections
(``proj_size``) have no place in the ``LSTM`` op, so such a layer is exported as the step of
:func:`lstmkit.nn.functional.lstm_step`, written out as an ONNX graph and run over time by a
``Scan`` (one direction per ``Scan``; the reverse direction reads each sequence reversed
within its own length with ``ReverseSequence``, as lstmkit does). Steps past a sequence's
length keep its state and output zeros, so padded batches give what ``lengths=`` gives.

The input projection of the whole sequence (``LN(W_ih x) + b_ih``) runs once before the
loop, as in lstmkit's reference path; the step adds ``LN(W_hh h) + b_hh``, the peepholes,
the gates, ``c``'s layer norm before ``tanh`` and the projection ``W_hr``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto, helper
from torch import nn

from lstmkit.export.graph import Graph, to_numpy
from lstmkit.nn.functional import LAYER_NORM_EPS


def _layer_norm(g: Any, x: str, weight: Any, bias: Any = None) -> str:
    size = weight.shape[0]
    shift = np.zeros(size, np.float32) if bias is None else to_numpy(bias)
    return g.op(
        "LayerNormalization",
        [x, g.const("ln_scale", to_numpy(weight)), g.const("ln_bias", shift)],
        axis=-1,
        epsilon=LAYER_NORM_EPS,
    )


def _step_body(g: Any, lstm: nn.Module, layer: int, d: int) -> Any:
    """The ``Scan`` body of one layer and direction: (h, c, xw_t, valid_t) -> (h, c, y_t).
    Its weights are constants of the outer graph ``g`` (a subgraph may read outer names)."""
    get = lambda name: lstm.param(name, layer, d)  # noqa: E731
    hidden, out_size = lstm.hidden_size, lstm.proj_size or lstm.hidden_size
    body = Graph(prefix=g.fresh("step") + "_")
    body.const = g.const  # weights live in the outer graph
    hw = body.op("MatMul", ["h_prev", g.const("w_hh_t", to_numpy(get("weight_hh")).T.copy())])
    if get("ln_hh_weight") is not None:
        hw = _layer_norm(body, hw, get("ln_hh_weight"))
    if get("bias_hh") is not None:
        hw = body.op("Add", [hw, g.const("b_hh", to_numpy(get("bias_hh")))])
    gates = body.op("Add", ["xw_t", hw])
    n_gates = 3 if lstm.coupled else 4
    sizes = g.const("split", np.array([hidden] * n_gates, np.int64))
    parts = body.op("Split", [gates, sizes], n_gates, axis=-1)
    if lstm.coupled:
        f, cand, o = parts
        i = None
    else:
        i, f, cand, o = parts
    if lstm.peephole:
        f = body.op(
            "Add", [f, body.op("Mul", ["c_prev", g.const("w_cf", to_numpy(get("weight_cf")))])]
        )
        if i is not None:
            peep_i = body.op("Mul", ["c_prev", g.const("w_ci", to_numpy(get("weight_ci")))])
            i = body.op("Add", [i, peep_i])
    f = body.op("Sigmoid", [f])
    if i is None:  # CIFG
        i = body.op("Sub", [g.const("one", np.array(1.0, np.float32)), f])
    else:
        i = body.op("Sigmoid", [i])
    c = body.op(
        "Add", [body.op("Mul", [f, "c_prev"]), body.op("Mul", [i, body.op("Tanh", [cand])])]
    )
    if lstm.peephole:
        o = body.op("Add", [o, body.op("Mul", [c, g.const("w_co", to_numpy(get("weight_co")))])])
    o = body.op("Sigmoid", [o])
    cc = c
    if get("ln_c_weight") is not None:
        cc = _layer_norm(body, c, get("ln_c_weight"), get("ln_c_bias"))
    h = body.op("Mul", [o, body.op("Tanh", [cc])])
    if get("weight_hr") is not None:
        h = body.op("MatMul", [h, g.const("w_hr_t", to_numpy(get("weight_hr")).T.copy())])
    # past its length a sequence keeps its state and outputs zeros
    body.op("Where", ["valid_t", h, "h_prev"], ["h_out"])
    body.op("Where", ["valid_t", c, "c_prev"], ["c_out"])
    zero = g.const("zero", np.array(0.0, np.float32))
    body.op("Where", ["valid_t", h, zero], ["y_t"])
    f32 = TensorProto.FLOAT
    return helper.make_graph(
        body.nodes,
        body.fresh("body"),
        [
            helper.make_tensor_value_info("h_prev", f32, ["N", out_size]),
            helper.make_tensor_value_info("c_prev", f32, ["N", hidden]),
            helper.make_tensor_value_info("xw_t", f32, ["N", n_gates * hidden]),
            helper.make_tensor_value_info("valid_t", TensorProto.BOOL, ["N", 1]),
        ],
        [
            helper.make_tensor_value_info("h_out", f32, ["N", out_size]),
            helper.make_tensor_value_info("c_out", f32, ["N", hidden]),
            helper.make_tensor_value_info("y_t", f32, ["N", out_size]),
        ],
    )


def _direction(g: Any, state: str, d: int) -> str:
    """Direction ``d`` (N, H) of a state (D, N, H)."""
    picked = g.op("Gather", [state, g.const("d", np.array([d], np.int64))], axis=0)
    return g.op("Squeeze", [picked, g.const("axes", np.array([0], np.int64))])


def _zeros(g: Any, x: str, size: int) -> str:
    """Zeros (N, size), N read from ``x`` (L, N, ...)."""
    n = g.op("Shape", [x], start=1, end=2)
    shape = g.op("Concat", [n, g.const("size", np.array([size], np.int64))], axis=0)
    zero = helper.make_tensor("value", TensorProto.FLOAT, [1], [0.0])
    return g.op("ConstantOfShape", [shape], value=zero)


Pair = tuple[str, str]  # the names of (h, c)


def scan_layers(
    g: Any, lstm: nn.Module, x: str, seq_lens: str | None, states: list[Pair] | None = None
) -> tuple[str, list[Pair]]:
    """Every layer of ``lstm`` over ``x`` (L, N, I) as ``Scan`` loops; the same contract as
    :func:`lstmkit.export.layers.lstm_layers`."""
    # lengths (N,) int64 and valid (L, N, 1): given, or every sequence to the end
    if seq_lens is None:
        shape = g.op("Shape", [x])
        steps = g.op("Gather", [shape, g.const("i", np.array(0, np.int64))], axis=0)
        n = g.op("Shape", [x], start=1, end=2)
        lengths = g.op("Expand", [steps, n])
    else:
        lengths = g.op("Cast", [seq_lens], to=TensorProto.INT64)
    steps = g.op(
        "Squeeze", [g.op("Shape", [x], start=0, end=1), g.const("axes", np.array([0], np.int64))]
    )
    t = g.op(
        "Range",
        [g.const("zero_i", np.array(0, np.int64)), steps, g.const("one_i", np.array(1, np.int64))],
    )
    valid = g.op(
        "Less", [g.op("Unsqueeze", [t, g.const("axes", np.array([1], np.int64))]), lengths]
    )
    valid = g.op("Unsqueeze", [valid, g.const("axes", np.array([2], np.int64))])  # (L, N, 1)
    dirs = 2 if lstm.bidirectional else 1
    hidden, out_size = lstm.hidden_size, lstm.proj_size or lstm.hidden_size
    finals = []
    for layer in range(lstm.num_layers):
        ys, hs, cs = [], [], []
        for d in range(dirs):
            get = lambda name: lstm.param(name, layer, d)  # noqa: E731, B023
            xw = g.op("MatMul", [x, g.const("w_ih_t", to_numpy(get("weight_ih")).T.copy())])
            if get("ln_ih_weight") is not None:
                xw = _layer_norm(g, xw, get("ln_ih_weight"))
            if get("bias_ih") is not None:
                xw = g.op("Add", [xw, g.const("b_ih", to_numpy(get("bias_ih")))])
            if d == 1:  # each sequence reversed within its length
                xw = g.op("ReverseSequence", [xw, lengths], batch_axis=1, time_axis=0)
            if states is not None:  # (D, N, H) each: this direction's
                h0, c0 = (_direction(g, s, d) for s in states[layer])
            else:
                h0, c0 = _zeros(g, x, out_size), _zeros(g, x, hidden)
            h, c, y = g.op(
                "Scan",
                [h0, c0, xw, valid],
                3,
                num_scan_inputs=2,
                body=_step_body(g, lstm, layer, d),
            )
            if d == 1:
                y = g.op("ReverseSequence", [y, lengths], batch_axis=1, time_axis=0)
            ys.append(y)
            axis0 = g.const("axes", np.array([0], np.int64))
            hs.append(g.op("Unsqueeze", [h, axis0]))
            cs.append(g.op("Unsqueeze", [c, axis0]))
        x = ys[0] if dirs == 1 else g.op("Concat", ys, axis=-1)
        pair = (
            (hs[0], cs[0])
            if dirs == 1
            else (g.op("Concat", hs, axis=0), g.op("Concat", cs, axis=0))
        )
        finals.append(pair)
    return x, finals
