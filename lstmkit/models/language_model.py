"""The LSTM language model: embedding -> stacked LSTM layers -> (tied) decoder.

AWD-LSTM's regularisation (Merity et al. 2017) is built in and each part can be turned off:
embedding dropout (``dropoute``), locked dropout on the embeddings (``dropouti``), between
layers (``dropouth``) and on the output (``dropout``), DropConnect on every layer's
``weight_hh`` (``weight_drop``), and the AR/TAR penalties computed by the task's step from
the outputs this model returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lstmkit.config import check_fraction, check_positive
from lstmkit.nn import LSTM
from lstmkit.nn.dropout import LockedDropout, embedding_dropout

State = list[tuple[Tensor, Tensor]]  # per layer (h, c), each (1, N, H_l)


@dataclass
class LMModelConfig:
    """Sizes and regularisation of :class:`LanguageModel`.

    Args:
        embed_size: embedding (and tied decoder) width. Default: 400
        hidden_size: width of every LSTM layer but the last when ``tie_weights`` (the last
            then has ``embed_size``). Default: 1150
        num_layers: number of LSTM layers. Default: 3
        tie_weights: share the embedding matrix with the decoder (Press & Wolf 2017).
            Default: ``True``
        dropout, dropouth, dropouti, dropoute: output, between-layer, input (locked) and
            embedding dropout. Default: 0.4, 0.25, 0.4, 0.1 (AWD-LSTM's PTB values)
        weight_drop: DropConnect on ``weight_hh`` of every layer. Default: 0.5
        layer_norm, peephole, zoneout, recurrent_dropout: :class:`lstmkit.nn.LSTM` variants.
            Default: off
        forget_bias: initial forget-gate bias. Default: 1.0
    """

    embed_size: int = 400
    hidden_size: int = 1150
    num_layers: int = 3
    tie_weights: bool = True
    dropout: float = 0.4
    dropouth: float = 0.25
    dropouti: float = 0.4
    dropoute: float = 0.1
    weight_drop: float = 0.5
    layer_norm: bool = False
    peephole: bool = False
    zoneout: float = 0.0
    recurrent_dropout: float = 0.0
    forget_bias: float = 1.0

    def __post_init__(self) -> None:
        check_positive(self, "model", ("embed_size", "hidden_size", "num_layers"))
        check_fraction(
            self,
            "model",
            (
                "dropout",
                "dropouth",
                "dropouti",
                "dropoute",
                "weight_drop",
                "zoneout",
                "recurrent_dropout",
            ),
        )

    def layer_sizes(self) -> list[int]:
        sizes = [self.hidden_size] * self.num_layers
        if self.tie_weights:
            sizes[-1] = self.embed_size
        return sizes


class LanguageModel(nn.Module):
    """Next-token model over a vocabulary of ``vocab_size`` tokens.

    Args:
        vocab_size: number of tokens V.
        config: an :class:`LMModelConfig`.

    Inputs: ids, state
        * **ids**: (L, N) token ids.
        * **state**: ``None`` (zeros) or the state a previous call returned.

    Outputs: logits, state[, (raw, dropped)]
        * **logits**: (L, N, V) unnormalised next-token scores.
        * **state**: a list with ``(h, c)`` per layer, to pass to the next call.
        * with ``return_hidden=True``: the last layer's output before and after the output
          dropout, each (L, N, embed_size or hidden_size), for AR/TAR.

    Example::

        >>> import torch
        >>> model = LanguageModel(50, LMModelConfig(embed_size=8, hidden_size=16, num_layers=2))
        >>> logits, state = model(torch.randint(50, (7, 3)))
        >>> logits.shape, [h.shape[-1] for h, _ in state]
        (torch.Size([7, 3, 50]), [16, 8])
    """

    def __init__(self, vocab_size: int, config: LMModelConfig) -> None:
        super().__init__()
        self.config = config
        sizes = config.layer_sizes()
        self.embedding = nn.Embedding(vocab_size, config.embed_size)
        variants: dict[str, Any] = dict(
            layer_norm=config.layer_norm,
            peephole=config.peephole,
            zoneout=config.zoneout,
            recurrent_dropout=config.recurrent_dropout,
            weight_drop=config.weight_drop,
            forget_bias=config.forget_bias,
        )
        inputs = [config.embed_size, *sizes[:-1]]
        self.layers = nn.ModuleList(LSTM(i, h, **variants) for i, h in zip(inputs, sizes))
        self.drop_input = LockedDropout(config.dropouti)
        self.drop_between = LockedDropout(config.dropouth)
        self.drop_output = LockedDropout(config.dropout)
        self.decoder = nn.Linear(sizes[-1], vocab_size)
        if config.tie_weights:
            if sizes[-1] != config.embed_size:
                raise ValueError("tie_weights needs the last layer's size to equal embed_size")
            self.decoder.weight = self.embedding.weight
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    @property
    def vocab_size(self) -> int:
        return self.embedding.num_embeddings

    def encode(
        self, ids: Tensor, state: State | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, State]:
        """The embedding and LSTM layers without the output dropout and decoder: the last
        layer's output (L, N, H_last) and the new state (see :func:`run_layers`)."""
        if ids.dim() != 2:
            raise ValueError(f"expected token ids of shape (L, N), got {tuple(ids.shape)}")
        x = embedding_dropout(self.embedding, ids, self.config.dropoute, self.training)
        return run_layers(self.layers, self.drop_between, self.drop_input(x), state, lengths)

    def forward(self, ids: Tensor, state: State | None = None, return_hidden: bool = False):
        raw, new_state = self.encode(ids, state)
        dropped = self.drop_output(raw)
        logits = self.decoder(dropped)  # (L, N, V)
        if return_hidden:
            return logits, new_state, (raw, dropped)
        return logits, new_state


def run_layers(
    layers: nn.ModuleList,
    drop_between: nn.Module,
    x: Tensor,
    state: State | None = None,
    lengths: Tensor | None = None,
) -> tuple[Tensor, State]:
    """Stacked LSTM layers over ``x`` (L, N, E) with ``drop_between`` between them.

    ``lengths`` (N,) in [0, L]: each sequence is read to its own length, and one of length 0
    (a review that ended before this chunk) keeps the state it came with.
    """
    new_state: State = []
    for k, layer in enumerate(layers):
        previous = None if state is None else state[k]
        if lengths is None:
            x, (h, c) = layer(x, previous)
        else:
            x, (h, c) = layer(x, previous, lengths=lengths.clamp(min=1))
            if previous is not None:
                done = (lengths == 0).view(1, -1, 1)
                h, c = torch.where(done, previous[0], h), torch.where(done, previous[1], c)
        new_state.append((h, c))
        if k < len(layers) - 1:
            x = drop_between(x)
    return x, new_state
