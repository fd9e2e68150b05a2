"""The LSTM layer (a sequence of steps), with its variants and gate introspection."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from lstmkit.kernels import short_step
from lstmkit.kernels.fused_lstm import fusable, lstm_direction
from lstmkit.nn import functional as LF
from lstmkit.nn.base import RecurrentBase, State, as_pair, check_probability


class GateActivations(NamedTuple):
    """Per-step gate activations and cell states returned by ``return_gates=True``.

    Each field is (num_layers * D, L, N, H) (``batch_first``: (num_layers * D, N, L, H);
    unbatched: (num_layers * D, L, H)); rows are ordered as ``h_n``'s (layer-major, forward
    direction first) and time runs forward for both directions. Steps past a sequence's
    length are zero. The gates come in lstmkit's one order, torch's ``i | f | g | o``
    (:data:`lstmkit.nn.functional.LSTM_GATES`); read them by name.
    """

    i: Tensor
    f: Tensor
    g: Tensor
    o: Tensor
    c: Tensor


class GateWeights(NamedTuple):
    """The gate matrices in the concatenated form ``W_* · [h_{t-1}, x_t] + b_*``.

    ``W_*`` is (H, H_out + H_in): its first H_out columns are torch's ``W_h*`` (rows of
    ``weight_hh``), the rest are ``W_i*`` (rows of ``weight_ih``); ``b_* = b_i* + b_h*``.
    ``W_i`` and ``b_i`` are ``None`` for a coupled (CIFG) LSTM, biases ``None`` without bias.
    Fields in the order ``i | f | g | o``, as :class:`GateActivations`; read them by name.
    """

    W_i: Tensor | None
    W_f: Tensor
    W_g: Tensor
    W_o: Tensor
    b_i: Tensor | None
    b_f: Tensor | None
    b_g: Tensor | None
    b_o: Tensor | None


class DropMasks(NamedTuple):
    """Random masks of one layer and direction for one forward call (``None`` when off).

    ``recurrent`` (N, H_out) and ``weight_hh`` (like ``weight_hh``) are scaled by 1/(1-p);
    ``zoneout_h`` (L, N, H_out) and ``zoneout_c`` (L, N, H) are boolean, true = keep old value.
    """

    recurrent: Tensor | None = None
    zoneout_h: Tensor | None = None
    zoneout_c: Tensor | None = None
    weight_hh: Tensor | None = None


def gate_names(coupled: bool) -> tuple[str, ...]:
    """The stacked weight blocks: torch's gate order, without the input gate for CIFG."""
    return tuple(name for name in LF.LSTM_GATES if not (coupled and name == "i"))


def variant_parameters(
    hidden_size: int, bias: bool, layer_norm: bool, peephole: bool, coupled: bool, factory: dict
) -> dict[str, Tensor]:
    """Uninitialised variant parameters of one LSTM layer and direction, by name."""
    gate_size = len(gate_names(coupled)) * hidden_size
    params = {}
    if peephole:
        for gate in ("f", "o") if coupled else ("i", "f", "o"):
            params[f"weight_c{gate}"] = torch.empty(hidden_size, **factory)
    if layer_norm:
        params["ln_ih_weight"] = torch.empty(gate_size, **factory)
        params["ln_hh_weight"] = torch.empty(gate_size, **factory)
        params["ln_c_weight"] = torch.empty(hidden_size, **factory)
        if bias:
            params["ln_c_bias"] = torch.empty(hidden_size, **factory)
    return params


@torch.no_grad()
def init_lstm_group(
    get: Callable[[str], Tensor | None], hidden_size: int, forget_bias: float | None, coupled: bool
) -> None:
    """After torch's uniform init: layer-norm gains 1 and shifts 0, and the forget bias.

    ``forget_bias`` goes into ``bias_ih``'s forget block with ``bias_hh``'s forget block zeroed,
    so the total forget bias is exactly ``forget_bias`` (Jozefowicz et al. 2015).
    """
    for name in ("ln_ih_weight", "ln_hh_weight", "ln_c_weight"):
        if (p := get(name)) is not None:
            p.fill_(1.0)
    if (p := get("ln_c_bias")) is not None:
        p.zero_()
    b_ih, b_hh = get("bias_ih"), get("bias_hh")
    if forget_bias is not None and b_ih is not None:
        k = gate_names(coupled).index("f")
        b_ih[k * hidden_size : (k + 1) * hidden_size] = forget_bias
        b_hh[k * hidden_size : (k + 1) * hidden_size] = 0.0


def gate_weights(
    get: Callable[[str], Tensor | None], hidden_size: int, coupled: bool
) -> GateWeights:
    """Split torch's stacked weights into the per-gate concatenated form (see GateWeights)."""
    names = gate_names(coupled)
    w = torch.cat([get("weight_hh"), get("weight_ih")], dim=1)  # (G*H, H_out + H_in)
    blocks = dict(zip(names, w.split(hidden_size)))
    b_ih, b_hh = get("bias_ih"), get("bias_hh")
    biases = dict(zip(names, (b_ih + b_hh).split(hidden_size))) if b_ih is not None else {}
    return GateWeights(
        **{f"W_{name}": blocks.get(name) for name in LF.LSTM_GATES},
        **{f"b_{name}": biases.get(name) for name in LF.LSTM_GATES},
    )


def check_forget_bias(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"forget_bias should be a number or None, got {type(value).__name__}")
    return float(value)


def bernoulli_mask(shape: Sequence[int], p: float, like: Tensor) -> Tensor:
    """A boolean mask, true with probability ``p`` (``rand < p``: cheaper than
    ``bernoulli_`` on the CPU, BENCHMARKS.md)."""
    return torch.rand(shape, dtype=like.dtype, device=like.device) < p


def _dropout_mask(shape: Sequence[int], p: float, like: Tensor) -> Tensor:
    """Keep with probability 1 - p, scaled by 1/(1 - p) (all zeros when p = 1)."""
    keep = bernoulli_mask(shape, 1.0 - p, like).to(like.dtype)
    return keep / (1.0 - p) if p < 1 else keep


class LSTM(RecurrentBase):
    r"""A multi-layer long short-term memory (LSTM) RNN over an input sequence.

    For each element of the input sequence, each layer computes (torch's notation)::

        i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
        f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
        g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
        o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        h_t = o_t ⊙ tanh(c_t)

    where ``σ`` is the sigmoid and ``⊙`` the elementwise product. This is the classic form
    ``f_t = σ(W_f·[h_{t-1}, x_t] + b_f)`` (and so on) with ``W_f = [W_hf | W_if]`` and
    ``b_f = b_if + b_hf``; :meth:`gate_weights` returns the weights in that form. In layer
    ``l > 0`` the input ``x_t`` is the output ``h_t`` of layer ``l - 1`` (both directions
    concatenated), multiplied by a Bernoulli(``dropout``) mask in training. With
    ``proj_size > 0``, ``h_t = W_hr (o_t ⊙ tanh(c_t))`` (Sak et al. 2014).

    **Variants** (keyword-only, composable; all default off):

    * ``peephole`` (Gers & Schmidhuber 2000): diagonal weights ``w_ci, w_cf, w_co`` (H) let the
      cell state into the gates: ``i_t = σ(… + w_ci ⊙ c_{t-1})``,
      ``f_t = σ(… + w_cf ⊙ c_{t-1})``, ``o_t = σ(… + w_co ⊙ c_t)``.
    * ``layer_norm`` (Ba et al. 2016, as Haste's LayerNormLSTM): the input and recurrent
      pre-activations are normalised separately over all gates, and the cell before ``tanh``::

          gates = LN(W_i x_t; γ_ih) + b_i + LN(W_h h_{t-1}; γ_hh) + b_h
          h_t   = o_t ⊙ tanh(LN(c_t; γ_c, β_c))

      (gains ``ln_ih_weight``, ``ln_hh_weight``, ``ln_c_weight`` init 1, ``ln_c_bias`` init 0;
      the biases ``b_i, b_h`` play the role of the pre-activation shifts).
    * ``coupled`` (CIFG, Greff et al. 2017): ``i_t = 1 - f_t``; the input gate has no weights,
      so the weights stack ``f | g | o`` (3H rows instead of 4H).
    * ``recurrent_dropout`` (Gal & Ghahramani 2016): ``h_{t-1}`` entering the recurrent
      product is multiplied by one dropout mask per sequence, the same at every step.
    * ``zoneout`` (Krueger et al. 2016): ``h_t = d^h_t ⊙ h_{t-1} + (1 - d^h_t) ⊙ h̃_t`` and the
      same for ``c`` with fresh Bernoulli(p) masks ``d_t`` per step; a float, or a pair
      ``(p_h, p_c)``. Identity at evaluation (no zoneout), not the expectation.
    * ``weight_drop`` (DropConnect on ``W_hh``, Merity et al. 2017 "AWD-LSTM"): one dropout
      mask on ``weight_hh`` per forward call, shared by all steps and sequences.

    The three random variants act only in training mode; in ``eval()`` they are off.

    **Implementation** (``implementation=``, default ``"auto"``): the reference path (a
    Python loop over :func:`lstmkit.nn.functional.lstm_step`) is the spec. With ``"auto"`` a
    call runs

    0. in inference (no autograd, ``eval()``), for at most 2 sequences of at most 64 steps in
       CPU float32 without ``layer_norm`` (a generated token, a session's chunk), the
       reference loop with its matrix products on cached transposed weights
       (:mod:`lstmkit.kernels.short_step`: 2.3x faster for one row than ``F.linear``;
       torch's kernel prepares its weights at every call);
    1. otherwise PyTorch's fused kernel (``torch.lstm``: oneDNN on CPU, cuDNN on CUDA) on
       this module's own parameters when no variant is active in the current mode (see
       :meth:`active_variants`: ``layer_norm``, ``peephole``, ``coupled`` always;
       ``zoneout``, ``recurrent_dropout``, ``weight_drop`` only in training),
       ``return_gates`` is ``False``, and the call is not a variable-length batch on the CPU
       with gradients enabled where (2) can run (torch's CPU kernel trains packed batches
       more slowly than (2), see BENCHMARKS.md; under ``no_grad`` it stays here, and a
       PackedSequence goes to it as it is); ``weight_drop`` alone also runs here, on the
       dropped ``weight_hh`` (one mask per call, as in AWD-LSTM);
    2. otherwise lstmkit's fused kernel (:mod:`lstmkit.kernels.fused_lstm`: the time loop
       and a hand-written backward through time in C++) for every layer and direction, when
       the tensors are CPU float32/float64 of one dtype, autocast is off and the extension is
       built (at first use; ``LSTMKIT_NO_EXTENSION=1`` turns it off); its ``return_gates``
       are detached. It keeps freed buffers for reuse (``LSTMKIT_BUFFER_CACHE_MB``, default
       1024; :func:`lstmkit.kernels.fused_lstm.empty_cache` returns them);
    3. otherwise the reference path.

    ``"reference"`` always runs the reference path, ``"torch"`` requires (1) and ``"fused"``
    prefers (2) even for standard configurations; both raise or fall back as stated. All
    paths agree to float rounding (tested in float64); in training with ``dropout > 0``
    between layers, torch's kernel draws its own dropout masks.

    Higher-order gradients are exact on every path: (2)'s gradient, when it must itself be
    differentiated (``create_graph=True``) or is batched (``is_grads_batched=True``), comes
    from autograd through the reference recurrence on the same inputs and masks. Inside
    ``torch.func`` transforms (``vmap``, ``grad``, ``jacrev``, ...) and under forward-mode AD,
    ``"auto"`` and ``"fused"`` run the reference path; ``"torch"`` runs (1), which
    ``torch.func.vmap`` cannot batch (as for ``torch.nn.LSTM``: a ``RuntimeError`` says so).

    Args:
        input_size: number of expected features in the input ``x`` (H_in).
        hidden_size: number of features in the hidden (cell) state (H).
        num_layers: number of stacked layers. Default: 1
        bias: if ``False``, no ``b_ih``/``b_hh`` (nor ``ln_c_bias``). Default: ``True``
        batch_first: if ``True``, input and output are (N, L, H) instead of (L, N, H).
            Does not apply to the hidden or cell states. Default: ``False``
        dropout: dropout on the outputs of every layer except the last. Default: 0
        bidirectional: if ``True``, a bidirectional LSTM (D = 2). Default: ``False``
        proj_size: if ``> 0``, an LSTM with projections of that size. Default: 0
        layer_norm, peephole, coupled: variants (above). Default: ``False``
        zoneout, recurrent_dropout, weight_drop: probabilities of the variants (above).
            Default: 0
        forget_bias: initial total forget-gate bias (Jozefowicz et al. 2015); ``None`` keeps
            torch's uniform init. Default: 1.0

    Inputs: input, hx, lengths, return_gates
        * **input**: (L, N, H_in), (N, L, H_in) with ``batch_first``, (L, H_in) unbatched, or
          a :class:`torch.nn.utils.rnn.PackedSequence` (then the output is packed too).
        * **hx**: optional tuple ``(h_0, c_0)`` of (D * num_layers, N, H_out) and
          (D * num_layers, N, H) (unbatched: without N). Default: zeros.
        * **lengths**: optional (N,) integers in [1, L]: sequence ``n`` is
          ``input[:lengths[n]]``; outputs past it are exactly zero and ``h_n, c_n`` are taken
          at its own last step (for the reverse direction: its first).
        * **return_gates**: also return :class:`GateActivations`. Default: ``False``

    Outputs: output, (h_n, c_n)[, gates]
        * **output**: (L, N, D * H_out) (``batch_first``: (N, L, D * H_out)), ``h_t`` of the
          last layer for every t.
        * **h_n**: (D * num_layers, N, H_out), the final hidden state of every layer and
          direction; **c_n**: (D * num_layers, N, H), the final cell state.
        * **gates**: with ``return_gates=True``, a :class:`GateActivations`.

    where H_out = ``proj_size`` if ``proj_size > 0`` else ``hidden_size``.

    Parameters have torch's names, shapes and gate order ``i|f|g|o`` (``weight_ih_l{k}``,
    ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``, ``weight_hr_l{k}``, with
    ``_reverse`` for direction 1), so ``load_state_dict`` works both ways with a
    ``torch.nn.LSTM`` of the same configuration. Variants add ``weight_c{i,f,o}_l{k}``
    (peephole) and ``ln_{ih,hh,c}_weight_l{k}``, ``ln_c_bias_l{k}`` (layer norm).

    Example::

        >>> import torch
        >>> from lstmkit.nn import LSTM
        >>> rnn = LSTM(10, 20, num_layers=2, peephole=True)
        >>> x = torch.randn(5, 3, 10)
        >>> output, (h_n, c_n) = rnn(x, lengths=torch.tensor([5, 3, 2]))
        >>> output.shape, h_n.shape, c_n.shape
        (torch.Size([5, 3, 20]), torch.Size([2, 3, 20]), torch.Size([2, 3, 20]))
    """

    _name = "LSTM"
    _has_cell = True
    _implementations = ("auto", "reference", "torch", "fused")

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
        *,
        layer_norm: bool = False,
        peephole: bool = False,
        coupled: bool = False,
        zoneout: float | tuple[float, float] = 0.0,
        recurrent_dropout: float = 0.0,
        weight_drop: float = 0.0,
        forget_bias: float | None = 1.0,
        implementation: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            implementation,
        )
        self.layer_norm = bool(layer_norm)
        self.peephole = bool(peephole)
        self.coupled = bool(coupled)
        self.zoneout = as_pair(zoneout, "zoneout")
        self.recurrent_dropout = check_probability(recurrent_dropout, "recurrent_dropout")
        self.weight_drop = check_probability(weight_drop, "weight_drop")
        self.forget_bias = check_forget_bias(forget_bias)
        self._create_parameters(len(gate_names(self.coupled)) * hidden_size, device, dtype)

    def _extra_parameters(self, factory: dict) -> dict[str, Tensor]:
        return variant_parameters(
            self.hidden_size, self.bias, self.layer_norm, self.peephole, self.coupled, factory
        )

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for layer in range(self.num_layers):
            for direction in range(self.num_directions):
                init_lstm_group(
                    lambda name: self.param(name, layer, direction),  # noqa: B023
                    self.hidden_size,
                    self.forget_bias,
                    self.coupled,
                )

    def active_variants(self) -> list[str]:
        """The variants in effect now: the random ones count only in training mode."""
        active = [name for name in ("layer_norm", "peephole", "coupled") if getattr(self, name)]
        if self.training:
            random = (
                ("zoneout", any(self.zoneout)),
                ("recurrent_dropout", self.recurrent_dropout),
                ("weight_drop", self.weight_drop),
            )
            active += [name for name, p in random if p]
        return active

    def _short_steps(self, x: Tensor) -> bool:
        """Whether this call runs (0) of the class docstring: :mod:`lstmkit.kernels.short_step`."""
        return (
            self.implementation == "auto"
            and not self.training
            and not self.layer_norm
            and short_step.eligible(x, *self._flat_weights)
        )

    def _use_torch_kernel(self, collect: bool, x: Tensor, lengths: Tensor | None) -> bool:
        if self._short_steps(x) or not super()._use_torch_kernel(collect, x, lengths):
            return False
        # On the CPU torch trains a packed batch far more slowly than an unpacked one, and than
        # lstmkit's kernel, which masks the lengths in its loop (BENCHMARKS.md); its forward
        # alone is as fast as lstmkit's or faster, so inference keeps torch's kernel.
        packed = lengths is not None and self.implementation == "auto" and torch.is_grad_enabled()
        return not (packed and fusable(x, *self._flat_weights))

    def _kernel_weights(self) -> list[Tensor]:
        weights = self._flat_weights
        if not (self.training and self.weight_drop > 0):
            return weights
        per_group = len(weights) // (self.num_layers * self.num_directions)
        for k in range(self.num_layers * self.num_directions):
            layer, direction = divmod(k, self.num_directions)
            w_hh = weights[k * per_group + 1]  # each group is w_ih, w_hh, ...
            mask = self.draw_masks(layer, direction, 0, 0, w_hh).weight_hh
            weights[k * per_group + 1] = w_hh * mask
        return weights

    def gate_weights(self, layer: int = 0, direction: int = 0) -> GateWeights:
        """Per-gate matrices ``W_i, W_f, W_g, W_o`` acting on ``[h_{t-1}, x_t]`` and biases.

        Differentiable views of torch's stacked parameters; see :class:`GateWeights`.
        """
        return gate_weights(
            lambda n: self.param(n, layer, direction), self.hidden_size, self.coupled
        )

    def extra_repr(self) -> str:
        s = super().extra_repr()
        for name in ("layer_norm", "peephole", "coupled"):
            if getattr(self, name):
                s += f", {name}=True"
        if any(self.zoneout):
            s += f", zoneout={self.zoneout}"
        for name in ("recurrent_dropout", "weight_drop"):
            if getattr(self, name):
                s += f", {name}={getattr(self, name)}"
        if self.forget_bias != 1.0:
            s += f", forget_bias={self.forget_bias}"
        return s

    def forward(
        self,
        input: Tensor | Any,
        hx: tuple[Tensor, Tensor] | None = None,
        lengths: Tensor | Sequence[int] | None = None,
        *,
        return_gates: bool = False,
    ):
        output, (h_n, c_n), gates = self._forward(input, hx, lengths, return_gates)
        if return_gates:
            return output, (h_n, c_n), GateActivations(*gates)
        return output, (h_n, c_n)

    def draw_masks(
        self, layer: int, direction: int, steps: int, batch: int, like: Tensor
    ) -> DropMasks:
        """Sample this call's random masks for one layer and direction (all ``None`` in eval)."""
        if not self.training:
            return DropMasks()
        p_h, p_c = self.zoneout
        n, h, h_out = batch, self.hidden_size, self.output_size
        masks = DropMasks()
        if self.recurrent_dropout > 0:
            masks = masks._replace(
                recurrent=_dropout_mask((n, h_out), self.recurrent_dropout, like)
            )
        if p_h > 0:
            masks = masks._replace(zoneout_h=bernoulli_mask((steps, n, h_out), p_h, like))
        if p_c > 0:
            masks = masks._replace(zoneout_c=bernoulli_mask((steps, n, h), p_c, like))
        if self.weight_drop > 0:
            shape = self.param("weight_hh", layer, direction).shape
            masks = masks._replace(weight_hh=_dropout_mask(shape, self.weight_drop, like))
        return masks

    def _run_direction(self, x, state, layer, direction, valid, collect):
        def p(name: str) -> Tensor | None:
            return self.param(name, layer, direction)

        masks = self.draw_masks(layer, direction, x.size(0), x.size(1), x)
        w_hh = p("weight_hh") if masks.weight_hh is None else p("weight_hh") * masks.weight_hh
        peephole = (p("weight_ci"), p("weight_cf"), p("weight_co")) if self.peephole else None
        ln_c = (p("ln_c_weight"), p("ln_c_bias")) if self.layer_norm else None
        b_hh, w_hr, ln_hh = p("bias_hh"), p("weight_hr"), p("ln_hh_weight")
        w_ih, b_ih, ln_ih_weight = p("weight_ih"), p("bias_ih"), p("ln_ih_weight")
        extra = (w_ih, b_ih, ln_ih_weight, *(peephole or ()), ln_hh, *(ln_c or ()), masks.recurrent)
        if self._short_steps(x):  # (0): the products on transposed weights, the spec's gates
            xw = short_step.linear(x, w_ih, b_ih)

            def short(xw_t: Tensor, state: State, t: int):
                h, c = state
                gates = xw_t + short_step.linear(h, w_hh, b_hh)
                h_new, c_new, acts = LF.lstm_pointwise(
                    gates, c, w_hr, peephole=peephole, coupled=self.coupled
                )
                return (h_new, c_new), GateActivations(*acts, c=c_new)

            return self._scan(xw, state, short, valid, collect)
        if self.implementation != "reference" and fusable(x, *state, w_hh, b_hh, w_hr, *extra):
            # the kernel's Function projects the input itself (and normalises the product in
            # its pass over each row): it keeps x and w_ih, not the projected sequence
            return lstm_direction(
                x,
                *state,
                w_hh,
                b_hh,
                w_hr,
                w_ih=w_ih,
                b_ih=b_ih,
                peephole=peephole,
                ln_ih_weight=ln_ih_weight,
                ln_hh_weight=ln_hh,
                ln_c=ln_c,
                coupled=self.coupled,
                rec_mask=masks.recurrent,
                zoneout_h=masks.zoneout_h,
                zoneout_c=masks.zoneout_c,
                valid=valid,
                collect=collect,
            )
        xw = LF.input_projection(x, w_ih, b_ih, ln_ih_weight)  # (L, N, G*H)

        def step(xw_t: Tensor, state: State, t: int):
            h, c = state
            h_in = h if masks.recurrent is None else h * masks.recurrent
            h_new, c_new, gates = LF.lstm_step(
                xw_t,
                (h_in, c),
                w_hh,
                b_hh,
                w_hr,
                peephole=peephole,
                ln_hh_weight=ln_hh,
                ln_c=ln_c,
                coupled=self.coupled,
            )
            if masks.zoneout_h is not None:
                h_new = LF.zoneout(h_new, h, masks.zoneout_h[t])
            if masks.zoneout_c is not None:
                c_new = LF.zoneout(c_new, c, masks.zoneout_c[t])
            return (h_new, c_new), GateActivations(*gates, c=c_new)

        return self._scan(xw, state, step, valid, collect)
