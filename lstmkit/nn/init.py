"""Initialisations that encode a prior on time scales.

:func:`chrono_init_` is the chrono initialisation of Tallec & Ollivier (2018, "Can recurrent
neural networks warp time?"): a unit whose forget bias is ``b`` keeps its content for about
``1 + e^b`` steps, so drawing ``b_f = log(U(1, T_max - 1))`` spreads the units' memory spans
over ``[1, T_max]``; the input gate starts closed in proportion (``b_i = -b_f``), so the cells
do not fill with every input they see. Long-time-lag problems (the adding problem at T = 200
and beyond) are learnable from it where a constant forget bias leaves the model at the
predict-the-mean loss for a long time.
"""

from __future__ import annotations

import torch

from lstmkit.nn.lstm import LSTM, gate_names


@torch.no_grad()
def chrono_init_(lstm: LSTM, t_max: float, generator: torch.Generator | None = None) -> LSTM:
    """Set every layer's and direction's forget and input biases by chrono initialisation.

    The forget block of ``bias_ih`` gets ``log(u)``, ``u ~ U(1, t_max - 1)`` per unit, the
    input block ``-log(u)``; those blocks of ``bias_hh`` are zeroed, so these are the total
    biases. With ``coupled=True`` there is no input gate (``i = 1 - f``) and only the forget
    bias is set. Returns ``lstm``.

    Args:
        lstm: an :class:`lstmkit.nn.LSTM` with ``bias=True``.
        t_max: the longest dependency expected, in steps (> 2).
        generator: optional random generator for the draw.

    Example::

        >>> from lstmkit.nn import LSTM
        >>> rnn = chrono_init_(LSTM(2, 8), t_max=100)
        >>> b_f = rnn.bias_ih_l0[8:16]
        >>> bool((b_f >= 0).all() and (b_f <= torch.log(torch.tensor(99.0))).all())
        True
    """
    if not isinstance(lstm, LSTM):
        raise TypeError(f"chrono_init_ expects an lstmkit.nn.LSTM, got {type(lstm).__name__}")
    if not lstm.bias:
        raise ValueError("chrono_init_ sets gate biases: the LSTM was built with bias=False")
    if not t_max > 2:
        raise ValueError(f"t_max must be > 2, got {t_max}")
    names, hidden = gate_names(lstm.coupled), lstm.hidden_size
    for layer in range(lstm.num_layers):
        for direction in range(lstm.num_directions):
            b_ih, b_hh = (
                lstm.param("bias_ih", layer, direction),
                lstm.param("bias_hh", layer, direction),
            )
            u = torch.rand(hidden, generator=generator, dtype=torch.float64)
            b_f = torch.log(1 + u * (t_max - 2))  # log(U(1, t_max - 1))
            for gate, value in (("f", b_f), ("i", -b_f)):
                if gate in names:
                    block = slice(names.index(gate) * hidden, (names.index(gate) + 1) * hidden)
                    b_ih[block] = value.to(b_ih.dtype)
                    b_hh[block] = 0.0
    return lstm
