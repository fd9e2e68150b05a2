"""LSTM layers as ONNX ops.

Every layer of an :class:`lstmkit.nn.LSTM` becomes one ONNX ``LSTM`` op (forward or
bidirectional, peephole included: ONNX's ``P`` input is exactly Gers & Schmidhuber's
diagonal peepholes), so onnxruntime runs its own fused kernel. Both read ``c_{t-1}`` into i
and f and ``c_t`` into o; ``P`` is stacked ``i | o | f``. ``sequence_lens`` gives each
sequence its length: the outputs past it are zero and ``Y_h`` is the state at the
sequence's own last step, as ``lengths=`` in lstmkit. Configurations the op cannot express
(``layer_norm``, ``coupled``, ``proj_size``) are exported as a ``Scan`` loop over the step
(:mod:`lstmkit.export.scan`).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from lstmkit.export.graph import Graph, gate_blocks, to_numpy
from lstmkit.export.scan import scan_layers

Pair = tuple[str, str]  # the names of (h, c)


def has_lstm_op(lstm: nn.Module) -> bool:
    """Whether ONNX's ``LSTM`` op computes ``lstm`` (else it is exported as a ``Scan``
    loop, :mod:`lstmkit.export.scan`)."""
    variants = ("layer_norm", "coupled", "proj_size")
    return not any(getattr(lstm, name, False) for name in variants)


def lstm_layers(
    g: Graph,
    lstm: nn.Module,
    x: str,
    seq_lens: str | None,
    states: list[Pair] | None = None,
    time_major: bool = False,
) -> tuple[str, list[Pair]]:
    """Every layer of an :class:`lstmkit.nn.LSTM` (time-major ``x`` (L, N, I)) as ONNX
    ``LSTM`` ops; returns the top layer's output (L, N, D*H) and (Y_h, Y_c) per layer, each
    (D, N, H). ``states``: initial (h, c) per layer, each (D, N, H). ``time_major``: the
    caller has made ``x`` time-major for a ``batch_first`` LSTM."""
    if getattr(lstm, "batch_first", False) and not time_major:
        raise ValueError("export reads time-major LSTMs (batch_first=False)")
    if not has_lstm_op(lstm):
        return scan_layers(g, lstm, x, seq_lens, states)
    hidden, dirs = lstm.hidden_size, 2 if lstm.bidirectional else 1
    finals = []
    for layer in range(lstm.num_layers):
        w, r, b, p = [], [], [], []
        for d in range(dirs):
            get = lambda name: lstm.param(name, layer, d)  # noqa: E731, B023
            w.append(gate_blocks(to_numpy(get("weight_ih")), hidden))
            r.append(gate_blocks(to_numpy(get("weight_hh")), hidden))
            if get("bias_ih") is not None:
                b.append(
                    np.concatenate(
                        [
                            gate_blocks(to_numpy(get("bias_ih")), hidden),
                            gate_blocks(to_numpy(get("bias_hh")), hidden),
                        ]
                    )
                )
            else:
                b.append(np.zeros(8 * hidden, np.float32))
            if lstm.peephole:
                p.append(np.concatenate([to_numpy(get(f"weight_c{k}")) for k in "iof"]))
        h0, c0 = states[layer] if states is not None else ("", "")
        inputs = [
            x,
            g.const("W", np.stack(w)),
            g.const("R", np.stack(r)),
            g.const("B", np.stack(b)),
            seq_lens or "",
            h0,
            c0,
        ]
        if p:
            inputs.append(g.const("P", np.stack(p)))
        while inputs and inputs[-1] == "":
            inputs.pop()
        y, y_h, y_c = g.op(
            "LSTM",
            inputs,
            3,
            hidden_size=hidden,
            direction="bidirectional" if dirs == 2 else "forward",
        )
        finals.append((y_h, y_c))
        # Y (L, D, N, H) -> (L, N, D*H): the next layer's input, directions concatenated
        y = g.op("Transpose", [y], perm=[0, 2, 1, 3])
        x = g.op("Reshape", [y, g.const("shape", np.array([0, 0, -1], np.int64))])
    return x, finals


def lstm_cell(g: Graph, cell: nn.Module, x: str, h0: str, c0: str) -> tuple[str, str, str]:
    """One step of a plain :class:`lstmkit.nn.LSTMCell` as an ONNX ``LSTM`` op: x (1, N, I),
    h0 and c0 (1, N, H) -> (Y (1, 1, N, H), Y_h, Y_c)."""
    if cell.layer_norm or cell.peephole or cell.coupled:
        raise ValueError("ONNX export reads plain LSTM cells in the decoder")
    hidden = cell.hidden_size
    w = gate_blocks(to_numpy(cell.weight_ih), hidden)[None]
    r = gate_blocks(to_numpy(cell.weight_hh), hidden)[None]
    if cell.bias_ih is not None:
        b = np.concatenate(
            [
                gate_blocks(to_numpy(cell.bias_ih), hidden),
                gate_blocks(to_numpy(cell.bias_hh), hidden),
            ]
        )
    else:
        b = np.zeros(8 * hidden, np.float32)
    return g.op(
        "LSTM",
        [x, g.const("W", w), g.const("R", r), g.const("B", b[None]), "", h0, c0],
        3,
        hidden_size=hidden,
    )
