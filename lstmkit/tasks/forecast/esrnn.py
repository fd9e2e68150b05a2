"""The ES-RNN hybrid (Smyl 2020, the M4 winner): per-series exponential smoothing whose
coefficients are learned jointly with the global LSTM.

For series k with values y_t and seasonal period m, Holt-Winters' multiplicative level and
season:

    l_t     = α_k · y_t / s_t + (1 - α_k) · l_{t-1}
    s_{t+m} = γ_k · y_t / l_t + (1 - γ_k) · s_t

with α_k = σ(a_k), γ_k = σ(g_k) and the first season s_0..s_{m-1} = exp(e_k) learned per
series (the seasonal start is aligned with the window's phase). The LSTM then reads the
window deseasonalised and divided by the last level, ``log(y_i / (l_{T-1} · s_i))``, and
forecasts the same quantity for every step ahead, which is multiplied back by the level
and the continued season ``s_{T + (j mod m)}``. The smoothing runs over the ``history``
values before each origin (not the whole series: bounded cost per batch), starting from
the first of them.

Series the model has no coefficients for (a forecast of a new series) get the mean of the
learned ones.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

EPS = 1e-8


class ExponentialSmoothing(nn.Module):
    """Learned Holt-Winters level and season of ``n_series`` series (see the module
    docstring).

    Inputs: y, series, phase
        - **y**: (N, K) positive values, oldest first.
        - **series**: (N,) series indices (-1: the mean coefficients).
        - **phase**: (N,) the position in the season of ``y``'s first value.

    Outputs: levels (N, K), seasons (N, K + m): s_0 .. s_{K+m-1}.
    """

    def __init__(self, n_series: int, season: int) -> None:
        super().__init__()
        self.season = max(season, 1)
        self.level_logit = nn.Parameter(torch.zeros(n_series))  # α = 0.5 at the start
        self.season_logit = nn.Parameter(torch.full((n_series,), -2.0))  # γ ≈ 0.12
        self.init_season = nn.Parameter(torch.zeros(n_series, self.season))

    def coefficients(self, series: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        known = series >= 0
        index = series.clamp_min(0)
        a = torch.where(known, self.level_logit[index], self.level_logit.mean())
        g = torch.where(known, self.season_logit[index], self.season_logit.mean())
        e = torch.where(known.unsqueeze(1), self.init_season[index], self.init_season.mean(0))
        return torch.sigmoid(a), torch.sigmoid(g), e

    def forward(self, y: Tensor, series: Tensor, phase: Tensor) -> tuple[Tensor, Tensor]:
        alpha, gamma, e = self.coefficients(series)
        m = self.season
        # the learned first season is indexed by position in the season, so rotate it to
        # start at the phase of y's first value
        shift = (phase.view(-1, 1) + torch.arange(m, device=y.device)) % m
        init = torch.exp(torch.gather(e, 1, shift))
        seasons = list(init.unbind(1))
        levels = []
        level = y[:, 0] / seasons[0]
        for t in range(y.shape[1]):
            level = alpha * y[:, t] / seasons[t] + (1 - alpha) * level
            seasons.append(gamma * y[:, t] / level + (1 - gamma) * seasons[t])
            levels.append(level)
        return torch.stack(levels, 1), torch.stack(seasons, 1)


def es_normalize(
    es: ExponentialSmoothing, raw: Tensor, series: Tensor, phase: Tensor, size: int, horizon: int
) -> tuple[Tensor, Tensor, Tensor]:
    """``(z, level, future_season)``: the last ``size`` of ``raw`` (N, K) deseasonalised and
    divided by the last level, in logs; the level (N,) and the seasons (N, h) to forecast
    with. ``phase`` is the position in the season of the first value of ``raw``."""
    levels, seasons = es(raw.clamp_min(EPS), series, phase)
    k, m = raw.shape[1], es.season
    level = levels[:, -1]
    z = torch.log(raw[:, k - size :] / (level.unsqueeze(1) * seasons[:, k - size : k]))
    ahead = k + torch.arange(horizon, device=raw.device) % m
    return z, level, seasons[:, ahead]
