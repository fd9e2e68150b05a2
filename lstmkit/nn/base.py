"""Sequence machinery shared by :class:`LSTM`, :class:`GRU` and :class:`RNN`.

A layer owns parameters in ``torch.nn.RNNBase``'s names and layout, turns every accepted input
form (padded, ``batch_first``, unbatched, ``PackedSequence``, padded + ``lengths``) into one
time-major padded tensor with optional lengths, runs the layers and directions, and turns the
result back into the caller's form. Subclasses supply one direction of one layer
(:meth:`RecurrentBase._run_direction`); no hidden state is kept between calls.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from lstmkit.kernels.fused_lstm import needs_autograd_ops
from lstmkit.kernels.torch_rnn import torch_rnn, torch_rnn_packed

State = tuple[Tensor, ...]
StepFn = Callable[[Tensor, State, int], tuple[State, tuple[Tensor, ...]]]


def check_probability(value: Any, name: str) -> float:
    """Return ``value`` as a float in [0, 1] or raise torch's error for ``dropout``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Number) or not 0 <= value <= 1:
        raise ValueError(
            f"{name} should be a number in range [0, 1] representing the probability of an "
            f"element being zeroed, got {value!r}"
        )
    return float(value)


def check_size(value: Any, name: str) -> int:
    """Return ``value`` if it is a positive int, else raise torch's TypeError/ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be greater than zero")
    return value


def suffix(layer: int, direction: int) -> str:
    """Torch's parameter-name suffix: ``_l{layer}`` plus ``_reverse`` for direction 1."""
    return f"_l{layer}" + ("_reverse" if direction == 1 else "")


def _reverse(x: Tensor, index: Tensor | None) -> Tensor:
    """Reverse time (dim 0) within each sequence's length; an involution."""
    if index is None:
        return x.flip(0)
    return x.gather(0, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))


class RecurrentBase(nn.Module):
    """Base class: parameters, input forms, layers and directions (see module docstring)."""

    _name = "RNN"
    _has_cell = False  # True for the LSTM, whose state is (h, c)
    _implementations: tuple[str, ...] = ("auto", "reference", "torch")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        implementation: str = "auto",
    ) -> None:
        super().__init__()
        if implementation not in self._implementations:
            raise ValueError(
                f"implementation must be one of {', '.join(self._implementations)}; "
                f"got {implementation!r}"
            )
        self.implementation = implementation
        for flag, name in ((bias, "bias"), (batch_first, "batch_first")):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} should be of type bool, got: {type(flag).__name__}")
        self.input_size = check_size(input_size, "input_size")
        self.hidden_size = check_size(hidden_size, "hidden_size")
        self.num_layers = check_size(num_layers, "num_layers")
        self.dropout = check_probability(dropout, "dropout")
        if isinstance(proj_size, bool) or not isinstance(proj_size, int) or proj_size < 0:
            raise ValueError(
                "proj_size should be a positive integer or zero to disable projections"
            )
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if self.dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                f"num_layers={num_layers}",
                stacklevel=3,
            )
        self.bias = bias
        self.batch_first = batch_first
        self.bidirectional = bool(bidirectional)
        self.proj_size = proj_size

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Size of ``h`` per direction: ``proj_size`` if projections are on, else hidden_size."""
        return self.proj_size or self.hidden_size

    def _create_parameters(self, gate_size: int, device=None, dtype=None) -> None:
        """Register torch's parameters for every layer and direction, then the subclass's."""
        factory = {"device": device, "dtype": dtype}
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else self.output_size * self.num_directions
            for direction in range(self.num_directions):
                sfx = suffix(layer, direction)
                params = {
                    "weight_ih": torch.empty(gate_size, layer_input, **factory),
                    "weight_hh": torch.empty(gate_size, self.output_size, **factory),
                }
                if self.bias:
                    params["bias_ih"] = torch.empty(gate_size, **factory)
                    params["bias_hh"] = torch.empty(gate_size, **factory)
                if self.proj_size > 0:
                    params["weight_hr"] = torch.empty(self.proj_size, self.hidden_size, **factory)
                params.update(self._extra_parameters(factory))
                for name, value in params.items():
                    self.register_parameter(name + sfx, nn.Parameter(value))
        self.reset_parameters()

    def _extra_parameters(self, factory: dict) -> dict[str, Tensor]:
        """Variant parameters of one layer and direction, by name without suffix."""
        return {}

    def reset_parameters(self) -> None:
        """Torch's init: every parameter uniform in (-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def flatten_parameters(self) -> None:
        """No-op kept for code written against ``torch.nn.RNNBase``."""

    def param(self, name: str, layer: int, direction: int = 0) -> Tensor | None:
        """The parameter ``{name}_l{layer}[_reverse]``, or ``None`` if this layer has none."""
        return getattr(self, name + suffix(layer, direction), None)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        for name, default in (
            ("proj_size", 0),
            ("num_layers", 1),
            ("bias", True),
            ("batch_first", False),
            ("dropout", 0.0),
            ("bidirectional", False),
        ):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s

    # -- state --------------------------------------------------------------------------

    def _state_sizes(self) -> tuple[int, ...]:
        """Feature size of each state tensor: (H_out,) or (H_out, H) for the LSTM."""
        return (self.output_size, self.hidden_size) if self._has_cell else (self.output_size,)

    def _check_hx(self, hx: Any, x: Tensor, is_batched: bool) -> State:
        """Validate the initial state and return it as a tuple of (L*D, N, *) tensors."""
        n = x.size(1)
        rows = self.num_layers * self.num_directions
        if hx is None:
            return tuple(x.new_zeros(rows, n, size) for size in self._state_sizes())
        if self._has_cell:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"{self._name}: hx must be a tuple (h_0, c_0) of two tensors")
            states = tuple(hx)
        else:
            if not isinstance(hx, Tensor):
                raise TypeError(f"{self._name}: hx must be a tensor, got {type(hx).__name__}")
            states = (hx,)
        want = 3 if is_batched else 2
        if any(s.dim() != want for s in states):
            form = "batched 3-D" if is_batched else "unbatched 2-D"
            dims = ", ".join(f"{s.dim()}-D" for s in states)
            if self._has_cell:
                raise RuntimeError(
                    f"For {form} input, hx and cx should also be {want}-D but got ({dims}) tensors"
                )
            raise RuntimeError(
                f"For {form} input, hx should also be {want}-D but got {dims} tensor"
            )
        if not is_batched:
            states = tuple(s.unsqueeze(1) for s in states)
        for k, (s, size) in enumerate(zip(states, self._state_sizes())):
            expected = (rows, n, size)
            if tuple(s.shape) != expected:
                which = f"hidden[{k}]" if self._has_cell else "hidden"
                got = list(s.shape if is_batched else s.squeeze(1).shape)
                shown = expected if is_batched else (rows, size)
                raise RuntimeError(f"Expected {which} size {shown}, got {got}")
            if s.device != x.device:
                raise RuntimeError(
                    "Input and hidden tensors are not at the same device, found input tensor "
                    f"at {x.device} and hidden tensor at {s.device}"
                )
            if s.dtype != x.dtype and not torch.is_autocast_enabled(x.device.type):
                raise ValueError(f"hx dtype ({s.dtype}) does not match input dtype ({x.dtype})")
        return states

    # -- input forms ----------------------------------------------------------------------

    def _check_input(self, x: Tensor) -> None:
        weight = self.weight_ih_l0
        if x.device != weight.device:
            raise RuntimeError(
                "Input and parameter tensors are not at the same device, found input tensor "
                f"at {x.device} and parameter tensor at {weight.device}"
            )
        if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
            # torch's words for all three layers ("RNN"), which its own tests match on
            raise ValueError(
                f"RNN input dtype ({x.dtype}) does not match weight dtype ({weight.dtype}). "
                f"Convert input: input.to({weight.dtype}), or convert model: model.to({x.dtype})"
            )
        if x.size(-1) != self.input_size:
            raise RuntimeError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                f"got {x.size(-1)}"
            )
        if x.size(0) == 0:
            raise RuntimeError(
                f"Expected sequence length to be larger than 0 in RNN ({self._name} input of "
                f"{x.size(1)} sequences with no time step)"
            )

    @staticmethod
    def _check_lengths(lengths: Any, x: Tensor) -> Tensor | None:
        """Validate ``lengths`` (N,) against the time-major input (L, N, H_in)."""
        steps, n = x.shape[:2]
        lengths = torch.as_tensor(lengths)
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise TypeError(f"lengths must hold integers, got dtype {lengths.dtype}")
        if lengths.dim() != 1 or lengths.numel() != n:
            raise ValueError(
                f"lengths must have one entry per sequence in the batch: expected shape ({n},), "
                f"got {tuple(lengths.shape)}"
            )
        for bad, what in ((lengths <= 0, "must be positive"), (lengths > steps, "exceeds")):
            if bool(bad.any()):
                k = int(bad.nonzero()[0, 0])
                detail = f"the input's sequence length {steps}" if what == "exceeds" else ""
                raise ValueError(f"lengths[{k}] = {int(lengths[k])} {what} {detail}".rstrip())
        if bool((lengths == steps).all()):
            return None  # every sequence is full: no masking needed
        return lengths.to(device=x.device, dtype=torch.long)

    def _forward(
        self, input: Tensor | PackedSequence, hx: Any, lengths: Any, collect: bool
    ) -> tuple[Tensor | PackedSequence, State, tuple[Tensor, ...] | None]:
        """Run the stack on any input form; returns output, final states and gates (or None).

        The final states are (L*D, N, *) (unbatched: (L*D, *)); the gates, when collected,
        are (L*D, L, N, H) (``batch_first``: (L*D, N, L, H); unbatched: (L*D, L, H)).
        """
        packed = isinstance(input, PackedSequence)
        if packed:
            if lengths is not None:
                raise ValueError("lengths must not be given with a PackedSequence input")
            direct = self._packed_on_torch_kernel(input, hx, collect)
            if direct is not None:
                return direct
            x, lengths = pad_packed_sequence(input)  # (L, N, H_in), the caller's batch order
            packed_lengths = lengths
            is_batched = True
        else:
            if not isinstance(input, Tensor):
                raise TypeError(f"{self._name}: input must be a Tensor or PackedSequence")
            if input.dim() not in (2, 3):
                raise ValueError(
                    f"{self._name}: Expected input to be 2D or 3D, got {input.dim()}D instead"
                )
            is_batched = input.dim() == 3
            if not is_batched:
                if lengths is not None:
                    raise ValueError("lengths requires batched 3-D input, got unbatched 2-D input")
                x = input.unsqueeze(1)
            else:
                x = input.transpose(0, 1) if self.batch_first else input
        self._check_input(x)
        if lengths is not None:
            lengths = self._check_lengths(lengths, x)
        states = self._check_hx(hx, x, is_batched)

        output, final, gates = self._run(x, states, lengths, collect)

        if packed:
            output = _repack(output, packed_lengths, input)
        elif not is_batched:
            output = output.squeeze(1)
            final = tuple(s.squeeze(1) for s in final)
            gates = None if gates is None else tuple(g.squeeze(2) for g in gates)
        elif self.batch_first:
            output = output.transpose(0, 1)
            gates = None if gates is None else tuple(g.transpose(1, 2) for g in gates)
        return output, final, gates

    def _packed_on_torch_kernel(
        self, input: PackedSequence, hx: Any, collect: bool
    ) -> tuple[PackedSequence, State, None] | None:
        """A PackedSequence given as it is to torch's kernel, as torch.nn.LSTM does (no padding
        and repacking around it); ``None`` where the rules send the call elsewhere."""
        batch_sizes = input.batch_sizes
        if input.data.dim() != 2:
            return None  # the padded path's checks name the problem
        # the padded input's shape, dtype and device, for the checks, without materialising it
        like = input.data.new_empty(()).expand(
            len(batch_sizes), int(batch_sizes[0]), input.data.size(1)
        )
        self._check_input(like)  # in the padded path's order, so errors read the same
        states = self._check_hx(hx, like, is_batched=True)
        if not self._use_torch_kernel(collect, like, batch_sizes):
            return None
        if input.sorted_indices is not None:  # hx is in the caller's order, the data sorted
            states = tuple(s.index_select(1, input.sorted_indices) for s in states)
        data, final = torch_rnn_packed(
            self._kernel_mode,
            input.data,
            batch_sizes,
            states,
            self._kernel_weights(),
            self.bias,
            self.num_layers,
            self.dropout,
            self.training,
            self.bidirectional,
        )
        if input.unsorted_indices is not None:
            final = tuple(s.index_select(1, input.unsorted_indices) for s in final)
        output = PackedSequence(data, batch_sizes, input.sorted_indices, input.unsorted_indices)
        return output, final, None

    @property
    def _kernel_mode(self) -> str:
        """The name of torch's kernel for this layer (``torch.lstm``, ``torch.gru``, ...)."""
        return self._name

    @property
    def _all_weights(self) -> list[list[str]]:
        """Parameter names per layer and direction, torch's first (w_ih, w_hh[, b_ih, b_hh]
        [, w_hr]), then the variants' in registration order."""
        torch_names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if self.bias else [])
        torch_names += ["weight_hr"] if self.proj_size > 0 else []
        extra = list(self._extra_parameters({"device": "meta"}))
        return [
            [name + suffix(layer, direction) for name in torch_names + extra]
            for layer in range(self.num_layers)
            for direction in range(self.num_directions)
        ]

    @property
    def _flat_weights_names(self) -> list[str]:
        """Torch's flat weight names: per layer and direction w_ih, w_hh[, b_ih, b_hh][, w_hr]."""
        per_group = 2 + 2 * self.bias + (self.proj_size > 0)
        return [name for group in self._all_weights for name in group[:per_group]]

    @property
    def _flat_weights(self) -> list[Tensor]:
        """Torch's flat weight list, as ``torch.nn.RNNBase._flat_weights`` (read at each access,
        so weights replaced by ``torch.nn.utils.weight_norm`` and the like are current)."""
        return [getattr(self, name) for name in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[Tensor]]:
        """The parameters of each layer and direction, as ``torch.nn.RNNBase.all_weights``
        (for an LSTM with variants, their parameters follow torch's in each group)."""
        return [[getattr(self, name) for name in group] for group in self._all_weights]

    def _kernel_weights(self) -> list[Tensor]:
        """The flat weights torch's kernel runs on this call (LSTM drops ``weight_hh`` here)."""
        return self._flat_weights

    def active_variants(self) -> list[str]:
        """Options in effect now that torch's kernels lack (none for GRU and RNN)."""
        return []

    def _use_torch_kernel(self, collect: bool, x: Tensor, lengths: Tensor | None) -> bool:
        """Whether this call runs torch's fused kernel (see the class docstring's rules)."""
        if self.implementation == "reference":
            return False
        # weight_drop only changes the weights of one call, so torch's kernel runs it on the
        # dropped weights (as AWD-LSTM does with cuDNN).
        reasons = [v for v in self.active_variants() if v != "weight_drop"]
        reasons += ["return_gates"] if collect else []
        if self.implementation == "torch" and reasons:
            raise ValueError(
                f"implementation='torch' runs standard configurations only; active now: "
                f"{', '.join(reasons)}"
            )
        if self.implementation == "auto" and needs_autograd_ops(x):
            return False  # torch.func.vmap cannot batch torch's kernel; the reference path runs
        return not reasons and self.implementation in ("auto", "torch")  # "fused": lstmkit's

    def _run(
        self, x: Tensor, states: State, lengths: Tensor | None, collect: bool
    ) -> tuple[Tensor, State, tuple[Tensor, ...] | None]:
        if self._use_torch_kernel(collect, x, lengths):
            output, final = torch_rnn(
                self._kernel_mode,
                x,
                states,
                self._kernel_weights(),
                self.bias,
                self.num_layers,
                self.dropout,
                self.training,
                self.bidirectional,
                lengths,
            )
            return output, final, None
        steps = x.size(0)
        valid = rev_index = None
        if lengths is not None:
            t = torch.arange(steps, device=x.device).unsqueeze(1)  # (L, 1)
            valid = t < lengths  # (L, N)
            rev_index = torch.where(valid, lengths - 1 - t, t)
        finals: list[list[Tensor]] = [[] for _ in states]
        all_gates: list[tuple[Tensor, ...]] = []
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                row = layer * self.num_directions + direction
                state = tuple(s[row] for s in states)
                seq = layer_input if direction == 0 else _reverse(layer_input, rev_index)
                out, state, gates = self._run_direction(
                    seq, state, layer, direction, valid, collect
                )
                if direction == 1:
                    out = _reverse(out, rev_index)
                    gates = tuple(_reverse(g, rev_index) for g in gates)
                outputs.append(out)
                all_gates.append(gates)
                for acc, s in zip(finals, state):
                    acc.append(s)
            layer_input = outputs[0] if len(outputs) == 1 else torch.cat(outputs, -1)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=True)
        final = tuple(torch.stack(acc) for acc in finals)
        gates = tuple(torch.stack(g) for g in zip(*all_gates)) if collect else None
        return layer_input, final, gates

    def _run_direction(
        self,
        x: Tensor,
        state: State,
        layer: int,
        direction: int,
        valid: Tensor | None,
        collect: bool,
    ) -> tuple[Tensor, State, tuple[Tensor, ...]]:
        """Run one layer in one direction over time-major ``x`` (L, N, H_in)."""
        raise NotImplementedError

    @staticmethod
    def _scan(
        xw: Tensor, state: State, step: StepFn, valid: Tensor | None, collect: bool
    ) -> tuple[Tensor, State, tuple[Tensor, ...]]:
        """Apply ``step`` over time. Past a sequence's length its state is frozen (so the
        final state is the one at its own last step) and its output and gates are zero."""
        outputs, extras = [], []
        # unbind, not xw[t]: its backward stacks the per-step gradients once instead of
        # scattering each into a zero tensor of the whole sequence (quadratic in L)
        for t, xw_t in enumerate(xw.unbind(0)):
            new_state, extra = step(xw_t, state, t)
            if valid is not None:
                keep = valid[t].unsqueeze(-1)  # (N, 1)
                new_state = tuple(torch.where(keep, new, old) for new, old in zip(new_state, state))
            state = new_state
            outputs.append(state[0])
            if collect:
                extras.append(extra)
        output = torch.stack(outputs)  # (L, N, H_out)
        gates = tuple(torch.stack(g) for g in zip(*extras)) if collect else ()
        if valid is not None:
            pad = ~valid.unsqueeze(-1)  # (L, N, 1)
            output = output.masked_fill(pad, 0.0)
            gates = tuple(g.masked_fill(pad, 0.0) for g in gates)
        return output, state, gates


def _repack(output: Tensor, lengths: Tensor, like: PackedSequence) -> PackedSequence:
    """Pack the padded, caller-ordered ``output`` (L, N, *) in exactly ``like``'s layout."""
    if like.sorted_indices is not None:
        output = output.index_select(1, like.sorted_indices)
        lengths = lengths[like.sorted_indices.cpu()]
    data = pack_padded_sequence(output, lengths, enforce_sorted=True).data
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


def as_pair(value: float | Sequence[float], name: str) -> tuple[float, float]:
    """A probability or a pair of probabilities (for h and c) as a validated pair."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be a probability or a pair (p_h, p_c), got {value!r}")
    return check_probability(pair[0], name), check_probability(pair[1], name)
