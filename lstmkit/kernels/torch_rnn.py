"""PyTorch's fused RNN kernels (oneDNN on CPU, cuDNN on CUDA) on an lstmkit layer's weights.

This is the fast path for standard configurations: ``torch.lstm``, ``torch.gru``,
``torch.rnn_tanh`` and ``torch.rnn_relu`` are the functions behind ``torch.nn.LSTM`` and
friends. Given the module's own parameters (in torch's layout) they compute exactly what the
reference path computes, to float rounding, with gradients flowing to those parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

KERNELS = {
    "LSTM": torch.lstm,
    "GRU": torch.gru,
    "RNN_TANH": torch.rnn_tanh,
    "RNN_RELU": torch.rnn_relu,
}


def _kernel(mode: str):
    """Torch's kernel for ``mode``, with a clear error where ``torch.func.vmap`` cannot batch it."""
    kernel = KERNELS[mode]

    def run(*args):
        try:
            return kernel(*args)
        except RuntimeError as error:
            if "Batching rule not implemented" not in str(error):
                raise
            raise RuntimeError(
                f"implementation='torch' runs torch.{kernel.__name__}, which torch.func.vmap "
                "cannot batch; implementation='auto' or 'reference' runs lstmkit's reference "
                f"path, which it can ({error})"
            ) from error

    return run


def torch_rnn(
    mode: str,
    x: Tensor,
    states: tuple[Tensor, ...],
    weights: list[Tensor],
    has_bias: bool,
    num_layers: int,
    dropout: float,
    training: bool,
    bidirectional: bool,
    lengths: Tensor | None = None,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run torch's kernel on time-major ``x`` (L, N, H_in) from ``states`` (each (L*D, N, *)).

    ``weights`` are torch's flat weights: for each layer and direction ``w_ih, w_hh``
    (``b_ih, b_hh`` if ``has_bias``) (``w_hr`` with projections). With ``lengths`` the batch is
    packed, so outputs past each length are zero and the final states are those at each
    sequence's own last step. Returns the output (L, N, D*H_out) and the final states.
    """
    kernel = _kernel(mode)
    hx = states if mode == "LSTM" else states[0]
    args = (weights, has_bias, num_layers, dropout, training, bidirectional)
    if lengths is None:
        output, *final = kernel(x, hx, *args, False)
        return output, tuple(final)
    packed = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
    order, restore = packed.sorted_indices, packed.unsorted_indices
    data, final = torch_rnn_packed(
        mode,
        packed.data,
        packed.batch_sizes,
        tuple(s.index_select(1, order) for s in states),
        weights,
        has_bias,
        num_layers,
        dropout,
        training,
        bidirectional,
    )
    output = pad_packed_sequence(packed._replace(data=data), total_length=x.size(0))[
        0
    ]  # (L, N, D*H_out), zero past each length, in the caller's batch order
    return output, tuple(s.index_select(1, restore) for s in final)


def torch_rnn_packed(
    mode: str,
    data: Tensor,
    batch_sizes: Tensor,
    states: tuple[Tensor, ...],
    weights: list[Tensor],
    has_bias: bool,
    num_layers: int,
    dropout: float,
    training: bool,
    bidirectional: bool,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Torch's kernel on packed data: ``data`` (sum of batch_sizes, H_in) and ``states`` in
    the packed (sorted) batch order; returns the packed output data and the final states."""
    hx = states if mode == "LSTM" else states[0]
    args = (weights, has_bias, num_layers, dropout, training, bidirectional)
    output, *final = _kernel(mode)(data, batch_sizes, hx, *args)
    return output, tuple(final)
