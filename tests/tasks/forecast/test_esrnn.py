"""The ES-RNN hybrid: Holt-Winters by hand, the mean coefficients for unknown series, and a
model directory that forecasts its own series with their coefficients."""

import json

import numpy as np
import pytest
import torch

from lstmkit.data.series import Series, read_m4
from lstmkit.tasks import run
from lstmkit.tasks.forecast.esrnn import ExponentialSmoothing, es_normalize
from lstmkit.tasks.forecast.task import SAMPLE, TASK, ForecastConfig
from lstmkit.train import from_dict


def test_holt_winters_by_hand():
    es = ExponentialSmoothing(2, 2)
    with torch.no_grad():
        es.level_logit[:] = torch.logit(torch.tensor(0.5))
        es.season_logit[:] = torch.logit(torch.tensor(0.25))
        es.init_season[1] = torch.log(torch.tensor([2.0, 0.5]))
    y = torch.tensor([[4.0, 2.0, 6.0]])
    levels, seasons = es(y, torch.tensor([1]), torch.tensor([0]))
    # s0 = 2, s1 = 0.5; l0 = 4/2 = 2; l1 = .5·2/.5 + .5·2 = 3; s2 = .25·4/2 + .75·2 = 2
    # s3 = .25·2/3 + .75·.5; l2 = .5·6/2 + .5·3 = 3; s4 = .25·6/3 + .75·2 = 2
    assert levels[0].tolist() == pytest.approx([2, 3, 3])
    assert seasons[0].tolist() == pytest.approx([2, 0.5, 2, 0.25 * 2 / 3 + 0.375, 2])
    # the phase rotates the learned first season: starting at position 1 reads 0.5 first
    _, rotated = es(y, torch.tensor([1]), torch.tensor([1]))
    assert rotated[0, :2].tolist() == pytest.approx([0.5, 2])


def test_unknown_series_get_the_mean_coefficients():
    es = ExponentialSmoothing(2, 3)
    with torch.no_grad():
        es.level_logit[:] = torch.tensor([0.0, 2.0])
        es.init_season[:] = torch.tensor([[0.0, 0.2, 0.4], [0.2, 0.4, 0.6]])
    alpha, _, e = es.coefficients(torch.tensor([-1, 1]))
    assert alpha.tolist() == pytest.approx(
        [torch.sigmoid(torch.tensor(1.0)).item(), torch.sigmoid(torch.tensor(2.0)).item()]
    )
    assert e[0].tolist() == pytest.approx([0.1, 0.3, 0.5])


def test_normalised_window_of_a_seasonal_series_is_flat():
    es = ExponentialSmoothing(1, 4)
    pattern = torch.tensor([1.0, 2.0, 3.0, 2.0])
    with torch.no_grad():
        es.init_season[0] = torch.log(pattern / pattern.mean())
        es.season_logit[:] = -20  # γ ≈ 0: the season stays as learned
    raw = (10 * pattern / pattern.mean()).repeat(5).unsqueeze(0)
    z, level, ahead = es_normalize(es, raw, torch.tensor([0]), torch.tensor([0]), 8, 6)
    assert z.abs().max() < 1e-5 and level.item() == pytest.approx(10)
    assert ahead[0].tolist() == pytest.approx((pattern / pattern.mean()).repeat(2)[:6].tolist())


def test_an_esrnn_model_directory_forecasts_with_its_series_coefficients(tmp_path):
    config = from_dict(
        ForecastConfig,
        {
            "model": {"kind": "esrnn", "hidden_size": 8, "num_layers": 1},
            "train": {"max_steps": 3, "progress": False, "tensorboard": False},
        },
    )
    results = run.train(TASK, config, tmp_path / "m")
    raw = json.loads((tmp_path / "m" / "config.json").read_text())
    series = read_m4(SAMPLE)
    assert raw["artifacts"]["series_ids"] == [s.id for s in series]
    assert run.evaluate(tmp_path / "m")["owa"] == pytest.approx(results["owa"], rel=1e-6)
    predictor = run.load(tmp_path / "m")
    own = predictor.predict([series[0]])[0]["forecast"]
    anonymous = predictor.predict([series[0].values])[0]["forecast"]  # the mean coefficients
    renamed = predictor.predict([Series("new", series[0].values)])[0]["forecast"]
    assert anonymous == renamed and not np.allclose(own, anonymous)
    with pytest.raises(ValueError, match="esrnn smooths in ratios: it needs model.normalize log"):
        from_dict(ForecastConfig, {"model": {"kind": "esrnn", "normalize": "scale"}})
