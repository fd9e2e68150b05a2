"""The ONNX graph builder and the small pieces every task's graphs are made of.

A task's graphs (its package's ``export`` module) are written with :class:`Graph`, node by
node from the weights, instead of traced through ``torch.onnx``: the layers' Python control
flow (lengths, variants, kernels) is not traceable into an ONNX ``LSTM`` op, and a
hand-written graph says exactly what runs. The LSTM layers themselves are
:mod:`lstmkit.export.layers`.

Layouts. torch (and lstmkit) stack the gate blocks ``i | f | g | o``; ONNX stacks
``i | o | f | c`` (:func:`gate_blocks` reorders them).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from torch import nn

OPSET = 17
GATE_ORDER = [0, 3, 1, 2]  # torch's i f g o blocks in ONNX's i o f c order
F32, I64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


class Graph:
    """A small ONNX graph builder: named initializers and nodes with fresh output names."""

    def __init__(self, prefix: str = "") -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.prefix = prefix  # a subgraph's names must not shadow its outer graph's
        self._count = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}{hint}_{self._count}"

    def const(self, hint: str, array: Any) -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(
        self, op_type: str, inputs: list[str], outputs: int | list[str] = 1, **attrs: Any
    ) -> Any:
        """Add a node; returns its output name (or the list of them for several)."""
        names = (
            outputs
            if isinstance(outputs, list)
            else [self.fresh(op_type.lower()) for _ in range(outputs)]
        )
        # named after its first output (unique), so a node can be picked out by name (e.g.
        # kept in float by int8 quantization)
        self.nodes.append(helper.make_node(op_type, inputs, names, name=names[0], **attrs))
        return names[0] if len(names) == 1 else names

    def model(self, name: str, inputs: list, outputs: list) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="lstmkit"
        )
        onnx.checker.check_model(model)
        return model


def to_numpy(t: Any) -> np.ndarray:
    return t.detach().cpu().float().numpy()


def gate_blocks(w: np.ndarray, hidden: int) -> np.ndarray:
    """Reorder the stacked gate blocks (dim 0) from torch's i f g o to ONNX's i o f c."""
    blocks = w.reshape(4, hidden, *w.shape[1:])
    return blocks[GATE_ORDER].reshape(w.shape)


def info(name: str, dtype: int, shape: list[Any]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def ints(g: Graph, hint: str, values: list[int]) -> str:
    return g.const(hint, np.array(values, np.int64))


def layer_state(g: Graph, state: str, k: int, dirs: int) -> str:
    """Layer ``k``'s (D, N, H) of a stacked state (layers * D, N, H)."""
    return g.op(
        "Slice",
        [
            state,
            ints(g, "start", [k * dirs]),
            ints(g, "end", [(k + 1) * dirs]),
            ints(g, "axes", [0]),
        ],
    )


def stack_states(g: Graph, finals: list[tuple[str, str]], which: int, out: str) -> None:
    names = [pair[which] for pair in finals]
    g.op(
        "Concat" if len(names) > 1 else "Identity",
        names,
        [out],
        **({"axis": 0} if len(names) > 1 else {}),
    )


def linear(g: Graph, x: str, layer: nn.Linear) -> str:
    y = g.op("MatMul", [x, g.const("weight_t", to_numpy(layer.weight).T.copy())])
    return y if layer.bias is None else g.op("Add", [y, g.const("bias", to_numpy(layer.bias))])


def head(g: Graph, x: str, layers: nn.Sequential) -> str:
    """``layers`` in order: Linear, ReLU, Dropout (the identity at inference), and the
    Conv1d (zero padding of equal ends) and MaxPool1d (no padding) of a frame convolution."""
    for module in layers:
        if isinstance(module, nn.Linear):
            x = linear(g, x, module)
        elif isinstance(module, nn.ReLU):
            x = g.op("Relu", [x])
        elif (
            isinstance(module, nn.Conv1d)
            and module.padding_mode == "zeros"
            and not isinstance(module.padding, str)
        ):
            weights = [g.const("conv_w", to_numpy(module.weight))]
            if module.bias is not None:
                weights.append(g.const("conv_b", to_numpy(module.bias)))
            x = g.op(
                "Conv",
                [x, *weights],
                pads=[*module.padding] * 2,
                strides=[*module.stride],
                dilations=[*module.dilation],
                group=module.groups,
            )
        elif (
            isinstance(module, nn.MaxPool1d)
            and module.padding == 0
            and module.dilation == 1
            and not module.ceil_mode
        ):
            x = g.op("MaxPool", [x], kernel_shape=[module.kernel_size], strides=[module.stride])
        elif not isinstance(module, nn.Dropout):
            raise ValueError(f"no ONNX export for the layer {module}")
    return x


def mask(g: Graph, x: str, lengths: str) -> str:
    """(L, N, 1) bool: step t of sequence n is within ``lengths`` (N,) int64; L from ``x``."""
    axes = lambda k: g.const("axes", np.array([k], np.int64))  # noqa: E731
    steps = g.op("Squeeze", [g.op("Shape", [x], start=0, end=1), axes(0)])
    t = g.op(
        "Range",
        [g.const("zero", np.array(0, np.int64)), steps, g.const("one", np.array(1, np.int64))],
    )
    less = g.op("Less", [g.op("Unsqueeze", [t, axes(1)]), lengths])
    return g.op("Unsqueeze", [less, axes(2)])


def pooling(
    g: Graph,
    parts: list[str],
    out: str,
    valid: str,
    last: str,
    attention: nn.Sequential | None = None,
) -> str:
    """Pooling over time of ``out`` (L, N, F), ``parts`` concatenated in order: ``last``
    (given, (N, F)), ``max`` and ``mean`` over the ``valid`` steps ((L, N, 1) bool), and
    ``attention`` (``Linear -> tanh -> Linear`` scores, a masked softmax over time)."""
    neg_inf = lambda: g.const("neg_inf", np.array(-np.inf, np.float32))  # noqa: E731
    axis0 = lambda: g.const("axis0", np.array([0], np.int64))  # noqa: E731
    pooled = []
    for part in parts:
        if part == "last":
            pooled.append(last)
        elif part == "max":
            masked = g.op("Where", [valid, out, neg_inf()])
            pooled.append(g.op("ReduceMax", [masked], axes=[0], keepdims=0))
        elif part == "mean":
            m = g.op("Cast", [valid], to=TensorProto.FLOAT)
            total = g.op("ReduceSum", [g.op("Mul", [out, m]), axis0()], keepdims=0)
            count = g.op("ReduceSum", [m, axis0()], keepdims=0)
            pooled.append(g.op("Div", [total, count]))
        else:  # attention: Linear -> tanh -> Linear (no bias), masked softmax over time
            a = attention
            scores = linear(g, g.op("Tanh", [linear(g, out, a[0])]), a[2])  # (L, N, 1)
            weights = g.op("Softmax", [g.op("Where", [valid, scores, neg_inf()])], axis=0)
            pooled.append(g.op("ReduceSum", [g.op("Mul", [weights, out]), axis0()], keepdims=0))
    return pooled[0] if len(pooled) == 1 else g.op("Concat", pooled, axis=-1)
