"""ONNX graphs of lstmkit's inference models, written op by op from the weights.

Every LSTM layer becomes one ONNX ``LSTM`` op (forward or bidirectional, peephole included:
ONNX's ``P`` input is exactly Gers & Schmidhuber's diagonal peepholes), so onnxruntime runs
its own fused kernel. The graphs are written with ``onnx.helper`` instead of traced through
``torch.onnx``: the layer's Python control flow (lengths, variants, kernels) is not
traceable into an ONNX ``LSTM`` op, and a hand-written graph says exactly what runs.

Layouts. torch (and lstmkit) stack the gate blocks ``i | f | g | o``; ONNX stacks
``i | o | f | c``, with ``P`` as ``i | o | f``. Both read ``c_{t-1}`` into i and f and
``c_t`` into o. ``sequence_lens`` gives each sequence its length: the outputs past it are
zero and ``Y_h`` is the state at the sequence's own last step, as ``lengths=`` in lstmkit.

Graphs (dims ``L`` and ``N`` are dynamic):

* sentiment (:func:`sentiment_graph`): ``ids`` (L, N) int64, ``lengths`` (N,) int64 ->
  ``logits`` (N, C), ``probabilities`` (N, C). From-scratch encoders only.
* lab (:func:`lab_graph`): ``x`` (L, N, I) float, ``lengths`` (N,) -> ``output``.
* forecast, speech and translate (two graphs: the encoder and one decoder step):
  :mod:`lstmkit.export.graphs`.
* lm (:func:`lm_graph`): ``ids`` (L, N) int64, ``h{k}``/``c{k}`` (1, N, H_k) per layer ->
  ``logits`` (L, N, V), ``h{k}_out``/``c{k}_out``: the step graph generation runs with
  ``L = 1`` and the state carried in and out.

Configurations an ONNX ``LSTM`` op cannot express (``layer_norm``, ``coupled``,
``proj_size``) are exported as a ``Scan`` loop over the step (:mod:`lstmkit.export.scan`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from torch import nn

OPSET = 17
GATE_ORDER = [0, 3, 1, 2]  # torch's i f g o blocks in ONNX's i o f c order


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

    def op(self, op_type: str, inputs: list[str], outputs: int | list[str] = 1,
           **attrs: Any) -> Any:  # fmt: skip
        """Add a node; returns its output name (or the list of them for several)."""
        names = outputs if isinstance(outputs, list) else [self.fresh(op_type.lower())
                                                           for _ in range(outputs)]  # fmt: skip
        self.nodes.append(helper.make_node(op_type, inputs, names, **attrs))
        return names[0] if len(names) == 1 else names

    def model(self, name: str, inputs: list, outputs: list) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="lstmkit")  # fmt: skip
        onnx.checker.check_model(model)
        return model


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().float().numpy()


def _gates(w: np.ndarray, hidden: int) -> np.ndarray:
    """Reorder the stacked gate blocks (dim 0) from torch's i f g o to ONNX's i o f c."""
    blocks = w.reshape(4, hidden, *w.shape[1:])
    return blocks[GATE_ORDER].reshape(w.shape)


def has_lstm_op(lstm: nn.Module) -> bool:
    """Whether ONNX's ``LSTM`` op computes ``lstm`` (else it is exported as a ``Scan``
    loop, :mod:`lstmkit.export.scan`)."""
    variants = ("layer_norm", "coupled", "proj_size")
    return not any(getattr(lstm, name, False) for name in variants)


Pair = tuple[str, str]  # the names of (h, c)


def lstm_layers(g: Graph, lstm: nn.Module, x: str, seq_lens: str | None,
                states: list[Pair] | None = None,
                time_major: bool = False) -> tuple[str, list[Pair]]:  # fmt: skip
    """Every layer of an :class:`lstmkit.nn.LSTM` (time-major ``x`` (L, N, I)) as ONNX
    ``LSTM`` ops; returns the top layer's output (L, N, D*H) and (Y_h, Y_c) per layer, each
    (D, N, H). ``states``: initial (h, c) per layer, each (D, N, H). ``time_major``: the
    caller has made ``x`` time-major for a ``batch_first`` LSTM."""
    if getattr(lstm, "batch_first", False) and not time_major:
        raise ValueError("export reads time-major LSTMs (batch_first=False)")
    if not has_lstm_op(lstm):
        from lstmkit.export.scan import scan_layers

        return scan_layers(g, lstm, x, seq_lens, states)
    hidden, dirs = lstm.hidden_size, 2 if lstm.bidirectional else 1
    finals = []
    for layer in range(lstm.num_layers):
        w, r, b, p = [], [], [], []
        for d in range(dirs):
            get = lambda name: lstm.param(name, layer, d)  # noqa: E731, B023
            w.append(_gates(_np(get("weight_ih")), hidden))
            r.append(_gates(_np(get("weight_hh")), hidden))
            if get("bias_ih") is not None:
                b.append(np.concatenate([_gates(_np(get("bias_ih")), hidden),
                                         _gates(_np(get("bias_hh")), hidden)]))  # fmt: skip
            else:
                b.append(np.zeros(8 * hidden, np.float32))
            if lstm.peephole:
                p.append(np.concatenate([_np(get(f"weight_c{k}")) for k in "iof"]))
        h0, c0 = states[layer] if states is not None else ("", "")
        inputs = [x, g.const("W", np.stack(w)), g.const("R", np.stack(r)),
                  g.const("B", np.stack(b)), seq_lens or "", h0, c0]  # fmt: skip
        if p:
            inputs.append(g.const("P", np.stack(p)))
        while inputs and inputs[-1] == "":
            inputs.pop()
        y, y_h, y_c = g.op("LSTM", inputs, 3, hidden_size=hidden,
                           direction="bidirectional" if dirs == 2 else "forward")  # fmt: skip
        finals.append((y_h, y_c))
        # Y (L, D, N, H) -> (L, N, D*H): the next layer's input, directions concatenated
        y = g.op("Transpose", [y], perm=[0, 2, 1, 3])
        x = g.op("Reshape", [y, g.const("shape", np.array([0, 0, -1], np.int64))])
    return x, finals


def _linear(g: Graph, x: str, layer: nn.Linear) -> str:
    y = g.op("MatMul", [x, g.const("weight_t", _np(layer.weight).T.copy())])
    return y if layer.bias is None else g.op("Add", [y, g.const("bias", _np(layer.bias))])


def _head(g: Graph, x: str, head: nn.Sequential) -> str:
    """``head``'s layers in order: Linear, ReLU, Dropout (the identity at inference), and the
    Conv1d (zero padding of equal ends) and MaxPool1d (no padding) of a frame convolution."""
    for module in head:
        if isinstance(module, nn.Linear):
            x = _linear(g, x, module)
        elif isinstance(module, nn.ReLU):
            x = g.op("Relu", [x])
        elif (
            isinstance(module, nn.Conv1d)
            and module.padding_mode == "zeros"
            and not isinstance(module.padding, str)
        ):
            weights = [g.const("conv_w", _np(module.weight))]
            if module.bias is not None:
                weights.append(g.const("conv_b", _np(module.bias)))
            x = g.op("Conv", [x, *weights], pads=[*module.padding] * 2,
                     strides=[*module.stride], dilations=[*module.dilation],
                     group=module.groups)  # fmt: skip
        elif isinstance(module, nn.MaxPool1d) and module.padding == 0 and module.dilation == 1 \
                and not module.ceil_mode:  # fmt: skip
            x = g.op("MaxPool", [x], kernel_shape=[module.kernel_size],
                     strides=[module.stride])  # fmt: skip
        elif not isinstance(module, nn.Dropout):
            raise ValueError(f"no ONNX export for the layer {module}")
    return x


def _pooling(g: Graph, pooling: nn.Module, out: str, mask: str, last: str) -> str:
    """:class:`lstmkit.tasks.sentiment.model.Pooling` over ``out`` (L, N, F), ``mask``
    (L, N, 1) bool and ``last`` (N, F)."""
    neg_inf = lambda: g.const("neg_inf", np.array(-np.inf, np.float32))  # noqa: E731
    axis0 = lambda: g.const("axis0", np.array([0], np.int64))  # noqa: E731
    pooled = []
    for part in pooling.parts:
        if part == "last":
            pooled.append(last)
        elif part == "max":
            masked = g.op("Where", [mask, out, neg_inf()])
            pooled.append(g.op("ReduceMax", [masked], axes=[0], keepdims=0))
        elif part == "mean":
            m = g.op("Cast", [mask], to=TensorProto.FLOAT)
            total = g.op("ReduceSum", [g.op("Mul", [out, m]), axis0()], keepdims=0)
            count = g.op("ReduceSum", [m, axis0()], keepdims=0)
            pooled.append(g.op("Div", [total, count]))
        else:  # attention: Linear -> tanh -> Linear (no bias), masked softmax over time
            a = pooling.attention
            scores = _linear(g, g.op("Tanh", [_linear(g, out, a[0])]), a[2])  # (L, N, 1)
            weights = g.op("Softmax", [g.op("Where", [mask, scores, neg_inf()])], axis=0)
            pooled.append(g.op("ReduceSum", [g.op("Mul", [weights, out]), axis0()], keepdims=0))
    return pooled[0] if len(pooled) == 1 else g.op("Concat", pooled, axis=-1)


def _mask(g: Graph, x: str, lengths: str) -> str:
    """(L, N, 1) bool: step t of sequence n is within ``lengths`` (N,) int64; L from ``x``."""
    axes = lambda k: g.const("axes", np.array([k], np.int64))  # noqa: E731
    steps = g.op("Squeeze", [g.op("Shape", [x], start=0, end=1), axes(0)])
    t = g.op("Range", [g.const("zero", np.array(0, np.int64)), steps,
                       g.const("one", np.array(1, np.int64))])  # fmt: skip
    less = g.op("Less", [g.op("Unsqueeze", [t, axes(1)]), lengths])
    return g.op("Unsqueeze", [less, axes(2)])


def sentiment_graph(model: nn.Module) -> onnx.ModelProto:
    """The ONNX graph of a :class:`~lstmkit.tasks.sentiment.model.SentimentClassifier` with a
    from-scratch :class:`RecurrentEncoder` (see the module docstring)."""
    from lstmkit.tasks.sentiment.model import RecurrentEncoder

    encoder = model.encoder
    if not isinstance(encoder, RecurrentEncoder):
        raise ValueError("ONNX export reads sentiment classifiers trained from scratch; a "
                         "language-model encoder (model.pretrained) is not supported")  # fmt: skip
    g = Graph()
    lengths32 = g.op("Cast", ["lengths"], to=TensorProto.INT32)
    x = g.op("Gather", [g.const("embedding", _np(encoder.embedding.weight)), "ids"], axis=0)
    out, finals = lstm_layers(g, encoder.rnn, x, lengths32)
    # last: the top layer's final h of each direction, concatenated: (D, N, H) -> (N, D*H)
    y_h = g.op("Transpose", [finals[-1][0]], perm=[1, 0, 2])
    last = g.op("Reshape", [y_h, g.const("shape", np.array([0, -1], np.int64))])
    mask = _mask(g, "ids", "lengths")
    pooled = _pooling(g, model.pooling, out, mask, last)
    g.op("Identity", [_head(g, pooled, model.head)], ["logits"])
    g.op("Softmax", ["logits"], ["probabilities"], axis=-1)
    classes = model.head[-1].out_features
    return g.model(
        "lstmkit-sentiment",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["L", "N"]),
         helper.make_tensor_value_info("lengths", TensorProto.INT64, ["N"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", classes])],
    )  # fmt: skip


def lm_graph(model: nn.Module) -> onnx.ModelProto:
    """The step graph of a :class:`~lstmkit.models.LanguageModel`: token ids and the state
    in, logits and the new state out (see the module docstring)."""
    g = Graph()
    sizes = model.config.layer_sizes()
    x = g.op("Gather", [g.const("embedding", _np(model.embedding.weight)), "ids"], axis=0)
    inputs = [helper.make_tensor_value_info("ids", TensorProto.INT64, ["L", "N"])]
    outputs = []
    for k, (layer, size) in enumerate(zip(model.layers, sizes)):
        for s in "hc":
            inputs.append(helper.make_tensor_value_info(f"{s}{k}", TensorProto.FLOAT,
                                                        [1, "N", size]))  # fmt: skip
        x, finals = lstm_layers(g, layer, x, None, [(f"h{k}", f"c{k}")])
        for s, name in zip("hc", finals[0]):
            g.op("Identity", [name], [f"{s}{k}_out"])
            outputs.append(helper.make_tensor_value_info(f"{s}{k}_out", TensorProto.FLOAT,
                                                         [1, "N", size]))  # fmt: skip
    g.op("Identity", [_linear(g, x, model.decoder)], ["logits"])
    vocab = model.decoder.out_features
    outputs.insert(0, helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                    ["L", "N", vocab]))  # fmt: skip
    return g.model("lstmkit-lm", inputs, outputs)


def lab_graph(model: nn.Module) -> onnx.ModelProto:
    """The graph of a lab :class:`~lstmkit.tasks.lab.task.SequenceModel` with an LSTM:
    ``x`` (L, N, I) float (and ``lengths`` (N,) int64 unless the problem answers at every
    step) -> ``output``: (N,) or (N, C), or (L, N, C) per step."""
    from lstmkit.nn import LSTM

    if not isinstance(model.rnn, LSTM):
        raise ValueError(f"ONNX export reads lab models with an LSTM, not a "
                         f"{type(model.rnn).__name__}")  # fmt: skip
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
    y = _linear(g, out, model.head)
    if not model.per_step and out_features == 1:
        y = g.op("Squeeze", [y, g.const("axes", np.array([-1], np.int64))])
    g.op("Identity", [y], ["output"])
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)
    return g.model("lstmkit-lab", inputs, [output])


GRAPHS = {"sentiment": sentiment_graph, "lm": lm_graph, "lab": lab_graph}
TASKS = (*GRAPHS, "forecast", "speech", "translate")


def export_graphs(task: str, model: nn.Module) -> dict[str, onnx.ModelProto]:
    """The ONNX graphs of a ``task``'s model (eval mode: dropout and the random variants
    off), by part: ``{"": graph}``, or translate's ``{"encoder": ..., "decoder": ...}``."""
    from lstmkit.export import graphs

    model = model.eval()
    if task in GRAPHS:
        return {"": GRAPHS[task](model)}
    if task == "forecast":
        return {"": graphs.forecast_graph(model)}
    if task == "speech":
        return {"": graphs.speech_graph(model)}
    if task == "translate":
        return graphs.translate_graphs(model)
    raise ValueError(f"ONNX export supports the {', '.join(TASKS)} tasks; not {task!r}")


def export_graph(task: str, model: nn.Module) -> onnx.ModelProto:
    """The ONNX graph of a one-graph ``task``'s model (see :func:`export_graphs`)."""
    parts = export_graphs(task, model)
    if "" not in parts:
        raise ValueError(f"the {task} task exports {len(parts)} graphs ({', '.join(parts)}): "
                         "use export_graphs")  # fmt: skip
    return parts[""]


def random_inputs(task: str, model: nn.Module, batch: int = 4, steps: int = 9,
                  seed: int = 0) -> dict[str, np.ndarray]:  # fmt: skip
    """Random feeds of a ``task``'s graph: token ids (and distinct lengths, one of them the
    full ``steps``; or a random state for the lm)."""
    rng = np.random.default_rng(seed)
    if task == "lab":
        x = rng.normal(0, 1, (steps, batch, model.rnn.input_size)).astype(np.float32)
        feeds = {"x": x}
        if not model.per_step:
            feeds["lengths"] = np.array([steps, *rng.integers(1, steps + 1, batch - 1)], np.int64)
        return feeds
    vocab = model.encoder.embedding.num_embeddings if task == "sentiment" else model.vocab_size
    feeds = {"ids": rng.integers(1, vocab, (steps, batch)).astype(np.int64)}
    if task == "sentiment":
        lengths = np.array([steps, *rng.integers(1, steps + 1, batch - 1)], np.int64)
        for n, length in enumerate(lengths):
            feeds["ids"][length:, n] = 0
        feeds["lengths"] = lengths
    else:
        for k, size in enumerate(model.config.layer_sizes()):
            for s in "hc":
                feeds[f"{s}{k}"] = rng.normal(0, 0.5, (1, batch, size)).astype(np.float32)
    return feeds


def eager_outputs(task: str, model: nn.Module, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """What the eager model gives for ``feeds``, in the graph's output order (for the lm:
    logits then h, c of each layer; for sentiment: the logits)."""
    import torch

    with torch.no_grad():
        if task == "lab":
            lengths = feeds.get("lengths")
            lengths = None if lengths is None else torch.from_numpy(lengths)
            return [model(torch.from_numpy(feeds["x"]), lengths).numpy()]
        ids = torch.from_numpy(feeds["ids"])
        if task == "sentiment":
            return [model(ids, torch.from_numpy(feeds["lengths"])).numpy()]
        n = len(model.config.layer_sizes())
        state = [(torch.from_numpy(feeds[f"h{k}"]), torch.from_numpy(feeds[f"c{k}"]))
                 for k in range(n)]  # fmt: skip
        logits, new = model(ids, state)
    return [logits.numpy(), *(t.numpy() for pair in new for t in pair)]


def max_difference(task: str, model: nn.Module, session: Any, seeds: int = 3,
                   part: str = "") -> float:  # fmt: skip
    """The largest absolute difference between the eager model's outputs and ``session``'s
    (an onnxruntime session of its graph, translate's ``part``) over ``seeds`` random
    inputs, every output compared."""
    worst = 0.0
    if task not in GRAPHS:
        from lstmkit.export.graphs import eager_feeds, random_feeds

        for seed in range(seeds):
            feeds = random_feeds(task, model, part, batch=4, steps=9 + seed, seed=seed)
            expected = eager_feeds(task, model, part, feeds)
            got = session.run(list(expected), feeds)
            for a, b in zip(expected.values(), got):
                if a.shape != b.shape:
                    raise AssertionError(f"shape {b.shape} from onnxruntime, {a.shape} eager")
                diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
                # -inf == -inf (log-probabilities of never-emitted tokens) differ by 0
                diff[np.isinf(a) & (a == b)] = 0
                worst = max(worst, float(diff.max()))
        return worst
    for seed in range(seeds):
        feeds = random_inputs(task, model, seed=seed)
        expected = eager_outputs(task, model, feeds)
        names = [o.name for o in session.get_outputs()][: len(expected)]
        if task != "lm":
            names = names[:1]
        got = session.run(names, feeds)
        worst = max(worst, *(float(np.abs(a - b).max()) for a, b in zip(expected, got)))
    return worst
