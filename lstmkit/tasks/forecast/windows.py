"""Input windows, their normalisation, and the batches the forecaster trains on.

A window ends at a forecast *origin* t: the input is ``values[t - L : t]``, the target
``values[t : t + h]``; nothing at or after t enters the input (the no-leak test perturbs
those values). A history shorter than L is padded on the left with its first value (the
policy for short series: every series gets a forecast; the count is reported).

Training draws ``windows_per_series`` origins per series and epoch, uniformly among those
whose target lies inside the training part and with at least ``min_history`` real values
before them; the draw is seeded by (seed, epoch), so a resumed run sees the same windows.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

EPS = 1e-8


class Windows(NamedTuple):
    """A batch: normalised inputs ``z`` (N, L) and ``target_z`` (N, h), the ``level`` and
    ``scale`` (N,) that undo the normalisation, the ``phase`` (N,) of the first input value
    in the season, the raw ``target`` (N, h), each series' MASE ``mase_scale`` (N,), and for
    validation batches Naive2's mean sMAPE and MASE on the whole set (to report OWA). For
    the ES-RNN hybrid also the ``raw`` values (N, K) before the origin, which its
    exponential smoothing reads, and each window's ``series`` index (N,) (-1: a series it
    has no coefficients for)."""

    z: Tensor
    target_z: Tensor | None
    level: Tensor
    scale: Tensor
    phase: Tensor
    target: Tensor | None
    mase_scale: Tensor | None
    naive2: tuple[float, float] | None = None
    raw: Tensor | None = None
    series: Tensor | None = None


def cut(values: np.ndarray, origin: int, size: int) -> tuple[np.ndarray, int]:
    """The ``size`` values before ``origin`` (left-padded with the first value) and how many
    of them are padding."""
    start = origin - size
    if start >= 0:
        return values[start:origin], 0
    window = np.empty(size, dtype=np.float64)
    window[-start:] = values[:origin]
    window[:-start] = values[0]
    return window, -start


def normalize(windows: np.ndarray, mode: str, level_size: int) -> tuple[np.ndarray, ...]:
    """``(z, level, scale)`` of windows (N, L): see :mod:`lstmkit.tasks.forecast.model`."""
    level = windows[:, -level_size:].mean(1)
    if mode == "log":
        return np.log(windows / level[:, None]), level, np.ones_like(level)
    scale = windows.std(1) + EPS * (1 + np.abs(level))
    return (windows - level[:, None]) / scale[:, None], level, scale


def apply_norm(values: np.ndarray, level: np.ndarray, scale: np.ndarray, mode: str) -> np.ndarray:
    """Normalise future values (N, h) with the windows' level and scale."""
    if mode == "log":
        return np.log(np.maximum(values, EPS) / level[:, None])
    return (values - level[:, None]) / scale[:, None]


def denormalize(z: Tensor, level: Tensor, scale: Tensor, mode: str) -> Tensor:
    """Forecasts in the series' units from normalised ones (N, h, ...)."""
    shape = (-1,) + (1,) * (z.dim() - 1)
    if mode == "log":
        return level.view(shape) * torch.exp(z)
    return level.view(shape) + z * scale.view(shape)


def make_windows(
    series: list[np.ndarray],
    origins: list[int],
    size: int,
    horizon: int,
    season: int,
    mode: str,
    level_size: int,
    targets: bool = True,
    mase_scales: list[float] | None = None,
    history: int = 0,
    index: list[int] | None = None,
) -> Windows:
    """The windows ending at ``origins`` (one per series of ``series``); with ``history``
    also the last ``history`` raw values before each origin and the series' ``index``."""
    inputs = np.stack([cut(v, t, size)[0] for v, t in zip(series, origins)])
    z, level, scale = normalize(inputs, mode, level_size)
    phase = torch.tensor([(t - size) % season for t in origins])
    target = target_z = None
    if targets:
        raw = np.stack([v[t : t + horizon] for v, t in zip(series, origins)])
        target = torch.from_numpy(raw).float()
        target_z = torch.from_numpy(apply_norm(raw, level, scale, mode)).float()
    return Windows(
        torch.from_numpy(z).float(),
        target_z,
        torch.from_numpy(level).float(),
        torch.from_numpy(scale).float(),
        phase,
        target,
        None if mase_scales is None else torch.tensor(mase_scales, dtype=torch.float32),
        raw=None
        if not history
        else torch.from_numpy(
            np.stack([cut(v, t, history)[0] for v, t in zip(series, origins)])
        ).float(),
        series=None
        if not history
        else torch.tensor(index if index is not None else [-1] * len(series), dtype=torch.long),
    )


def check_positive_series(ids: list[str], series: list[np.ndarray]) -> None:
    """``log`` normalisation needs values > 0: an error naming the first series that has not."""
    for sid, values in zip(ids, series):
        if (values <= 0).any():
            k = int(np.argmax(values <= 0))
            raise ValueError(
                f"series {sid!r} has the value {values[k]:g} at position {k + 1}: log "
                "normalisation needs values > 0 (use --model.normalize scale)"
            )


class TrainWindows:
    """Re-iterable training batches of :class:`Windows` (see the module docstring)."""

    def __init__(
        self,
        series: list[np.ndarray],
        size: int,
        horizon: int,
        season: int,
        mode: str,
        level_size: int,
        per_series: int,
        batch_size: int,
        min_history: int,
        seed: int,
        history: int = 0,
    ) -> None:
        self.series, self.size, self.horizon, self.season = series, size, horizon, season
        self.mode, self.level_size = mode, level_size
        self.per_series, self.batch_size, self.seed = per_series, batch_size, seed
        self.history = history
        # origins t with min_history <= t <= n - h (the target inside the training part)
        self.ranges = [(min(min_history, len(v) - horizon), len(v) - horizon) for v in series]
        bad = [k for k, (lo, hi) in enumerate(self.ranges) if hi < max(lo, 1)]
        if bad:
            raise ValueError(
                f"{len(bad)} series are too short to train on (a window needs at "
                f"least {horizon + 1} values)"
            )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.series) * self.per_series / self.batch_size)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        which = np.repeat(np.arange(len(self.series)), self.per_series)
        lo = np.array([max(r[0], 1) for r in self.ranges])[which]
        hi = np.array([r[1] for r in self.ranges])[which]
        origins = rng.integers(lo, hi + 1)
        order = rng.permutation(len(which))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield make_windows(
                [self.series[which[i]] for i in idx],
                [int(origins[i]) for i in idx],
                self.size,
                self.horizon,
                self.season,
                self.mode,
                self.level_size,
                history=self.history,
                index=[int(which[i]) for i in idx],
            )
