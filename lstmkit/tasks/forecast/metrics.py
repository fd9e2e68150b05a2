"""M4's accuracy measures, exactly as the competition defined them (Makridakis et al. 2020,
"The M4 Competition: 100,000 time series and 61 forecasting methods", and the organisers'
R code in github.com/Mcompetitions/M4-methods).

For one series with history ``x`` (n values), actuals ``y`` and forecasts ``f`` over the
horizon h, and seasonal period m:

    sMAPE = 200/h · Σ |y - f| / (|y| + |f|)
    MASE  = (1/h · Σ |y - f|) / scale,   scale = 1/(n - m) · Σ_{t>m} |x_t - x_{t-m}|
    MSIS  = (1/h · Σ (U - L) + 2/a·(L - y)·[y < L] + 2/a·(y - U)·[y > U]) / scale,  a = 0.05

Each is averaged over the series of a set; OWA = (sMAPE / sMAPE_Naive2 + MASE / MASE_Naive2) / 2
of those averages.
"""

from __future__ import annotations

import numpy as np


def mase_scale(history: np.ndarray, season: int) -> float:
    """The in-sample seasonal-naive MAE that scales MASE and MSIS (M4's ``masep``).

    Raises:
        ValueError: a history of ``season`` values or fewer (no seasonal difference).
    """
    history = np.asarray(history, dtype=np.float64)
    if len(history) <= season:
        raise ValueError(
            f"MASE needs more than {season} history values (the seasonal period); got "
            f"{len(history)}"
        )
    return float(np.mean(np.abs(history[season:] - history[:-season])))


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Symmetric MAPE in percent (0 where actual and forecast are both 0)."""
    actual, forecast = np.asarray(actual, np.float64), np.asarray(forecast, np.float64)
    denominator = np.abs(actual) + np.abs(forecast)
    ratio = np.divide(
        np.abs(actual - forecast),
        denominator,
        out=np.zeros_like(denominator),
        where=denominator > 0,
    )
    return float(200 * ratio.mean())


def mase(actual: np.ndarray, forecast: np.ndarray, scale: float) -> float:
    """Mean absolute error over the horizon divided by :func:`mase_scale`."""
    error = np.mean(np.abs(np.asarray(actual, np.float64) - np.asarray(forecast, np.float64)))
    return float(error / scale) if scale > 0 else float("inf") if error > 0 else 0.0


def msis(
    actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, scale: float, alpha: float = 0.05
) -> float:
    """Mean scaled interval score of the ``1 - alpha`` interval ``[lower, upper]``."""
    y, lo, hi = (np.asarray(v, np.float64) for v in (actual, lower, upper))
    score = (hi - lo) + 2 / alpha * (lo - y) * (y < lo) + 2 / alpha * (y - hi) * (y > hi)
    return float(score.mean() / scale) if scale > 0 else float("inf")


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """The fraction of actuals inside ``[lower, upper]``."""
    y = np.asarray(actual, np.float64)
    return float(np.mean((y >= np.asarray(lower)) & (y <= np.asarray(upper))))


def score_set(
    histories: list[np.ndarray],
    actuals: np.ndarray,
    forecasts: np.ndarray,
    season: int,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> dict[str, float]:
    """sMAPE and MASE (and, with an interval, MSIS and coverage) averaged over series.

    Shapes: ``actuals``, ``forecasts``, ``lower``, ``upper``: (S, h); ``histories``: S arrays.
    """
    scales = [mase_scale(h, season) for h in histories]
    out = {
        "smape": float(np.mean([smape(a, f) for a, f in zip(actuals, forecasts)])),
        "mase": float(np.mean([mase(a, f, s) for a, f, s in zip(actuals, forecasts, scales)])),
    }
    if lower is not None and upper is not None:
        out["msis"] = float(
            np.mean([msis(a, lo, hi, s) for a, lo, hi, s in zip(actuals, lower, upper, scales)])
        )
        out["coverage"] = coverage(actuals, lower, upper)
    return out


def owa(scores: dict[str, float], naive2: dict[str, float]) -> float:
    """M4's overall weighted average relative to Naive2's sMAPE and MASE on the same set."""
    return 0.5 * (scores["smape"] / naive2["smape"] + scores["mase"] / naive2["mase"])
