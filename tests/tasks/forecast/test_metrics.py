"""M4's measures and benchmarks against hand computations."""

import numpy as np
import pytest

from lstmkit.tasks.forecast import baselines as bl
from lstmkit.tasks.forecast.metrics import mase, mase_scale, msis, owa, score_set, smape


def test_smape_mase_msis_by_hand():
    assert smape([1, 2], [2, 2]) == pytest.approx(200 / 2 * (1 / 3))
    assert smape([0, 0], [0, 0]) == 0
    assert mase_scale([1, 2, 3, 5], 1) == pytest.approx(4 / 3)
    assert mase_scale([1, 2, 3, 5], 2) == pytest.approx(2.5)
    assert mase([6, 6], [5, 7], 4 / 3) == pytest.approx(0.75)
    # widths 1, 1; y=0 under L=1 by 1 (40 · 1), y=10 over U=2 by 8 (40 · 8)
    assert msis([0, 10], [1, 1], [2, 2], 1.0) == pytest.approx((1 + 40 + 1 + 320) / 2)
    with pytest.raises(ValueError, match="MASE needs more than 2 history values"):
        mase_scale([1, 2], 2)


def test_score_set_averages_per_series_and_owa_of_naive2_is_one():
    rng = np.random.default_rng(0)
    histories = [rng.uniform(1, 10, 60) for _ in range(5)]
    actuals = rng.uniform(1, 10, (5, 6))
    n2 = score_set(histories, actuals, bl.naive2(histories, 6, 4), 4)
    assert owa(n2, n2) == 1.0
    one = [
        score_set([h], a[None], bl.naive(histories, 6)[k][None], 4)
        for k, (h, a) in enumerate(zip(histories, actuals))
    ]
    both = score_set(histories, actuals, bl.naive(histories, 6), 4)
    assert both["smape"] == pytest.approx(np.mean([o["smape"] for o in one]))
    assert both["mase"] == pytest.approx(np.mean([o["mase"] for o in one]))


def test_acf_by_hand():
    # deviations -1.5 -0.5 0.5 1.5 (sum of squares 5); lag 1: 0.75 - 0.25 + 0.75 = 1.25
    assert bl.acf(np.array([1.0, 2, 3, 4]), 1) == pytest.approx([0.25])


def test_naive2_on_a_purely_seasonal_series():
    x = np.tile([1.0, 2, 3, 2], 10)  # mean 2: indices 0.5 1 1.5 1
    assert bl.seasonality_test(x, 4)
    assert bl.seasonal_indices(x, 4)[:4] == pytest.approx([0.5, 1, 1.5, 1])
    assert bl.naive2([x], 6, 4)[0] == pytest.approx([1, 2, 3, 2, 1, 2])
    assert bl.seasonal_naive([x], 6, 4)[0].tolist() == [1, 2, 3, 2, 1, 2]
    assert bl.naive([x], 3)[0].tolist() == [2, 2, 2]


def test_naive2_is_naive_without_seasonality():
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.normal(size=200)) + 100
    assert not bl.seasonality_test(x, 1)
    assert bl.naive2([x], 3, 1)[0].tolist() == [x[-1]] * 3
    short = np.tile([1.0, 2, 3, 2], 2)  # fewer than 3 seasons: no test (M4's rule)
    assert not bl.seasonality_test(short, 4)
    assert not bl.seasonality_test(np.tile([1.0, 2] * 12, 10), 24)  # m > 10·log10(n)=23.8


def test_seasonal_indices_match_statsmodels_decompose():
    statsmodels = pytest.importorskip("statsmodels.tsa.seasonal")
    rng = np.random.default_rng(2)
    t = np.arange(120)
    x = (50 + 0.3 * t) * (1 + 0.2 * np.sin(2 * np.pi * t / 12)) * rng.uniform(0.95, 1.05, 120)
    ours = bl.seasonal_indices(x, 12)
    theirs = statsmodels.seasonal_decompose(x, model="multiplicative", period=12).seasonal
    assert ours == pytest.approx(theirs, rel=1e-10)


def test_statsforecast_baselines_forecast_every_series():
    pytest.importorskip("statsforecast")
    rng = np.random.default_rng(3)
    histories = [
        10 + np.sin(np.arange(n) * 2 * np.pi / 4) + rng.normal(0, 0.01, n) for n in (40, 52)
    ]
    out = bl.statsforecast_models(histories, 4, 4, ("AutoETS",), n_jobs=1)
    assert out["AutoETS"].shape == (2, 4)
    expected = 10 + np.sin(np.arange(40, 44) * np.pi / 2)  # the first series' continuation
    assert smape(expected, out["AutoETS"][0]) < 2
    with pytest.raises(ValueError, match="unknown baseline 'Prophet'"):
        bl.statsforecast_models(histories, 4, 4, ("Prophet",))
