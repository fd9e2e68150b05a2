"""Single-step cells: ``LSTMCell``, ``GRUCell`` and ``RNNCell`` with torch's interface."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lstmkit.nn import functional as LF
from lstmkit.nn.base import as_pair, check_size
from lstmkit.nn.lstm import (
    GateWeights,
    bernoulli_mask,
    check_forget_bias,
    gate_names,
    gate_weights,
    init_lstm_group,
    variant_parameters,
)


class DtypeMismatchError(RuntimeError, ValueError):
    """A cell's input, state and weights disagree in dtype.

    Torch's cells raise a ``RuntimeError`` from the matrix product (``mat1 and mat2 must have
    the same dtype``); this one names the tensors. It is also a ``ValueError``, the type
    lstmkit raised before.
    """


class _Cell(nn.Module):
    """Parameters ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` and torch's checks.

    As in torch, ``bias`` is used for its truth value (``RNNCell(10, 20, 'relu')`` is a tanh
    cell with biases: the third positional argument is ``bias``) and ``hidden_size`` may be
    0 (the output is then (N, 0)). ``input_size`` must be positive: lstmkit's one deliberate
    difference, as an input without features is a mistake.
    """

    _name = "RNNCell"
    _state_names: tuple[str, ...] = ("hidden",)  # in torch's rank errors

    def __init__(self, input_size: int, hidden_size: int, bias, gate_size: int, factory: dict):
        super().__init__()
        self.input_size = check_size(input_size, "input_size")
        if isinstance(hidden_size, bool) or not isinstance(hidden_size, int):
            raise TypeError(f"hidden_size should be of type int, got: {type(hidden_size).__name__}")
        if hidden_size < 0:
            raise ValueError("hidden_size must be zero or greater")
        self.hidden_size = hidden_size
        self.bias = bias
        self.weight_ih = nn.Parameter(torch.empty(gate_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(gate_size, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gate_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(gate_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)

    def reset_parameters(self) -> None:
        """Torch's init: every parameter uniform in (-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        return s if self.bias is True else s + f", bias={self.bias}"

    def _check(
        self, input: Tensor, states: tuple[Tensor, ...] | None
    ) -> tuple[Tensor, tuple, bool]:
        """Validate in torch's order and words; return batched input, batched states (zeros if
        None) and is_batched."""
        if input.dim() not in (1, 2):
            raise ValueError(
                f"{self._name}: Expected input to be 1D or 2D, got {input.dim()}D instead"
            )
        for name, s in zip(self._state_names, states or ()):
            if s.dim() not in (1, 2):
                raise ValueError(
                    f"{self._name}: Expected {name} to be 1D or 2D, got {s.dim()}D instead"
                )
        is_batched = input.dim() == 2
        x = input if is_batched else input.unsqueeze(0)
        if x.size(1) != self.input_size:
            raise RuntimeError(
                f"input has inconsistent input_size: got {x.size(1)} expected {self.input_size}"
            )
        if states is None:
            states = tuple(x.new_zeros(x.size(0), self.hidden_size) for _ in self._state_names)
        else:  # as torch, the states are unsqueezed exactly when the input is
            states = tuple(s if is_batched else s.unsqueeze(0) for s in states)
        for k, s in enumerate(states):
            if s.size(0) != x.size(0):
                raise RuntimeError(
                    f"Input batch size {x.size(0)} doesn't match hidden{k} batch size {s.size(0)}"
                )
            if s.dim() > 1 and s.size(1) != self.hidden_size:
                raise RuntimeError(
                    f"hidden{k} has inconsistent hidden_size: "
                    f"got {s.size(1)}, expected {self.hidden_size}"
                )
            if s.dim() != 2:  # torch fails later, inside its kernel
                raise RuntimeError(
                    f"Expected hidden{k} to be {input.dim()}D like the input, "
                    f"got {s.dim() - (not is_batched)}D instead"
                )
        if input.dtype != self.weight_ih.dtype:
            raise DtypeMismatchError(
                f"{self._name} input dtype ({input.dtype}) does not match weight dtype "
                f"({self.weight_ih.dtype})"
            )
        for s in states:
            if s.dtype != x.dtype:
                raise DtypeMismatchError(
                    f"hx dtype ({s.dtype}) does not match input dtype ({x.dtype})"
                )
        return x, states, is_batched


class LSTMCell(_Cell):
    r"""One LSTM step, with torch's ``LSTMCell`` interface and the LSTM's step variants.

    Computes the equations of :class:`lstmkit.nn.LSTM` for one ``t``. The step variants
    ``layer_norm``, ``peephole``, ``coupled`` and ``zoneout`` work as there (zoneout with a
    fresh mask per call, training only). ``recurrent_dropout`` and ``weight_drop`` draw one
    mask per sequence, so they live on the sequence layer :class:`lstmkit.nn.LSTM`.

    Args:
        input_size: features of the input ``x`` (H_in).
        hidden_size: features of the hidden and cell states (H).
        bias: if ``False``, no ``bias_ih``/``bias_hh``. Default: ``True``
        layer_norm, peephole, coupled, zoneout, forget_bias: as :class:`lstmkit.nn.LSTM`.

    Inputs: input, hx
        * **input**: (N, H_in) or (H_in).
        * **hx**: optional tuple ``(h_0, c_0)``, each (N, H) or (H). Default: zeros.

    Outputs: (h_1, c_1), each (N, H) or (H).

    Example::

        >>> import torch
        >>> from lstmkit.nn import LSTMCell
        >>> cell = LSTMCell(10, 20)
        >>> x = torch.randn(6, 3, 10)  # (L, N, H_in)
        >>> hx = None
        >>> for t in range(6):
        ...     hx = cell(x[t], hx)
        >>> hx[0].shape
        torch.Size([3, 20])
    """

    _name = "LSTMCell"
    _state_names = ("hx[0]", "hx[1]")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        layer_norm: bool = False,
        peephole: bool = False,
        coupled: bool = False,
        zoneout: float | tuple[float, float] = 0.0,
        forget_bias: float | None = 1.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        factory = {"device": device, "dtype": dtype}
        super().__init__(
            input_size, hidden_size, bias, len(gate_names(coupled)) * hidden_size, factory
        )
        self.layer_norm = bool(layer_norm)
        self.peephole = bool(peephole)
        self.coupled = bool(coupled)
        self.zoneout = as_pair(zoneout, "zoneout")
        self.forget_bias = check_forget_bias(forget_bias)
        for name, value in variant_parameters(
            hidden_size, bias, self.layer_norm, self.peephole, self.coupled, factory
        ).items():
            self.register_parameter(name, nn.Parameter(value))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        init_lstm_group(
            lambda n: getattr(self, n, None), self.hidden_size, self.forget_bias, self.coupled
        )

    def gate_weights(self) -> GateWeights:
        """Per-gate matrices acting on ``[h_{t-1}, x_t]``; see :class:`lstmkit.nn.GateWeights`."""
        return gate_weights(lambda n: getattr(self, n, None), self.hidden_size, self.coupled)

    def forward(
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        x, (h, c), is_batched = self._check(input, hx)
        peephole = (
            (getattr(self, "weight_ci", None), self.weight_cf, self.weight_co)
            if self.peephole
            else None
        )
        ln = self.layer_norm
        h_new, c_new = LF.lstm_cell(
            x,
            (h, c),
            self.weight_ih,
            self.weight_hh,
            self.bias_ih,
            self.bias_hh,
            peephole=peephole,
            ln_ih_weight=self.ln_ih_weight if ln else None,
            ln_hh_weight=self.ln_hh_weight if ln else None,
            ln_c=(self.ln_c_weight, getattr(self, "ln_c_bias", None)) if ln else None,
            coupled=self.coupled,
        )
        p_h, p_c = self.zoneout
        # `training` is read only when zoneout is on: without it train and eval are the same
        if p_h > 0 and self.training:
            h_new = LF.zoneout(h_new, h, bernoulli_mask(h.shape, p_h, h))
        if p_c > 0 and self.training:
            c_new = LF.zoneout(c_new, c, bernoulli_mask(c.shape, p_c, c))
        if not is_batched:
            return h_new.squeeze(0), c_new.squeeze(0)
        return h_new, c_new


class GRUCell(_Cell):
    r"""One GRU step, as ``torch.nn.GRUCell`` (equations in :class:`lstmkit.nn.GRU`).

    Inputs: input (N, H_in) or (H_in), hx (N, H) or (H), default zeros.
    Output: h_1 (N, H) or (H).

    Example::

        >>> import torch
        >>> from lstmkit.nn import GRUCell
        >>> GRUCell(10, 20)(torch.randn(3, 10)).shape
        torch.Size([3, 20])
    """

    _name = "GRUCell"

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None
    ):
        super().__init__(
            input_size, hidden_size, bias, 3 * hidden_size, {"device": device, "dtype": dtype}
        )
        self.reset_parameters()

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), is_batched = self._check(input, None if hx is None else (hx,))
        h = LF.gru_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return h if is_batched else h.squeeze(0)


class RNNCell(_Cell):
    r"""One Elman step, ``h' = φ(W_ih x + b_ih + W_hh h + b_hh)``, as ``torch.nn.RNNCell``.

    Args: input_size, hidden_size, bias (default ``True``), nonlinearity (``'tanh'`` or
    ``'relu'``, default ``'tanh'``). Inputs and output as :class:`GRUCell`.

    Example::

        >>> import torch
        >>> from lstmkit.nn import RNNCell
        >>> RNNCell(10, 20, nonlinearity="relu")(torch.randn(3, 10)).shape
        torch.Size([3, 20])
    """

    _name = "RNNCell"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device=None,
        dtype=None,
    ):
        super().__init__(
            input_size, hidden_size, bias, hidden_size, {"device": device, "dtype": dtype}
        )
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity}")
        self.nonlinearity = nonlinearity
        self.reset_parameters()

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), is_batched = self._check(input, None if hx is None else (hx,))
        h = LF.rnn_cell(
            x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.nonlinearity
        )
        return h if is_batched else h.squeeze(0)
