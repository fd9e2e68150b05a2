"""A global LSTM forecaster: one model for every series of a frequency.

A window of the last ``input_size`` values of a series is normalised by its own level and
read by an LSTM in *chunks* of ``chunk`` values a step (a day of hourly values: the LSTM
then runs 14 steps over two weeks, and every step sees a whole season); the last hidden
state goes to a direct multi-horizon head that emits, for every step ahead, the
``quantiles`` of the normalised future (pinball loss). A linear map of the window to the
horizon is added to the head's output (``linear_skip``; the LSTM then models what a linear
autoregression misses). ``members`` independent LSTMs and heads are trained side by side,
each on its own loss, and their quantiles averaged: the ensemble over seeds that the M4
winners used, in one model directory.

Normalisation (``normalize``): ``log`` reads ``log(x / level)`` and forecasts
``level · exp(z)``, ``level`` being the mean of the window's last ``chunk`` values (every
value must be > 0); ``scale`` reads ``(x - level) / scale`` with the window's standard
deviation as scale, for series that cross zero.

Shapes: N windows, L = ``input_size``, h = ``horizon``, Q = ``len(quantiles)``.

Example::

    >>> model = Forecaster(ForecastModelConfig(hidden_size=8), input_size=48, horizon=12,
    ...                    season=24)
    >>> model(torch.randn(5, 48), torch.zeros(5)).shape
    torch.Size([5, 12, 3])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lstmkit.nn import LSTM
from lstmkit.tasks.forecast.esrnn import ExponentialSmoothing
from lstmkit.train.config import check_fraction, check_positive

NORMALIZE = ("log", "scale")


@dataclass
class ForecastModelConfig:
    """The forecaster's architecture.

    Args:
        hidden_size, num_layers: the LSTM's. Default: 64, 2
        chunk: values per LSTM step (0: the seasonal period, or 1). Default: 0
        dropout: between LSTM layers and before the head. Default: 0.1
        quantiles: the forecast quantiles; must hold 0.5 (the point forecast). The outer
            pair makes the prediction interval scored by MSIS. Default: (0.025, 0.5, 0.975)
        members: independent LSTMs (an ensemble) averaged. Default: 1
        linear_skip: add a linear map of the window to the forecast. Default: ``True``
        position: feed the phase within the season (sin, cos) of every chunk. Default: ``True``
        normalize: ``log`` or ``scale`` (see the module docstring). Default: ``log``
        kind: ``global`` (each window normalised by its own level) or ``esrnn``: learned
            per-series exponential smoothing normalises the windows (the ES-RNN hybrid,
            :mod:`lstmkit.tasks.forecast.esrnn`; needs ``normalize: log``). Default: global
        es_history: values the smoothing reads before each origin (0: the window and one
            season more). Default: 0
        layer_norm, peephole, zoneout, recurrent_dropout: :class:`lstmkit.nn.LSTM`
            variants. Default: off
    """

    hidden_size: int = 64
    num_layers: int = 2
    chunk: int = 0
    dropout: float = 0.1
    quantiles: tuple[float, ...] = (0.025, 0.5, 0.975)
    members: int = 1
    linear_skip: bool = True
    position: bool = True
    normalize: str = "log"
    kind: str = "global"
    es_history: int = 0
    layer_norm: bool = False
    peephole: bool = False
    zoneout: float = 0.0
    recurrent_dropout: float = 0.0

    def __post_init__(self) -> None:
        check_positive(self, "model", ("hidden_size", "num_layers", "members"))
        check_fraction(self, "model", ("dropout", "zoneout", "recurrent_dropout"))
        if self.chunk < 0:
            raise ValueError(f"model.chunk must be >= 0, got {self.chunk!r}")
        if self.kind not in ("global", "esrnn"):
            raise ValueError(f"model.kind must be global or esrnn; got {self.kind!r}")
        if self.kind == "esrnn" and self.normalize != "log":
            raise ValueError("model.kind esrnn smooths in ratios: it needs model.normalize log")
        if self.es_history < 0:
            raise ValueError(f"model.es_history must be >= 0, got {self.es_history!r}")
        if self.normalize not in NORMALIZE:
            raise ValueError(f"model.normalize must be log or scale; got {self.normalize!r}")
        self.quantiles = tuple(float(q) for q in self.quantiles)
        if 0.5 not in self.quantiles:
            raise ValueError(
                f"model.quantiles must include 0.5 (the point forecast); got {list(self.quantiles)}"
            )
        if any(not 0 < q < 1 for q in self.quantiles) or list(self.quantiles) != sorted(
            set(self.quantiles)
        ):
            raise ValueError(
                f"model.quantiles must be increasing, each in (0, 1); got {list(self.quantiles)}"
            )


def chunk_size(config: ForecastModelConfig, season: int) -> int:
    return config.chunk or max(season, 1)


class Member(nn.Module):
    """One LSTM and head of the ensemble."""

    def __init__(
        self, config: ForecastModelConfig, steps: int, chunk: int, horizon: int, features: int
    ) -> None:
        super().__init__()
        c = config
        self.rnn = LSTM(
            chunk + features,
            c.hidden_size,
            c.num_layers,
            dropout=c.dropout if c.num_layers > 1 else 0.0,
            layer_norm=c.layer_norm,
            peephole=c.peephole,
            zoneout=c.zoneout,
            recurrent_dropout=c.recurrent_dropout,
        )
        self.dropout = nn.Dropout(c.dropout)
        q = len(c.quantiles)
        self.head = nn.Linear(c.hidden_size, horizon * q)
        self.skip = nn.Linear(steps * chunk, horizon * q) if c.linear_skip else None
        self.horizon, self.q = horizon, q

    def forward(self, chunks: Tensor, flat: Tensor) -> Tensor:
        out, _ = self.rnn(chunks)  # (T, N, H)
        y = self.head(self.dropout(out[-1]))
        if self.skip is not None:
            y = y + self.skip(flat)
        return y.view(-1, self.horizon, self.q)


class Forecaster(nn.Module):
    """The global forecaster (see the module docstring).

    Args:
        config: a :class:`ForecastModelConfig`.
        input_size: L, the window; a multiple of the chunk (the window's oldest values are
            dropped to make it one is the caller's job: :func:`window_size`).
        horizon: h, the steps forecast.
        season: the seasonal period (for the chunk default and the phase features).
        n_series: the series the ES-RNN hybrid learns coefficients for (``kind: esrnn``).

    Inputs: z, phase
        - **z**: (N, L) the normalised window.
        - **phase**: (N,) the index of the window's first value modulo ``season``.

    Outputs: (N, h, Q) the normalised quantiles, the members' mean.
    """

    def __init__(
        self,
        config: ForecastModelConfig,
        input_size: int,
        horizon: int,
        season: int,
        n_series: int = 0,
    ) -> None:
        super().__init__()
        self.config, self.horizon, self.season = config, horizon, max(season, 1)
        self.input_size = input_size
        self.es, self.history = None, 0
        if config.kind == "esrnn":
            if n_series < 1:
                raise ValueError("the ES-RNN hybrid needs the number of series it smooths")
            self.es = ExponentialSmoothing(n_series, self.season)
            self.history = config.es_history or input_size + self.season
        self.chunk = chunk_size(config, season)
        if input_size % self.chunk:
            raise ValueError(
                f"data.input_size {input_size} is not a multiple of the chunk "
                f"{self.chunk} (model.chunk)"
            )
        self.steps = input_size // self.chunk
        features = 2 if config.position else 0
        self.members = nn.ModuleList(
            Member(config, self.steps, self.chunk, horizon, features) for _ in range(config.members)
        )

    def inputs(self, z: Tensor, phase: Tensor) -> tuple[Tensor, Tensor]:
        n = z.shape[0]
        chunks = z.view(n, self.steps, self.chunk)
        if self.config.position:
            starts = phase.view(n, 1) + self.chunk * torch.arange(self.steps, device=z.device)
            angle = 2 * math.pi * (starts % self.season) / self.season
            chunks = torch.cat([chunks, angle.sin().unsqueeze(-1), angle.cos().unsqueeze(-1)], -1)
        return chunks.transpose(0, 1).contiguous(), z

    def forward_members(self, z: Tensor, phase: Tensor) -> list[Tensor]:
        """Each member's (N, h, Q) quantiles (training scores each one on its own)."""
        chunks, flat = self.inputs(z, phase)
        return [m(chunks, flat) for m in self.members]

    def forward(self, z: Tensor, phase: Tensor) -> Tensor:
        outs = self.forward_members(z, phase)
        y = torch.stack(outs).mean(0)
        return y.sort(-1).values  # quantiles never cross


def pinball(pred: Tensor, target: Tensor, quantiles: Tensor) -> Tensor:
    """Mean pinball (quantile) loss of ``pred`` (N, h, Q) against ``target`` (N, h)."""
    diff = target.unsqueeze(-1) - pred
    return torch.maximum(quantiles * diff, (quantiles - 1) * diff).mean()


def window_size(input_size: int, chunk: int) -> int:
    """``input_size`` rounded down to a whole number of chunks (at least one)."""
    return max(chunk, input_size - input_size % chunk)
