r"""The encoder-decoder with attention (Sutskever et al. 2014; Bahdanau et al. 2015; Luong
et al. 2015).

Encoder: source embeddings -> a bidirectional :class:`lstmkit.nn.LSTM` (any variant) whose
outputs are the attention keys :math:`k_s` (N, S, 2H_enc). A bridge maps the encoder's final
states to the decoder's initial ones: :math:`h_0 = \tanh(W_h [\overrightarrow{h}_S;
\overleftarrow{h}_1])`, likewise :math:`c_0` (no tanh), per layer.

Decoder, one target step t (Luong's attentional decoder):

.. math::
    s_t, (h_t, c_t) = \text{LSTM}([y_{t-1}; \tilde{h}_{t-1}], (h_{t-1}, c_{t-1}))
        \quad (\tilde{h}_{t-1} \text{ only with input feeding})

    c'_t, a_t = \text{Attention}(s_t, k, \text{mask})

    \tilde{h}_t = \tanh(W_c [c'_t; s_t]), \qquad
    p(y_t \mid y_{<t}, x) = \text{softmax}(E_y \tilde{h}_t + b)

With ``tie_embeddings`` the output matrix is the target embedding :math:`E_y` (Press & Wolf
2017), so :math:`\tilde{h}_t` has the embedding size. Without input feeding the whole
target sequence goes through the decoder LSTM in one call and attention is one batched
matrix product: a training step of the preset model took 494 ms here, 691 ms with the step
loop input feeding needs (batch of 64 pairs, 8-24 subwords, 2 CPU threads).

Shapes: N sentences, S source and T target positions (padded), V target vocabulary.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lstmkit.data.parallel import PAD_ID
from lstmkit.nn import LSTM, LSTMCell
from lstmkit.nn.attention import KINDS as ATTENTION_KINDS
from lstmkit.nn.attention import Attention
from lstmkit.train.config import check_positive


@dataclass
class EncoderVariant:
    """The encoder's :class:`lstmkit.nn.LSTM` variant (each as there): ``layer_norm``,
    ``peephole``, ``coupled``, ``zoneout``, ``recurrent_dropout``, ``weight_drop`` and
    ``forget_bias``. Default: plain LSTM, forget bias 1.0"""

    layer_norm: bool = False
    peephole: bool = False
    coupled: bool = False
    zoneout: float = 0.0
    recurrent_dropout: float = 0.0
    weight_drop: float = 0.0
    forget_bias: float | None = 1.0

    def __post_init__(self) -> None:
        for name in ("zoneout", "recurrent_dropout", "weight_drop"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(
                    f"model.encoder.{name} must be in [0, 1), got {getattr(self, name)}"
                )


@dataclass
class TranslateModelConfig:
    """The network.

    Args:
        emb_size: source and target embedding size (E). Default: 256
        enc_hidden: encoder LSTM size per direction (H_enc). Default: 256
        enc_layers: encoder layers. Default: 1
        dec_hidden: decoder LSTM size (H_dec). Default: 512
        dec_layers: decoder layers. Default: 1
        attention: ``dot`` (needs dec_hidden == 2 enc_hidden), ``general`` or
            ``additive``. Default: ``general``
        input_feeding: feed the previous attentional state into the decoder (Luong et al.
            2015; a step loop, slower). Default: ``False``
        tie_embeddings: the output layer is the target embedding. Default: ``True``
        dropout: on embeddings, between layers and on the attentional state. Default: 0.3
        encoder: the encoder LSTM's variant (:class:`EncoderVariant`), e.g.
            ``--model.encoder.layer_norm true``. Default: a plain LSTM
    """

    emb_size: int = 256
    enc_hidden: int = 256
    enc_layers: int = 1
    dec_hidden: int = 512
    dec_layers: int = 1
    attention: str = "general"
    input_feeding: bool = False
    tie_embeddings: bool = True
    dropout: float = 0.3
    encoder: EncoderVariant = field(default_factory=EncoderVariant)

    def __post_init__(self) -> None:
        check_positive(
            self, "model", ("emb_size", "enc_hidden", "enc_layers", "dec_hidden", "dec_layers")
        )
        if self.attention not in ATTENTION_KINDS:
            raise ValueError(
                f"model.attention must be one of {', '.join(ATTENTION_KINDS)}; got "
                f"{self.attention!r}"
            )
        if self.attention == "dot" and self.dec_hidden != 2 * self.enc_hidden:
            raise ValueError(
                f"model.attention dot needs dec_hidden ({self.dec_hidden}) == 2 * "
                f"enc_hidden ({2 * self.enc_hidden})"
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")


class Memory(NamedTuple):
    """The encoded source: ``keys`` (N, S, 2H_enc), ``mask`` (N, S) (True at real tokens),
    ``projected`` keys for the attention and the decoder's initial ``state``."""

    keys: Tensor
    mask: Tensor
    projected: Tensor
    state: DecoderState


class DecoderState(NamedTuple):
    """``h``, ``c`` (layers, N, H_dec) and ``feed`` (N, E'): the last attentional state
    (zeros before the first step; read only with input feeding)."""

    h: Tensor
    c: Tensor
    feed: Tensor


def reorder(memory: Memory, index: Tensor) -> Memory:
    """``memory`` with its sentences taken in ``index`` order (to copy it for a beam)."""
    state = memory.state
    return Memory(
        memory.keys[index],
        memory.mask[index],
        memory.projected[index],
        DecoderState(state.h[:, index], state.c[:, index], state.feed[index]),
    )


class Seq2Seq(nn.Module):
    """A bidirectional LSTM encoder and an attentional LSTM decoder (module docstring).

    Args:
        src_vocab, tgt_vocab: vocabulary sizes (ids 0-3 reserved: pad, unk, <s>, </s>).
        config: a :class:`TranslateModelConfig`.

    Inputs of ``forward``: src (N, S), src_lengths (N,), tgt_in (N, T): the target shifted
    right behind ``<s>``. Output: logits (N, T, V).
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, config: TranslateModelConfig) -> None:
        super().__init__()
        c = self.config = config
        self.src_embed = nn.Embedding(src_vocab, c.emb_size, padding_idx=PAD_ID)
        self.tgt_embed = nn.Embedding(tgt_vocab, c.emb_size, padding_idx=PAD_ID)
        self.encoder = LSTM(
            c.emb_size,
            c.enc_hidden,
            c.enc_layers,
            batch_first=True,
            bidirectional=True,
            dropout=c.dropout if c.enc_layers > 1 else 0.0,
            **dataclasses.asdict(c.encoder),
        )
        self.bridge_h = nn.Linear(2 * c.enc_hidden, c.dec_hidden)
        self.bridge_c = nn.Linear(2 * c.enc_hidden, c.dec_hidden)
        self.att_size = c.emb_size if c.tie_embeddings else c.dec_hidden
        feed = self.att_size if c.input_feeding else 0
        if c.input_feeding:
            self.cells = nn.ModuleList(
                LSTMCell(c.emb_size + feed if k == 0 else c.dec_hidden, c.dec_hidden)
                for k in range(c.dec_layers)
            )
        else:
            self.decoder = LSTM(
                c.emb_size,
                c.dec_hidden,
                c.dec_layers,
                batch_first=True,
                dropout=c.dropout if c.dec_layers > 1 else 0.0,
            )
        self.attention = Attention(c.dec_hidden, 2 * c.enc_hidden, c.attention)
        self.combine = nn.Linear(2 * c.enc_hidden + c.dec_hidden, self.att_size, bias=False)
        self.out_bias = nn.Parameter(torch.zeros(tgt_vocab))
        if not c.tie_embeddings:
            self.out = nn.Linear(self.att_size, tgt_vocab, bias=False)
        self.drop = nn.Dropout(c.dropout)
        nn.init.normal_(self.src_embed.weight, std=c.emb_size**-0.5)
        nn.init.normal_(self.tgt_embed.weight, std=c.emb_size**-0.5)
        with torch.no_grad():
            self.src_embed.weight[PAD_ID].zero_()
            self.tgt_embed.weight[PAD_ID].zero_()

    # -- encoder ----------------------------------------------------------------------------

    def encode(self, src: Tensor, lengths: Tensor) -> Memory:
        """The source (N, S) with its ``lengths`` (N,) as a :class:`Memory`."""
        lengths = lengths.clamp(min=1)  # an empty source is read as one padding token
        mask = torch.arange(src.shape[1], device=src.device)[None] < lengths[:, None].to(src.device)
        keys, (h_n, c_n) = self.encoder(self.drop(self.src_embed(src)), lengths=lengths.cpu())
        layers = self.config.enc_layers
        h_last = h_n.view(layers, 2, *h_n.shape[1:])[-1]  # (2, N, H_enc): the top layer
        c_last = c_n.view(layers, 2, *c_n.shape[1:])[-1]
        h0 = torch.tanh(self.bridge_h(torch.cat([h_last[0], h_last[1]], -1)))
        c0 = self.bridge_c(torch.cat([c_last[0], c_last[1]], -1))
        n_dec = self.config.dec_layers
        state = DecoderState(
            h0.unsqueeze(0).expand(n_dec, -1, -1).contiguous(),
            c0.unsqueeze(0).expand(n_dec, -1, -1).contiguous(),
            keys.new_zeros(src.shape[0], self.att_size),
        )
        return Memory(keys, mask, self.attention.project_keys(keys), state)

    # -- decoder ----------------------------------------------------------------------------

    def _output(self, s: Tensor, memory: Memory) -> tuple[Tensor, Tensor, Tensor]:
        """Attentional states (N, T, E'), logits (N, T, V) and weights (N, T, S) of
        decoder outputs ``s`` (N, T, H_dec)."""
        context, weights = self.attention(s, memory.keys, memory.mask, memory.projected)
        att = torch.tanh(self.combine(torch.cat([context, s], -1)))
        weight = self.tgt_embed.weight if self.config.tie_embeddings else self.out.weight
        logits = F.linear(self.drop(att), weight, self.out_bias)
        return att, logits, weights

    def _cells(self, x: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """One input-feeding step of the stacked cells: x (N, E) -> top output (N, H_dec)."""
        inp = torch.cat([x, state.feed], -1)
        hs, cs = [], []
        for k, cell in enumerate(self.cells):
            h, c = cell(inp, (state.h[k], state.c[k]))
            hs.append(h)
            cs.append(c)
            inp = self.drop(h) if k < len(self.cells) - 1 else h
        return inp, DecoderState(torch.stack(hs), torch.stack(cs), state.feed)

    def decode(self, tgt_in: Tensor, memory: Memory) -> tuple[Tensor, Tensor, DecoderState]:
        """Logits (N, T, V), attention weights (N, T, S) and the final state of the target
        inputs ``tgt_in`` (N, T) (teacher forcing, or T = 1 for one step)."""
        emb = self.drop(self.tgt_embed(tgt_in))
        state = memory.state
        if not self.config.input_feeding:
            s, (h, c) = self.decoder(emb, (state.h, state.c))
            att, logits, weights = self._output(s, memory)
            return logits, weights, DecoderState(h, c, att[:, -1])
        logits, weights = [], []
        for t in range(emb.shape[1]):
            s, state = self._cells(emb[:, t], state)
            att, step_logits, step_weights = self._output(s.unsqueeze(1), memory)
            state = state._replace(feed=att[:, 0])
            logits.append(step_logits)
            weights.append(step_weights)
        return torch.cat(logits, 1), torch.cat(weights, 1), state

    def step(self, tokens: Tensor, memory: Memory) -> tuple[Tensor, Tensor, DecoderState]:
        """Log-probabilities (N, V) of the next token after ``tokens`` (N,), the attention
        weights (N, S) and the new state (store it in ``memory.state`` for the next step)."""
        logits, weights, state = self.decode(tokens[:, None], memory)
        return F.log_softmax(logits[:, 0].float(), -1), weights[:, 0], state

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor:
        return self.decode(tgt_in, self.encode(src, src_lengths))[0]
