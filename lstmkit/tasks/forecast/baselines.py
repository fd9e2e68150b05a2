"""M4's benchmarks, computed as its organisers did (the R code of github.com/Mcompetitions/
M4-methods): Naive (the last value), seasonal naive (the last season repeated), Naive2
(naive on the seasonally adjusted series when a 90% autocorrelation test finds seasonality
at lag m: classical multiplicative decomposition, R's ``decompose``), and statsforecast's
AutoETS and AutoTheta as the reference rows users would otherwise pick.

Every function takes a list of histories and returns forecasts of shape (S, h).
"""

from __future__ import annotations

import math
import os

import numpy as np


def naive(histories: list[np.ndarray], horizon: int) -> np.ndarray:
    return np.stack([np.full(horizon, h[-1], dtype=np.float64) for h in histories])


def seasonal_naive(histories: list[np.ndarray], horizon: int, season: int) -> np.ndarray:
    """The last ``season`` values repeated (naive where the history is shorter)."""
    out = []
    for h in histories:
        if len(h) < season:
            out.append(np.full(horizon, h[-1], dtype=np.float64))
        else:
            out.append(np.resize(h[-season:], horizon).astype(np.float64))
    return np.stack(out)


def acf(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Sample autocorrelations at lags 1..max_lag (R's ``acf``: one overall mean and the
    lag-0 sum of squares as the denominator)."""
    x = np.asarray(x, np.float64) - np.mean(x)
    denominator = float(np.dot(x, x))
    if denominator == 0:
        return np.zeros(max_lag)
    return np.array([np.dot(x[:-k], x[k:]) / denominator for k in range(1, max_lag + 1)])


def seasonality_test(x: np.ndarray, season: int) -> bool:
    """M4's test: seasonal when |acf(m)| > 1.645 · sqrt((1 + 2 Σ_{k<m} acf(k)²) / n).

    As M4's R code: no test (not seasonal) for m = 1, for fewer than 3m values, and where m
    exceeds R's default ``lag.max`` (10·log10(n)).
    """
    n = len(x)
    if season <= 1 or n < 3 * season or season > min(math.floor(10 * math.log10(n)), n - 1):
        return False
    r = acf(x, season)
    limit = 1.645 / math.sqrt(n) * math.sqrt(1 + 2 * float(np.sum(r[: season - 1] ** 2)))
    return bool(abs(r[season - 1]) > limit)


def seasonal_indices(x: np.ndarray, season: int) -> np.ndarray:
    """R's ``decompose(type = "multiplicative")$seasonal``: x over its centred moving
    average (2×m for even m), averaged by position in the season, normalised to mean 1;
    one index per value of ``x``, aligned with its first value."""
    x = np.asarray(x, np.float64)
    n = len(x)
    if season % 2 == 0:
        weights = np.r_[0.5, np.ones(season - 1), 0.5] / season
    else:
        weights = np.ones(season) / season
    half = len(weights) // 2
    trend = np.full(n, np.nan)
    trend[half : n - half] = np.convolve(x, weights[::-1], mode="valid")
    ratio = x / trend
    figure = np.array([np.nanmean(ratio[i::season]) for i in range(season)])
    figure = figure / figure.mean()
    return np.resize(figure, n)


def naive2(histories: list[np.ndarray], horizon: int, season: int) -> np.ndarray:
    """M4's Naive2: naive on the seasonally adjusted history where :func:`seasonality_test`
    finds seasonality, times the continued seasonal indices; naive elsewhere."""
    out = []
    for h in histories:
        h = np.asarray(h, np.float64)
        if seasonality_test(h, season):
            indices = seasonal_indices(h, season)
            future = np.resize(indices[-season:], horizon)
            out.append(h[-1] / indices[-1] * future)
        else:
            out.append(np.full(horizon, h[-1]))
    return np.stack(out)


def statsforecast_models(
    histories: list[np.ndarray],
    horizon: int,
    season: int,
    models: tuple[str, ...] = ("AutoETS", "AutoTheta"),
    n_jobs: int | None = None,
) -> dict[str, np.ndarray]:
    """Forecasts of statsforecast's automatic models (``AutoETS``, ``AutoTheta``,
    ``AutoARIMA``, ``MSTL``), fitted per series with seasonal period ``season``."""
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast import models as sf

    known = {
        "AutoETS": lambda: sf.AutoETS(season_length=season),
        "AutoTheta": lambda: sf.AutoTheta(season_length=season),
        "AutoARIMA": lambda: sf.AutoARIMA(season_length=season),
        "MSTL": lambda: sf.MSTL(season_length=season),
    }
    unknown = [m for m in models if m not in known]
    if unknown:
        raise ValueError(f"unknown baseline {unknown[0]!r}; known: {', '.join(known)}")
    frame = pd.DataFrame(
        {
            "unique_id": np.concatenate([np.full(len(h), k) for k, h in enumerate(histories)]),
            "ds": np.concatenate([np.arange(len(h)) for h in histories]),
            "y": np.concatenate(histories),
        }
    )
    engine = StatsForecast(
        models=[known[m]() for m in models], freq=1, n_jobs=n_jobs or os.cpu_count() or 1
    )
    result = engine.forecast(df=frame, h=horizon).sort_values(["unique_id", "ds"])
    return {m: result[m].to_numpy(np.float64).reshape(len(histories), horizon) for m in models}
