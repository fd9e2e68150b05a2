"""Baselines with the LSTM's interface: the Elman RNN and the GRU."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lstmkit.nn import functional as LF
from lstmkit.nn.base import RecurrentBase, State


class RNN(RecurrentBase):
    r"""A multi-layer Elman RNN with tanh or ReLU non-linearity, as ``torch.nn.RNN``::

        h_t = φ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),    φ = tanh or relu

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional:
            as :class:`lstmkit.nn.LSTM` (defaults 1, ``True``, ``False``, 0, ``False``).
        nonlinearity: ``'tanh'`` or ``'relu'``. Default: ``'tanh'``

    Inputs: input, hx, lengths
        * **input**: (L, N, H_in), (N, L, H_in) with ``batch_first``, (L, H_in) unbatched, or
          a ``PackedSequence``.
        * **hx**: optional (D * num_layers, N, H) (unbatched: (D * num_layers, H)).
        * **lengths**: optional (N,) sequence lengths, as for :class:`lstmkit.nn.LSTM`.

    Outputs: output, h_n
        * **output**: (L, N, D * H) (``batch_first``: (N, L, D * H)).
        * **h_n**: (D * num_layers, N, H).

    Parameters have torch's names and shapes, so state dicts load both ways.

    Example::

        >>> import torch
        >>> from lstmkit.nn import RNN
        >>> rnn = RNN(10, 20, 2)
        >>> output, h_n = rnn(torch.randn(5, 3, 10))
        >>> output.shape, h_n.shape
        (torch.Size([5, 3, 20]), torch.Size([2, 3, 20]))
    """

    _name = "RNN"
    _gates = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        implementation: str = "auto",
        proj_size: Any = None,
    ) -> None:
        if proj_size is not None:  # given at all, as torch: projections are the LSTM's
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            implementation=implementation,
        )
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'."
            )
        self.nonlinearity = nonlinearity
        self._create_parameters(self._gates * hidden_size, device, dtype)

    @property
    def _kernel_mode(self) -> str:
        return f"RNN_{self.nonlinearity.upper()}"

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self.nonlinearity == "tanh" else s + f", nonlinearity={self.nonlinearity}"

    def forward(
        self,
        input: Tensor | Any,
        hx: Tensor | None = None,
        lengths: Tensor | Sequence[int] | None = None,
    ):
        output, (h_n,), _ = self._forward(input, hx, lengths, collect=False)
        return output, h_n

    def _run_direction(self, x, state, layer, direction, valid, collect):
        w_hh, b_hh = (
            self.param("weight_hh", layer, direction),
            self.param("bias_hh", layer, direction),
        )
        xw = LF.input_projection(
            x, self.param("weight_ih", layer, direction), self.param("bias_ih", layer, direction)
        )  # (L, N, G*H)

        def step(xw_t: Tensor, state: State, t: int):
            return (self._step(xw_t, state[0], w_hh, b_hh),), ()

        return self._scan(xw, state, step, valid, collect)

    def _step(self, xw: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
        return LF.rnn_step(xw, h, w_hh, b_hh, self.nonlinearity)


class GRU(RNN):
    r"""A multi-layer gated recurrent unit (GRU) RNN, as ``torch.nn.GRU``::

        r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
        z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
        n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))
        h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

    Arguments, inputs and outputs are those of :class:`RNN` (without ``nonlinearity``);
    weights stack the gates ``r | z | n`` as torch does.

    Example::

        >>> import torch
        >>> from lstmkit.nn import GRU
        >>> gru = GRU(10, 20, 2, bidirectional=True)
        >>> output, h_n = gru(torch.randn(5, 3, 10))
        >>> output.shape, h_n.shape
        (torch.Size([5, 3, 40]), torch.Size([4, 3, 20]))
    """

    _name = "GRU"
    _gates = 3

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        implementation: str = "auto",
        proj_size: Any = None,
    ) -> None:
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            "tanh",
            bias,
            batch_first,
            dropout,
            bidirectional,
            device,
            dtype,
            implementation=implementation,
            proj_size=proj_size,
        )

    @property
    def _kernel_mode(self) -> str:
        return "GRU"

    def _step(self, xw: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
        return LF.gru_step(xw, h, w_hh, b_hh)[0]
