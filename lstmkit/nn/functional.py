"""One-step recurrences: the spec that every layer and fast path is tested against.

Shapes follow ``torch.nn``: ``N`` batch, ``H_in`` input features, ``H`` hidden (cell) size,
``H_out`` the size of ``h`` (``proj_size`` if projections are on, else ``H``). Any number of
leading dimensions is accepted where the docstring says ``(*, ...)``.

Weights keep torch's layout: the gate blocks of ``w_ih`` (G*H, H_in), ``w_hh`` (G*H, H_out)
and the biases (G*H) are stacked as

* LSTM: ``i | f | g | o`` (G = 4); ``coupled=True`` has no input-gate weights: ``f | g | o``
* GRU: ``r | z | n`` (G = 3)
* RNN: one block (G = 1)

Every recurrence is split in two so that layers can compute the input projection for a
whole sequence in one matrix multiply: ``*_input_projection`` (no dependence on time) and
``*_step`` (the recurrence proper, given the projected input ``xw``). ``*_cell`` is their
composition: one step from a raw input, as ``torch.nn.*Cell`` computes it.

The LSTM variants are arguments of the same functions, so that they compose:

* peephole (Gers & Schmidhuber 2000): ``lstm_step(..., peephole=(w_ci, w_cf, w_co))``
* layer norm (Ba et al. 2016): ``input_projection(..., ln_weight=)`` and
  ``lstm_step(..., ln_hh_weight=, ln_c=(gain, shift))``
* CIFG (Greff et al. 2017): ``lstm_step(..., coupled=True)``
* zoneout (Krueger et al. 2016): :func:`zoneout` applied to the new and old ``h`` and ``c``
* recurrent dropout (Gal & Ghahramani 2016): ``h_{t-1} * mask`` passed as ``hx[0]``
* weight drop (Merity et al. 2017): ``w_hh * mask`` passed as ``w_hh``
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

LAYER_NORM_EPS = 1e-5

# The one gate order of lstmkit: torch's stacking of the weight blocks, and the field order of
# every tuple of gates (LSTMGates, GateActivations, GateWeights, the fused kernel's outputs).
LSTM_GATES = ("i", "f", "g", "o")


class LSTMGates(NamedTuple):
    """The activated gates of one LSTM step, each (N, H), in :data:`LSTM_GATES` order."""

    i: Tensor
    f: Tensor
    g: Tensor
    o: Tensor


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Layer normalisation over the last dimension with gain ``weight`` and shift ``bias``."""
    return F.layer_norm(x, (x.shape[-1],), weight, bias, LAYER_NORM_EPS)


def input_projection(
    input: Tensor, w_ih: Tensor, b_ih: Tensor | None = None, ln_weight: Tensor | None = None
) -> Tensor:
    """``W_ih x + b_ih`` for ``input`` of shape ``(*, H_in)``; returns ``(*, G*H)``.

    With ``ln_weight`` (layer-normalised LSTM) the product is normalised before the bias is
    added: ``LN(W_ih x) + b_ih``.
    """
    if ln_weight is None:
        return F.linear(input, w_ih, b_ih)
    xw = layer_norm(F.linear(input, w_ih), ln_weight)
    return xw if b_ih is None else xw + b_ih


def _recurrent_projection(
    h: Tensor, w_hh: Tensor, b_hh: Tensor | None, ln_weight: Tensor | None = None
) -> Tensor:
    if ln_weight is None:
        return F.linear(h, w_hh, b_hh)
    hw = layer_norm(F.linear(h, w_hh), ln_weight)
    return hw if b_hh is None else hw + b_hh


def lstm_step(
    xw: Tensor,
    hx: tuple[Tensor, Tensor],
    w_hh: Tensor,
    b_hh: Tensor | None = None,
    w_hr: Tensor | None = None,
    *,
    peephole: tuple[Tensor | None, Tensor, Tensor] | None = None,
    ln_hh_weight: Tensor | None = None,
    ln_c: tuple[Tensor, Tensor | None] | None = None,
    coupled: bool = False,
) -> tuple[Tensor, Tensor, LSTMGates]:
    """One LSTM step from the projected input ``xw = W_ih x_t + b_ih`` of shape (N, G*H).

    Follows the equations of :class:`lstmkit.nn.LSTM` line by line (see there).

    Args:
        hx: ``(h_{t-1}, c_{t-1})`` of shapes (N, H_out) and (N, H).
        peephole: ``(w_ci, w_cf, w_co)`` diagonal peephole weights, each (H); ``w_ci`` is
            ``None`` when ``coupled``.
        ln_hh_weight: layer-norm gain (G*H) for the recurrent pre-activation.
        ln_c: ``(gain, bias)`` of the layer norm applied to ``c_t`` before ``tanh``.
        coupled: CIFG, ``i_t = 1 - f_t``; ``xw`` and ``w_hh`` then hold ``f | g | o`` only.

    Returns:
        ``h_t`` (N, H_out), ``c_t`` (N, H) and the activated gates, an :class:`LSTMGates`.
    """
    h, c = hx
    gates = xw + _recurrent_projection(h, w_hh, b_hh, ln_hh_weight)  # (N, G*H), LSTM_GATES
    return lstm_pointwise(gates, c, w_hr, peephole=peephole, ln_c=ln_c, coupled=coupled)


def lstm_pointwise(
    gates: Tensor,
    c: Tensor,
    w_hr: Tensor | None = None,
    *,
    peephole: tuple[Tensor | None, Tensor, Tensor] | None = None,
    ln_c: tuple[Tensor, Tensor | None] | None = None,
    coupled: bool = False,
) -> tuple[Tensor, Tensor, LSTMGates]:
    """The rest of :func:`lstm_step` once the pre-activations ``gates = W_ih x_t + b_ih +
    W_hh h_{t-1} + b_hh`` (N, G*H) are summed: the gates, ``c_t``, ``h_t`` (and the
    projection ``W_hr``). Fast paths that compute the products their own way
    (:mod:`lstmkit.kernels.short_step`) finish each step here."""
    if coupled:
        f, g, o = gates.chunk(3, -1)
        if peephole is not None:
            f = f + peephole[1] * c
        f = torch.sigmoid(f)
        i = 1.0 - f
    else:
        i, f, g, o = gates.chunk(4, -1)
        if peephole is not None:
            i = i + peephole[0] * c
            f = f + peephole[1] * c
        i = torch.sigmoid(i)
        f = torch.sigmoid(f)
    g = torch.tanh(g)
    c = f * c + i * g
    if peephole is not None:
        o = o + peephole[2] * c
    o = torch.sigmoid(o)
    h = o * torch.tanh(c if ln_c is None else layer_norm(c, *ln_c))
    if w_hr is not None:
        h = F.linear(h, w_hr)
    return h, c, LSTMGates(i=i, f=f, g=g, o=o)


def lstm_cell(
    input: Tensor,
    hx: tuple[Tensor, Tensor],
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    w_hr: Tensor | None = None,
    *,
    peephole: tuple[Tensor | None, Tensor, Tensor] | None = None,
    ln_ih_weight: Tensor | None = None,
    ln_hh_weight: Tensor | None = None,
    ln_c: tuple[Tensor, Tensor | None] | None = None,
    coupled: bool = False,
) -> tuple[Tensor, Tensor]:
    """One LSTM step from the raw input ``x_t`` (N, H_in); returns ``(h_t, c_t)``.

    Equal to ``torch.nn.LSTMCell`` with the same weights when no variant argument is given.
    """
    xw = input_projection(input, w_ih, b_ih, ln_ih_weight)
    h, c, _ = lstm_step(
        xw,
        hx,
        w_hh,
        b_hh,
        w_hr,
        peephole=peephole,
        ln_hh_weight=ln_hh_weight,
        ln_c=ln_c,
        coupled=coupled,
    )
    return h, c


def zoneout(new: Tensor, old: Tensor, mask: Tensor) -> Tensor:
    """Zoneout (Krueger et al. 2016): units where ``mask`` is true keep their previous value.

    ``h_t = d_t ⊙ h_{t-1} + (1 - d_t) ⊙ h̃_t`` with ``d_t`` the Bernoulli(p) ``mask``.
    """
    return torch.where(mask, old, new)


def gru_step(
    xw: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None = None
) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    """One GRU step from ``xw = W_ih x_t + b_ih`` (N, 3H), as ``torch.nn.GRU`` computes it
    (equations in :class:`lstmkit.nn.GRU`). Returns ``h_t`` (N, H) and the gates ``(r, z, n)``.
    """
    x_r, x_z, x_n = xw.chunk(3, -1)
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, -1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1.0 - z) * n + z * h, (r, z, n)


def gru_cell(
    input: Tensor,
    hx: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
) -> Tensor:
    """One GRU step from the raw input (N, H_in); equal to ``torch.nn.GRUCell``."""
    return gru_step(F.linear(input, w_ih, b_ih), hx, w_hh, b_hh)[0]


_NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}


def rnn_step(
    xw: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None = None, nonlinearity: str = "tanh"
) -> Tensor:
    """One Elman step: ``h_t = φ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``, φ tanh or relu."""
    return _NONLINEARITIES[nonlinearity](xw + F.linear(h, w_hh, b_hh))


def rnn_cell(
    input: Tensor,
    hx: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    nonlinearity: str = "tanh",
) -> Tensor:
    """One Elman step from the raw input (N, H_in); equal to ``torch.nn.RNNCell``."""
    return rnn_step(F.linear(input, w_ih, b_ih), hx, w_hh, b_hh, nonlinearity)
