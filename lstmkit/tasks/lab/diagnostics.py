"""How much gradient signal reaches each step back in time, and what the gates are doing.

For a unidirectional ``lstmkit.nn`` ``LSTM``, ``GRU`` or ``RNN`` and a batch, with the loss
taken at the last step only:

* :func:`gradient_profile` gives the norm of ∂L/∂h_t (and ∂L/∂c_t for the LSTM) for every
  t and layer, and the Frobenius norm of ∂h_T/∂h_t, the product of the recurrent Jacobians,
  for the last layer. All come from autograd in one backward pass each (the Jacobians are
  batched over the H output units with ``is_grads_batched``), not one pass per t: the
  sequence is unrolled with :mod:`lstmkit.nn.functional` on the module's own weights, and a
  zero "probe" is added to every state so that the gradient with respect to the probe at step
  t is exactly the gradient with respect to the state at step t.
* :func:`gate_statistics` gives each gate's mean and the fraction of units saturated near 0
  or near 1 at every step (from ``return_gates``).

The random variants (zoneout, recurrent dropout, weight drop) are off here, as in ``eval()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from lstmkit.nn import GRU, LSTM, RNN
from lstmkit.nn import functional as LF

SATURATION = 0.1  # a gate below 0.1 or above 0.9 counts as saturated


@dataclass
class GradientProfile:
    """Batch means of per-sample norms, indexed by time step t = 0 .. L-1.

    ``dh`` (layers, L): ||∂L/∂h_t||; ``dc`` (layers, L) for the LSTM, else ``None``;
    ``jacobian`` (L,): ||∂h_L-1/∂h_t||_F of the last layer (1 at t = L-1).
    """

    dh: Tensor
    dc: Tensor | None
    jacobian: Tensor

    def as_dict(self) -> dict[str, list]:
        out = {"dh": self.dh.tolist(), "jacobian": self.jacobian.tolist()}
        if self.dc is not None:
            out["dc"] = self.dc.tolist()
        return out


def _step_function(module, layer: int) -> tuple[Callable, Callable, int]:
    """(projection, step, number of state tensors) of one layer, forward direction."""

    def p(name: str) -> Tensor | None:
        return module.param(name, layer, 0)

    if isinstance(module, LSTM):
        peephole = (p("weight_ci"), p("weight_cf"), p("weight_co")) if module.peephole else None
        ln_c = (p("ln_c_weight"), p("ln_c_bias")) if module.layer_norm else None

        def project(x: Tensor) -> Tensor:
            return LF.input_projection(x, p("weight_ih"), p("bias_ih"), p("ln_ih_weight"))

        def step(xw_t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            h, c, _ = LF.lstm_step(
                xw_t,
                state,
                p("weight_hh"),
                p("bias_hh"),
                p("weight_hr"),
                peephole=peephole,
                ln_hh_weight=p("ln_hh_weight"),
                ln_c=ln_c,
                coupled=module.coupled,
            )
            return h, c

        return project, step, 2

    def project(x: Tensor) -> Tensor:
        return LF.input_projection(x, p("weight_ih"), p("bias_ih"))

    if isinstance(module, GRU):

        def step(xw_t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            return (LF.gru_step(xw_t, state[0], p("weight_hh"), p("bias_hh"))[0],)

    else:

        def step(xw_t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            return (LF.rnn_step(xw_t, state[0], p("weight_hh"), p("bias_hh"), module.nonlinearity),)

    return project, step, 1


def _check(module) -> None:
    if not isinstance(module, (LSTM, GRU, RNN)):
        raise TypeError(f"expected an lstmkit.nn LSTM, GRU or RNN, got {type(module).__name__}")
    if module.bidirectional:
        raise ValueError("gradient diagnostics need a unidirectional model")


def gradient_profile(
    module: LSTM | GRU | RNN,
    x: Tensor,
    loss_fn: Callable[[Tensor], Tensor] | None = None,
    jacobian: bool = True,
) -> GradientProfile:
    """Gradient norms at every step for time-major ``x`` (L, N, H_in); see the module doc.

    ``loss_fn`` maps the last layer's final hidden state (N, H_out) to a scalar; default its
    sum (a unit readout).
    """
    _check(module)
    steps, batch = x.shape[:2]
    layer_input = x
    probes: list[list[tuple[Tensor, ...]]] = []  # [layer][t] -> zero tensors on the states
    last_hidden: list[Tensor] = []
    for layer in range(module.num_layers):
        project, step, n_states = _step_function(module, layer)
        sizes = (module.output_size, module.hidden_size)[:n_states]
        state = tuple(x.new_zeros(batch, size) for size in sizes)
        xw = project(layer_input)  # (L, N, G*H)
        layer_probes, outputs = [], []
        for xw_t in xw.unbind(0):
            state = step(xw_t, state)
            zeros = tuple(torch.zeros_like(s, requires_grad=True) for s in state)
            state = tuple(s + z for s, z in zip(state, zeros))
            layer_probes.append(zeros)
            outputs.append(state[0])
        probes.append(layer_probes)
        last_hidden = outputs
        layer_input = torch.stack(outputs)  # (L, N, H_out)
    h_last = last_hidden[-1]
    loss = (loss_fn or torch.sum)(h_last)

    flat = [z for layer_probes in probes for zs in layer_probes for z in zs]
    # allow_unused: c at the last step does not reach a loss on h alone (its gradient is 0)
    grads = torch.autograd.grad(loss, flat, retain_graph=jacobian, allow_unused=True)
    norms = torch.stack(
        [x.new_zeros(()) if g is None else g.flatten(1).norm(dim=1).mean() for g in grads]
    )
    per_state = norms.view(module.num_layers, steps, -1)  # (layers, L, n_states)
    dh = per_state[..., 0]
    dc = per_state[..., 1] if per_state.size(-1) == 2 else None

    if jacobian:
        size = h_last.size(1)
        basis = torch.eye(size, dtype=x.dtype, device=x.device)  # (H, H)
        grad_outputs = basis.unsqueeze(1).expand(size, batch, size)  # (H, N, H)
        h_probes = [zs[0] for zs in probes[-1]]
        rows = torch.autograd.grad(h_last, h_probes, grad_outputs, is_grads_batched=True)
        # rows[t][k, n] is row k of ∂h_L-1/∂h_t for sample n
        jac = torch.stack([r.permute(1, 0, 2).flatten(1).norm(dim=1).mean() for r in rows])
    else:
        jac = torch.full((steps,), float("nan"))
    return GradientProfile(dh.detach(), None if dc is None else dc.detach(), jac.detach())


@torch.no_grad()
def gate_statistics(module: LSTM, x: Tensor) -> dict[str, dict]:
    """Per gate (f, i, o, g) and step: mean activation and fractions near 0 and near 1.

    Each value is a list over layers*directions of lists over time (batch and units averaged).
    For the candidate g (a tanh), "near 0/1" reads as near -1/+1.
    """
    if not isinstance(module, LSTM):
        raise TypeError(f"gate statistics need an lstmkit.nn LSTM, got {type(module).__name__}")
    was_training = module.training
    module.eval()
    _, _, gates = module(x, return_gates=True)
    module.train(was_training)
    batch_dim = 1 if module.batch_first else 2
    stats = {}
    for name in ("f", "i", "o", "g"):
        value = getattr(gates, name)  # (layers*D, L, N, H) or batch-first
        low, high = (
            (-1 + 2 * SATURATION, 1 - 2 * SATURATION)
            if name == "g"
            else (SATURATION, 1 - SATURATION)
        )
        dims = (batch_dim, -1)
        stats[name] = {
            "mean": value.mean(dims).tolist(),
            "near_0": (value < low).double().mean(dims).tolist(),
            "near_1": (value > high).double().mean(dims).tolist(),
        }
    return stats
