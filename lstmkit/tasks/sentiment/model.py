"""The sentiment classifier: embedding -> LSTM encoder -> pooling -> dropout -> classifier.

Two encoders read a padded batch of reviews with their lengths:

* :class:`RecurrentEncoder`, trained from scratch: an :class:`lstmkit.nn.LSTM` (layers,
  bidirectional, any variant) over the whole review at once, lengths handled by the layer;
* :class:`LMEncoder`, the ULMFiT / Dai & Le path: the embedding and LSTM layers of a trained
  :class:`lstmkit.models.LanguageModel`, reading the review in chunks of
  ``chunk_len`` tokens with the state carried ("BPTT for text classification"); gradients
  flow through the last ``grad_chunks`` chunks only, so long reviews fit in memory.

:class:`Pooling` turns the outputs into one vector: ``last`` (the final state of each
direction), ``max`` and ``mean`` over the valid steps, ``attention`` (additive, masked), or
a ``+``-joined concatenation such as ``max+mean+last`` (ULMFiT's concat pooling).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lstmkit.models.language_model import LanguageModel, run_layers
from lstmkit.nn import LSTM
from lstmkit.nn.dropout import LockedDropout, embedding_dropout
from lstmkit.train.config import check_fraction, check_positive

POOLINGS = ("last", "max", "mean", "attention")
EMBEDDINGS = ("random", "word2vec")


@dataclass
class SentimentModelConfig:
    """Sizes, pooling and regularisation of :class:`SentimentClassifier`.

    Args:
        embed_size, hidden_size, num_layers, bidirectional: the from-scratch encoder.
            Default: 64, 64, 1, ``True``
        pooling: ``+``-joined poolings among last, max, mean, attention. Default: ``max+mean``
        head_hidden: a hidden layer (ReLU) in the classifier, 0 for none. Default: 0
        dropout: before the classifier (and its hidden layer). Default: 0.3
        dropoute, dropouti, dropouth: embedding (word), locked input and between-layer
            dropout. Default: 0.0, 0.2, 0.0
        layer_norm, peephole, zoneout, recurrent_dropout, weight_drop, forget_bias:
            :class:`lstmkit.nn.LSTM` variants of the from-scratch encoder. Default: off, 1.0
        embeddings: how the from-scratch encoder's embedding table starts: ``random``
            (``nn.Embedding``'s N(0, 1)) or ``word2vec``, learned from the training reviews
            (and ``unsup`` with ``data.unsup``) before training, see
            :mod:`lstmkit.data.word_vectors`. Default: ``random``
        freeze_embeddings: the embedding table stays as it starts (Keras's
            ``trainable=False``): with word2vec vectors the classifier cannot fit the
            training reviews through rare words' rows. Default: False
        pretrained: a language-model directory (``lstmkit lm train``) whose embedding and
            LSTM layers become the encoder (its tokenizer is used too). Default: ``None``
        adversarial: the L2 norm of an adversarial perturbation of each training review's
            word embeddings (Miyato et al. 2017): the loss of the perturbed review is added to
            the clean one, the perturbation along the gradient of the clean loss; 0 for
            none (on imdb-cpu an epoch then took 1.7x, 3x with a frozen table).
            From-scratch encoders only.
            Default: 0.0
        chunk_len: tokens per chunk for the pretrained encoder. Default: 70
        grad_chunks: chunks (from the end) that get gradients. Default: 20
        num_classes: number of labels. Default: 2
    """

    embed_size: int = 64
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = True
    pooling: str = "max+mean"
    head_hidden: int = 0
    dropout: float = 0.3
    dropoute: float = 0.0
    dropouti: float = 0.2
    dropouth: float = 0.0
    layer_norm: bool = False
    peephole: bool = False
    zoneout: float = 0.0
    recurrent_dropout: float = 0.0
    weight_drop: float = 0.0
    forget_bias: float = 1.0
    adversarial: float = 0.0
    embeddings: str = "random"
    freeze_embeddings: bool = False
    pretrained: str | None = None
    chunk_len: int = 70
    grad_chunks: int = 20
    num_classes: int = 2

    def __post_init__(self) -> None:
        if self.head_hidden < 0:
            raise ValueError(f"model.head_hidden must be >= 0, got {self.head_hidden!r}")
        check_positive(
            self, "model", ("embed_size", "hidden_size", "num_layers", "chunk_len", "grad_chunks")
        )
        if self.num_classes < 2:
            raise ValueError(f"model.num_classes must be >= 2, got {self.num_classes}")
        if not self.adversarial >= 0:
            raise ValueError(f"model.adversarial must be >= 0, got {self.adversarial!r}")
        if self.adversarial and self.pretrained is not None:
            raise ValueError(
                "model.adversarial perturbs a from-scratch encoder's embeddings; "
                "it does not apply with model.pretrained"
            )
        if self.embeddings not in EMBEDDINGS:
            raise ValueError(
                f"model.embeddings must be one of {', '.join(EMBEDDINGS)}; got {self.embeddings!r}"
            )
        if self.embeddings != "random" and self.pretrained is not None:
            raise ValueError(
                f"model.embeddings {self.embeddings} starts a from-scratch "
                "encoder's table; model.pretrained brings its own"
            )
        check_fraction(
            self,
            "model",
            (
                "dropout",
                "dropoute",
                "dropouti",
                "dropouth",
                "zoneout",
                "recurrent_dropout",
                "weight_drop",
            ),
        )
        parts = self.pooling.split("+")
        bad = [p for p in parts if p not in POOLINGS]
        if bad or len(set(parts)) != len(parts):
            raise ValueError(
                f"model.pooling must join distinct names among {', '.join(POOLINGS)} with '+'; "
                f"got {self.pooling!r}"
            )


class RecurrentEncoder(nn.Module):
    """Embedding -> :class:`lstmkit.nn.LSTM` over whole reviews.

    Inputs: ids (L, N), lengths (N,). Outputs: outputs (L, N, D*H), last (N, D*H): the final
    hidden state of each direction of the top layer at each review's own end.
    """

    def __init__(self, vocab_size: int, config: SentimentModelConfig, pad_id: int = 0) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(vocab_size, config.embed_size, padding_idx=pad_id)
        self.embedding.weight.requires_grad_(not config.freeze_embeddings)
        self.drop_input = LockedDropout(config.dropouti)
        self.rnn = LSTM(
            config.embed_size,
            config.hidden_size,
            config.num_layers,
            dropout=config.dropouth if config.num_layers > 1 else 0.0,
            bidirectional=config.bidirectional,
            layer_norm=config.layer_norm,
            peephole=config.peephole,
            zoneout=config.zoneout,
            recurrent_dropout=config.recurrent_dropout,
            weight_drop=config.weight_drop,
            forget_bias=config.forget_bias,
        )
        self.output_size = config.hidden_size * (2 if config.bidirectional else 1)

    def layer_groups(self) -> list[nn.Module]:
        return [self.embedding, self.rnn]

    def forward(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        return self.encode(self.embed(ids), lengths)

    def embed(self, ids: Tensor) -> Tensor:
        """The word embeddings (L, N, E) of ``ids``, with word dropout in training."""
        return embedding_dropout(self.embedding, ids, self.config.dropoute, self.training)

    def encode(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``forward`` from the embeddings ``x`` (L, N, E) on."""
        out, (h_n, _) = self.rnn(self.drop_input(x), lengths=lengths)  # (L, N, D*H)
        directions = 2 if self.config.bidirectional else 1
        last = torch.cat(list(h_n[-directions:]), dim=-1)  # (N, D*H)
        return out, last


class LMEncoder(nn.Module):
    """A language model's embedding and LSTM layers reading reviews chunk by chunk.

    Inputs: ids (L, N), lengths (N,). Outputs: outputs (L, N, H_last), last (N, H_last).
    """

    def __init__(self, lm: LanguageModel, chunk_len: int = 70, grad_chunks: int = 20) -> None:
        super().__init__()
        self.embedding, self.layers = lm.embedding, lm.layers
        self.drop_input, self.drop_between = lm.drop_input, lm.drop_between
        self.dropoute = lm.config.dropoute
        self.chunk_len, self.grad_chunks = chunk_len, grad_chunks
        self.output_size = lm.config.layer_sizes()[-1]

    def layer_groups(self) -> list[nn.Module]:
        return [self.embedding, *self.layers]

    def _chunk(self, ids: Tensor, valid: Tensor, state: list | None) -> tuple[Tensor, list]:
        x = self.drop_input(embedding_dropout(self.embedding, ids, self.dropoute, self.training))
        return run_layers(self.layers, self.drop_between, x, state, valid)

    def forward(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        steps = ids.size(0)
        first_grad = steps - self.grad_chunks * self.chunk_len
        outputs, state = [], None
        for start in range(0, steps, self.chunk_len):
            valid = (lengths - start).clamp(0, self.chunk_len).to(ids.device)  # (N,)
            with torch.set_grad_enabled(torch.is_grad_enabled() and start >= first_grad):
                out, state = self._chunk(ids[start : start + self.chunk_len], valid, state)
            outputs.append(out)
        return torch.cat(outputs), state[-1][0][0]  # (L, N, H), (N, H)


class Pooling(nn.Module):
    """Concatenate the configured poolings of ``outputs`` (L, N, F) over the valid steps
    (``mask`` (L, N)) and ``last`` (N, F): output (N, k*F)."""

    def __init__(self, spec: str, features: int) -> None:
        super().__init__()
        self.parts = spec.split("+")
        self.attention = None
        if "attention" in self.parts:
            self.attention = nn.Sequential(
                nn.Linear(features, features), nn.Tanh(), nn.Linear(features, 1, bias=False)
            )
        self.output_size = features * len(self.parts)

    def forward(self, outputs: Tensor, mask: Tensor, last: Tensor) -> Tensor:
        m = mask.unsqueeze(-1)  # (L, N, 1)
        pooled = []
        for part in self.parts:
            if part == "last":
                pooled.append(last)
            elif part == "max":
                pooled.append(outputs.masked_fill(~m, float("-inf")).amax(0))
            elif part == "mean":
                pooled.append((outputs * m).sum(0) / m.sum(0))
            else:
                scores = self.attention(outputs).masked_fill(~m, float("-inf"))  # (L, N, 1)
                pooled.append((scores.softmax(0) * outputs).sum(0))
        return torch.cat(pooled, dim=-1)


class SentimentClassifier(nn.Module):
    """Reviews (token ids with lengths) -> class logits.

    Args:
        encoder: a :class:`RecurrentEncoder` or :class:`LMEncoder`.
        config: the :class:`SentimentModelConfig` (pooling, head, dropout, classes).

    Inputs: ids (L, N) padded token ids, lengths (N,) in [1, L].
    Outputs: logits (N, num_classes).

    Example::

        >>> cfg = SentimentModelConfig(embed_size=8, hidden_size=6, pooling="max+mean+last")
        >>> model = SentimentClassifier(RecurrentEncoder(100, cfg), cfg)
        >>> model(torch.randint(1, 100, (9, 4)), torch.tensor([9, 3, 5, 1])).shape
        torch.Size([4, 2])
    """

    def __init__(self, encoder: nn.Module, config: SentimentModelConfig) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = Pooling(config.pooling, encoder.output_size)
        layers: list[nn.Module] = [nn.Dropout(config.dropout)]
        features = self.pooling.output_size
        if config.head_hidden:
            layers += [
                nn.Linear(features, config.head_hidden),
                nn.ReLU(),
                nn.Dropout(config.dropout),
            ]
            features = config.head_hidden
        layers.append(nn.Linear(features, config.num_classes))
        self.head = nn.Sequential(*layers)

    def layer_groups(self) -> list[nn.Module]:
        """Input to output: embedding, recurrent layer(s), pooling + head (for ULMFiT's
        discriminative learning rates and gradual unfreezing)."""
        return [*self.encoder.layer_groups(), nn.ModuleList([self.pooling, self.head])]

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        if ids.dim() != 2:
            raise ValueError(f"expected token ids of shape (L, N), got {tuple(ids.shape)}")
        lengths = torch.as_tensor(lengths)
        return self.classify(self.encoder(ids, lengths), lengths)

    def classify(self, encoded: tuple[Tensor, Tensor], lengths: Tensor) -> Tensor:
        """The logits of the encoder's ``(outputs, last)``."""
        outputs, last = encoded
        steps = outputs.size(0)
        mask = torch.arange(steps, device=outputs.device).unsqueeze(1) < lengths.to(outputs.device)
        return self.head(self.pooling(outputs, mask, last))
