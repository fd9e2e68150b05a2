"""The acoustic model: log-mel frames -> (frame stacking) -> LSTM layers -> a head.

Two heads read the same encoder (Graves et al. 2013; Sak et al. 2014 for LSTM acoustic
models):

* ``classify`` (isolated digits): masked pooling of the outputs over each utterance's valid
  steps (``max``, ``mean`` or ``max+mean``), dropout, a linear layer: logits (N, C);
* ``ctc`` (connected digits): a linear layer per step and log-softmax: (T', N, C + 1) with
  the CTC blank at index 0 (Graves et al. 2006).

An optional front end (``conv_channels`` > 0) convolves each frame along the mel axis before
the LSTM: two Conv1d layers (kernel 5) with ReLU and max-pooling by 2 over the bands, as in
the frequency convolutions of CLDNN acoustic models (Sainath et al. 2015). Pooling over bands
makes the features less sensitive to a speaker's formant shifts; each frame is convolved
alone, so a chunked stream still equals the one-shot output.

``members`` > 1 (isolated digits) trains that many independently initialised models side
by side on the same batches, each on its own loss, and averages their class probabilities: a
deep ensemble (Lakshminarayanan et al. 2017; :class:`SpeechEnsemble`).

Frame stacking (``subsample`` k) joins k consecutive frames into one LSTM step (T' =
ceil(T / k)): k times fewer recurrent steps, which is most of the cost, at a 10k ms step.
A unidirectional model can run in chunks with its state carried (:meth:`SpeechModel.step`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lstmkit.nn import LSTM
from lstmkit.train.config import check_fraction, check_positive

POOLINGS = ("max", "mean", "max+mean")
HEADS = ("classify", "ctc")


@dataclass
class SpeechModelConfig:
    """Sizes of :class:`SpeechModel`.

    Args:
        hidden_size, num_layers, bidirectional: the LSTM. Default: 128, 2, ``True``
        subsample: frames stacked into one LSTM step. Default: 2
        dropout: between LSTM layers and before the head. Default: 0.2
        pooling: the isolated head's pooling, ``max``, ``mean`` or ``max+mean``.
            Default: ``max+mean``
        layer_norm: layer-normalised LSTM (:class:`lstmkit.nn.LSTM`'s variant). Default: off
        conv_channels: channels of the per-frame frequency convolution in front of the LSTM
            (:class:`FrequencyConv`); 0 = none. Default: 0
        members: independently initialised models averaged (:class:`SpeechEnsemble`; the
            ``classify`` head only). Default: 1
    """

    hidden_size: int = 128
    num_layers: int = 2
    bidirectional: bool = True
    subsample: int = 2
    dropout: float = 0.2
    pooling: str = "max+mean"
    layer_norm: bool = False
    conv_channels: int = 0
    members: int = 1

    def __post_init__(self) -> None:
        if self.conv_channels < 0:
            raise ValueError(f"model.conv_channels must be >= 0, got {self.conv_channels}")
        check_positive(self, "model", ("hidden_size", "num_layers", "subsample", "members"))
        check_fraction(self, "model", ("dropout",))
        if self.pooling not in POOLINGS:
            raise ValueError(
                f"model.pooling must be one of {', '.join(POOLINGS)}; got {self.pooling!r}"
            )


def stack_frames(feats: Tensor, lengths: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(T, N, F) -> (ceil(T / k), N, k * F): k consecutive frames per step (zero-padded at
    the end); lengths become ceil(lengths / k).

    >>> x, n = stack_frames(torch.arange(10.).view(5, 1, 2), torch.tensor([5]), 2)
    >>> x[:, 0].tolist(), n.tolist()
    ([[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0], [8.0, 9.0, 0.0, 0.0]], [3])
    """
    if k == 1:
        return feats, lengths
    t, n, f = feats.shape
    pad = (-t) % k
    if pad:
        feats = torch.cat([feats, feats.new_zeros(pad, n, f)])
    steps = feats.shape[0] // k
    stacked = feats.view(steps, k, n, f).permute(0, 2, 1, 3).reshape(steps, n, k * f)
    return stacked, (lengths + k - 1) // k


class FrequencyConv(nn.Module):
    """Each frame's bands through Conv1d(k=5) -> ReLU -> MaxPool(2), twice.

    Inputs: feats (T, N, V * F): ``views`` normalisations of F = ``n_mels`` bands side by side
    (``features.normalize`` ``utterance+global``), the convolution's input channels.
    Outputs: (T, N, C * (F // 4)), C = ``channels``; every frame is processed alone (no
    context across time), so padding and chunking do not change it.
    """

    def __init__(self, n_mels: int, channels: int, views: int = 1) -> None:
        super().__init__()
        if n_mels < 4:
            raise ValueError(f"model.conv_channels needs at least 4 mel bands, got {n_mels}")
        self.layers = nn.Sequential(
            nn.Conv1d(views, channels, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(channels, channels, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool1d(2),
        )
        self.n_mels, self.views, self.out_features = n_mels, views, channels * (n_mels // 4)

    def forward(self, feats: Tensor) -> Tensor:
        t, n, _ = feats.shape
        out = self.layers(feats.reshape(t * n, self.views, self.n_mels))  # (T*N, C, F // 4)
        return out.reshape(t, n, self.out_features)


def valid_mask(lengths: Tensor, steps: int) -> Tensor:
    """(T, N) bool: step t of sequence n is within its length."""
    return torch.arange(steps, device=lengths.device)[:, None] < lengths[None, :]


class SpeechModel(nn.Module):
    """Log-mel frames to logits (``classify``) or CTC log-probabilities (``ctc``).

    Inputs: feats (T, N, in_features), lengths (N,); ``in_features`` = ``views`` * ``n_mels``
    (each frame normalised ``views`` ways, side by side). Outputs: ``classify``: logits (N, C)
    and the step lengths; ``ctc``: log-probabilities (T', N, C + 1), blank 0, and lengths (N,).
    """

    def __init__(
        self, n_mels: int, num_classes: int, head: str, config: SpeechModelConfig, views: int = 1
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}; got {head!r}")
        self.config, self.head_kind, self.n_mels = config, head, n_mels
        self.in_features = n_mels * views
        c = config
        self.conv = FrequencyConv(n_mels, c.conv_channels, views) if c.conv_channels else None
        features = self.conv.out_features if self.conv is not None else self.in_features
        self.rnn = LSTM(
            features * c.subsample,
            c.hidden_size,
            c.num_layers,
            bidirectional=c.bidirectional,
            dropout=c.dropout if c.num_layers > 1 else 0.0,
            layer_norm=c.layer_norm,
        )
        width = c.hidden_size * (2 if c.bidirectional else 1)
        self.drop = nn.Dropout(c.dropout)
        if head == "classify":
            pools = len(c.pooling.split("+"))
            self.out = nn.Linear(width * pools, num_classes)
        else:
            self.out = nn.Linear(width, num_classes + 1)

    def encode(self, feats: Tensor, lengths: Tensor, state=None):
        """LSTM outputs (T', N, D*H), step lengths (N,) and the final state."""
        x, steps = stack_frames(self.front(feats), lengths.cpu(), self.config.subsample)
        out, state = self.rnn(x, state, lengths=steps)
        return out, steps, state

    def front(self, feats: Tensor) -> Tensor:
        """The LSTM's per-frame input: the frequency convolution's output, or ``feats``."""
        return feats if self.conv is None else self.conv(feats)

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        out, steps, _ = self.encode(feats, lengths)
        if self.head_kind == "ctc":
            return self.out(self.drop(out)).log_softmax(-1), steps
        return self.out(self.drop(self.pool(out, steps))), steps

    def pool(self, out: Tensor, steps: Tensor) -> Tensor:
        """(T', N, W) -> (N, W * pools): max and/or mean over each sequence's valid steps."""
        mask = valid_mask(steps.to(out.device), out.shape[0]).unsqueeze(-1)
        parts = []
        for name in self.config.pooling.split("+"):
            if name == "max":
                parts.append(out.masked_fill(~mask, float("-inf")).amax(0))
            else:
                parts.append((out * mask).sum(0) / mask.sum(0).clamp(min=1))
        return torch.cat(parts, -1)

    def check_streamable(self) -> None:
        if self.config.bidirectional or self.head_kind != "ctc":
            raise ValueError(
                "streaming needs a unidirectional CTC model (model.bidirectional "
                "false, task_kind connected)"
            )

    def step(self, feats: Tensor, state=None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """A chunk of one stream: feats (T, 1, in_features) with T a multiple of ``subsample``
        -> CTC log-probabilities (T / subsample, 1, C + 1) and the state to carry.
        Only for a unidirectional CTC model (a bidirectional one needs the whole input)."""
        self.check_streamable()
        if feats.shape[0] % self.config.subsample:
            raise ValueError(f"a chunk must hold a multiple of {self.config.subsample} frames")
        lengths = torch.full((feats.shape[1],), feats.shape[0], dtype=torch.long)
        x, _ = stack_frames(self.front(feats), lengths, self.config.subsample)
        out, state = self.rnn(x, state)
        return self.out(out).log_softmax(-1), state


class SpeechEnsemble(nn.Module):
    """``config.members`` independently initialised :class:`SpeechModel` classifiers whose
    class probabilities are averaged.

    Inputs: feats (T, N, in_features), lengths (N,). Outputs: the log of the members' mean
    probabilities (N, C), which a softmax, an argmax or a cross-entropy reads as logits, and
    the step lengths. :meth:`forward_members` gives each member's logits: training sums
    the members' own losses, so each learns as it would alone.

    Example::

        >>> ens = SpeechEnsemble(40, 10, SpeechModelConfig(hidden_size=8, members=3))
        >>> logits, steps = ens(torch.randn(30, 2, 40), torch.tensor([30, 21]))
        >>> logits.shape, logits.exp().sum(-1).allclose(torch.ones(2))
        (torch.Size([2, 10]), True)
    """

    head_kind = "classify"

    def __init__(
        self, n_mels: int, num_classes: int, config: SpeechModelConfig, views: int = 1
    ) -> None:
        super().__init__()
        self.config, self.n_mels, self.in_features = config, n_mels, n_mels * views
        self.members = nn.ModuleList(
            SpeechModel(n_mels, num_classes, "classify", config, views)
            for _ in range(config.members)
        )

    def forward_members(self, feats: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        """Each member's logits (N, C) and the step lengths."""
        outs = [m(feats, lengths) for m in self.members]
        return [logits for logits, _ in outs], outs[0][1]

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        logits, steps = self.forward_members(feats, lengths)
        return average_probabilities(logits), steps

    def check_streamable(self) -> None:
        self.members[0].check_streamable()


def members_of(model: nn.Module) -> list[SpeechModel]:
    """The :class:`SpeechModel` s of ``model``: an ensemble's members, or the model alone."""
    return list(model.members) if isinstance(model, SpeechEnsemble) else [model]


def average_probabilities(logits: list[Tensor]) -> Tensor:
    """log(mean_k softmax(logits_k)) over members k, computed in log space.

    >>> average_probabilities([torch.tensor([0.0, 0.0]), torch.tensor([0.0, 1e9])]).exp()
    tensor([0.2500, 0.7500])
    """
    stacked = torch.stack([x.float().log_softmax(-1) for x in logits])
    return stacked.logsumexp(0) - math.log(len(logits))
