"""The forecasting task: windows that leak no future value, the model, a tiny run that beats
seasonal naive, and the CLI round trip on the bundled sample."""

import json

import numpy as np
import pytest
import torch

from lstmkit.cli.main import main
from lstmkit.data.series import read_m4
from lstmkit.tasks import run
from lstmkit.tasks.forecast.model import Forecaster, ForecastModelConfig, pinball
from lstmkit.tasks.forecast.task import SAMPLE, TASK, ForecastConfig, sizes
from lstmkit.tasks.forecast.windows import TrainWindows, cut, denormalize, make_windows
from lstmkit.train import from_dict


def test_cut_pads_short_histories_on_the_left():
    values = np.arange(1.0, 6.0)
    assert cut(values, 5, 3)[0].tolist() == [3, 4, 5] and cut(values, 5, 3)[1] == 0
    window, padded = cut(values, 2, 4)
    assert window.tolist() == [1, 1, 1, 2] and padded == 2


def test_normalisation_round_trips():
    rng = np.random.default_rng(0)
    series = [rng.uniform(5, 50, 60) for _ in range(3)]
    for mode in ("log", "scale"):
        w = make_windows(series, [40, 50, 60 - 6], 24, 6, 12, mode, 12)
        back = denormalize(w.target_z, w.level, w.scale, mode)
        assert torch.allclose(back, w.target, rtol=1e-5)


def test_a_forecast_reads_nothing_at_or_after_its_origin():
    torch.manual_seed(0)
    model = Forecaster(ForecastModelConfig(hidden_size=8, members=2), 48, 12, 24).eval()
    rng = np.random.default_rng(1)
    values = rng.uniform(1, 10, 200)
    changed = values.copy()
    changed[150:] = rng.uniform(100, 1000, 50)  # everything from the origin on
    a, b = (make_windows([v], [150], 48, 12, 24, "log", 24) for v in (values, changed))
    assert torch.equal(a.z, b.z)
    assert torch.equal(model(a.z, a.phase), model(b.z, b.phase))
    assert not torch.equal(a.target, b.target)


def test_training_windows_are_inside_the_training_part_and_seeded():
    series = [np.arange(1.0, 101.0), np.arange(1.0, 41.0)]
    data = TrainWindows(
        series, 24, 6, 12, "log", 12, per_series=50, batch_size=32, min_history=12, seed=3
    )
    batches = list(data)
    assert len(batches) == len(data) == 4
    target = torch.cat([b.target for b in batches])
    assert target.max() <= 100 and len(target) == 100
    assert all(torch.equal(x.z, y.z) for x, y in zip(batches, list(data)))
    data.set_epoch(1)
    assert not torch.equal(batches[0].z, next(iter(data)).z)


def test_model_shapes_sorted_quantiles_and_pinball():
    model = Forecaster(ForecastModelConfig(hidden_size=8), 48, 12, 24)
    y = model(torch.randn(5, 48), torch.zeros(5, dtype=torch.long))
    assert y.shape == (5, 12, 3) and bool((y.diff(dim=-1) >= 0).all())
    q = torch.tensor([0.1, 0.5, 0.9])
    pred = torch.zeros(1, 1, 3)
    # target 1 above every quantile: losses q · 1 -> mean (0.1 + 0.5 + 0.9) / 3
    assert float(pinball(pred, torch.ones(1, 1), q)) == pytest.approx(0.5)
    assert float(pinball(pred, -torch.ones(1, 1), q)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="not a multiple of the chunk 24"):
        Forecaster(ForecastModelConfig(), 50, 12, 24)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"model": {"quantiles": [0.1, 0.9]}}, "must include 0.5"),
        ({"model": {"quantiles": [0.5, 0.1]}}, "must be increasing"),
        ({"model": {"normalize": "minmax"}}, "model.normalize must be log or scale"),
        ({"data": {"frequency": "minutely"}}, "data.frequency must be one of hourly"),
        ({"data": {"baselines": ["Prophet"]}}, "unknown model 'Prophet'"),
        ({"data": {"horizon": -1}}, "data.horizon must be >= 0"),
        ({"data": {"windows": 3}}, "windows"),
    ],
)
def test_config_errors(section, message):
    with pytest.raises(ValueError, match=message):
        from_dict(ForecastConfig, section)


def synthetic(tmp_path, n_series=12, length=24 * 16):
    """Hourly-like series: a daily cycle whose level grows (seasonal naive lags the trend)."""
    rng = np.random.default_rng(0)
    t = np.arange(length)
    lines = ["V1," + ",".join(f"V{k + 2}" for k in range(length))]
    for k in range(n_series):
        level = 20 * (1 + rng.uniform(0.5, 2.0) * t / length)
        y = (
            level
            * (1 + 0.4 * np.sin(2 * np.pi * (t + 3 * k) / 24))
            * rng.lognormal(0, 0.01, length)
        )
        lines.append(f"S{k}," + ",".join(f"{v:.4f}" for v in y))
    path = tmp_path / "synthetic.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def quiet(**train):
    return {"progress": False, "tensorboard": False, **train}


def test_a_tiny_run_beats_seasonal_naive_on_trending_seasonal_series(tmp_path):
    config = from_dict(
        ForecastConfig,
        {
            "data": {
                "path": str(synthetic(tmp_path)),
                "horizon": 24,
                "input_size": 96,
                "windows_per_series": 64,
            },
            "model": {"hidden_size": 16, "num_layers": 1, "dropout": 0.0},
            "train": quiet(epochs=20, lr=1e-2),
        },
    )
    results = run.train(TASK, config, tmp_path / "m")
    methods = results["methods"]
    # the stated margins: at most 60% of seasonal naive's OWA, and 20% better than Naive2
    assert methods["lstm"]["owa"] < 0.6 * methods["seasonal_naive"]["owa"], methods
    assert methods["lstm"]["owa"] < 0.8, methods
    assert results["n"] == 12 and results["horizon"] == 24
    assert 0.5 < results["coverage"] <= 1.0


def test_predictor_forecasts_any_series_and_rejects_bad_ones(tmp_path):
    config = from_dict(ForecastConfig, {"train": quiet(max_steps=2)})
    run.train(TASK, config, tmp_path / "m")
    predictor = run.load(tmp_path / "m")
    out = predictor.predict([[5.0] * 10, list(np.linspace(1, 2, 500))])
    assert [len(o["forecast"]) for o in out] == [48, 48]
    assert set(out[0]["quantiles"]) == {"0.025", "0.5", "0.975"}
    assert all(
        lo <= mid <= hi for lo, mid, hi in zip(out[1]["lower"], out[1]["forecast"], out[1]["upper"])
    )
    json.dumps(out, allow_nan=False)
    assert predictor.parse_input("[1, 2.5, 3]") == [1, 2.5, 3] == predictor.parse_input("1,2.5 3")
    for bad, message in [
        ([], "no series"),
        ([[]], "input 1 must be a non-empty"),
        ([[1, float("nan")]], "input 1 holds NaN"),
        ([[1.0], [1.0, -2.0]], "series 'input 2' has the value -2"),
    ]:
        with pytest.raises(ValueError, match=message):
            predictor.predict(bad)
    with pytest.raises(ValueError, match="not a list of numbers"):
        predictor.parse_input("[1, 'a']")


def test_cli_train_predict_evaluate_resume_on_the_sample(tmp_path, capsys):
    out = tmp_path / "m"
    args = [
        "forecast",
        "train",
        "--out",
        str(out),
        "--no-progress",
        "--max-steps",
        "3",
        "--train.tensorboard",
        "false",
    ]
    assert main(args) == 0
    assert "40 series (hourly, horizon 48" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["global_step"] == 3
    assert main([*args[:-4], "--max-steps", "6", "--resume", "--train.tensorboard", "false"]) == 0
    assert json.loads((out / "metrics.json").read_text())["global_step"] == 6

    forecasts = tmp_path / "f.csv"
    assert (
        main(
            [
                "forecast",
                "predict",
                "--model",
                str(out),
                "--data",
                str(SAMPLE),
                "--out",
                str(forecasts),
                "--plot",
                str(tmp_path / "plots"),
                "--series",
                "H1",
            ]
        )
        == 0
    )
    rows = read_m4(forecasts)
    assert [r.id for r in rows] == [s.id for s in read_m4(SAMPLE)]
    assert {len(r) for r in rows} == {48}
    assert (tmp_path / "plots" / "H1.png").stat().st_size > 10_000
    long = tmp_path / "f_long.csv"
    assert (
        main(
            [
                "forecast",
                "predict",
                "--model",
                str(out),
                "--data",
                str(SAMPLE),
                "--out",
                str(long),
                "--format",
                "long",
            ]
        )
        == 0
    )
    lines = long.read_text().splitlines()
    assert lines[0] == "unique_id,ds,y_hat,q0.025,q0.5,q0.975" and len(lines) == 1 + 40 * 48

    capsys.readouterr()
    assert (
        main(["forecast", "evaluate", "--model", str(out), "--json", str(tmp_path / "e.json")]) == 0
    )
    printed = capsys.readouterr().out
    scores = json.loads((tmp_path / "e.json").read_text())
    assert scores["methods"]["naive2"]["owa"] == 1.0 and scores["n"] == 40
    assert "seasonal_naive" in printed and f"{scores['owa']:7.3f}" in printed
    results = json.loads((out / "results.json").read_text())
    assert scores["owa"] == pytest.approx(results["owa"], rel=1e-6)

    # scored against a test file: the last 48 values of the sample as "test", the rest as train
    series = read_m4(SAMPLE)
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text(
        "V1\n" + "".join(f"{s.id},{','.join(map(str, s.values[:-48]))}\n" for s in series)
    )
    test.write_text(
        "V1\n" + "".join(f"{s.id},{','.join(map(str, s.values[-48:]))}\n" for s in series)
    )
    assert (
        main(
            [
                "forecast",
                "evaluate",
                "--model",
                str(out),
                "--data",
                str(train),
                "--test",
                str(test),
                "--json",
                str(tmp_path / "t.json"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "t.json").read_text())["owa"] == pytest.approx(scores["owa"])
    test.write_text(
        "V1\n" + "".join(f"{s.id},{','.join(map(str, s.values[-40:]))}\n" for s in series)
    )
    assert (
        main(
            ["forecast", "evaluate", "--model", str(out), "--data", str(train), "--test", str(test)]
        )
        == 2
    )
    assert (
        "series 'H1' has 40 test values, but the model's horizon is 48" in capsys.readouterr().err
    )


def test_sizes_round_the_window_up_to_whole_chunks():
    config = from_dict(ForecastConfig, {"data": {"input_size": 100}})
    assert sizes(config) == (120, 24, 48, 24)
    weekly = from_dict(ForecastConfig, {"data": {"frequency": "weekly"}, "model": {"chunk": 4}})
    assert sizes(weekly) == (28, 4, 13, 1)


def test_cli_errors_are_one_line(tmp_path, capsys):
    out = tmp_path / "m"
    assert (
        main(
            [
                "forecast",
                "train",
                "--out",
                str(out),
                "--no-progress",
                "--max-steps",
                "1",
                "--train.tensorboard",
                "false",
            ]
        )
        == 0
    )
    bad = tmp_path / "bad.csv"
    bad.write_text('"V1","V2","V3"\n"H1",1,oops\n')
    capsys.readouterr()
    cases = [
        (
            ["--data", str(bad), "--out", str(tmp_path / "f.csv")],
            "row 2 (series 'H1'), value 2: 'oops' is not a number",
        ),
        (["--out", str(tmp_path / "f.csv")], "--out and --plot forecast the series of --data"),
        (
            ["--data", str(SAMPLE), "--plot", str(tmp_path), "--series", "H9999"],
            "has no series 'H9999' to plot",
        ),
        (["[1, 2, -3]"], "series 'input 1' has the value -3"),
    ]
    for extra, message in cases:
        assert main(["forecast", "predict", "--model", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert main(["forecast", "evaluate", "--model", str(out), "--split", "test"]) == 2
    assert "give --test TEST.csv" in capsys.readouterr().err


def test_tune_forecast_with_its_bundled_space(tmp_path, capsys):
    out = tmp_path / "tune"
    argv = [
        "tune",
        "forecast",
        "--trials",
        "2",
        "--out",
        str(out),
        "--train.epochs",
        "2",
        "--train.progress",
        "false",
        "--train.tensorboard",
        "false",
    ]
    assert main(argv) == 0
    best = (out / "best.yaml").read_text()
    assert "val_owa = " in best and "model:" in best and "hidden_size:" in best
    assert len((out / "trials.csv").read_text().splitlines()) == 3


def test_short_series_are_padded_or_left_unvalidated_and_counted(tmp_path, capsys):
    series = read_m4(SAMPLE)[:6]
    path = tmp_path / "short.csv"
    rows = [f"{s.id},{','.join(map(str, s.values))}" for s in series]
    rows += ["tiny,5,6,7", "short," + ",".join(["9"] * 100)]  # 3 and 100 values
    path.write_text("V1\n" + "\n".join(rows) + "\n")
    args = [
        "forecast",
        "train",
        "--out",
        str(tmp_path / "m"),
        "--no-progress",
        "--data",
        str(path),
        "--max-steps",
        "2",
        "--train.tensorboard",
        "false",
        "--data.input_size",
        "96",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "7 series (hourly" in printed and "1 series shorter, padded" in printed
    assert "1 series too short to validate (forecast only)" in printed
    results = json.loads((tmp_path / "m" / "results.json").read_text())
    assert results["unvalidated_series"] == 1 and results["padded_series"] == 1
    out = tmp_path / "f.csv"
    assert (
        main(
            [
                "forecast",
                "predict",
                "--model",
                str(tmp_path / "m"),
                "--data",
                str(path),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "8 series forecast 48 steps ahead (1 shorter than the window of 96, padded)" in (
        capsys.readouterr().out
    )
    assert [r.id for r in read_m4(out)][-2:] == ["tiny", "short"]


def test_task_agnostic_evaluate_and_predict_read_a_forecast_directory(tmp_path, capsys):
    out = tmp_path / "m"
    assert (
        main(
            [
                "forecast",
                "train",
                "--out",
                str(out),
                "--no-progress",
                "--max-steps",
                "1",
                "--train.tensorboard",
                "false",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out), "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["methods"]["naive2"]["owa"] == 1.0
    assert "seasonal_naive" in capsys.readouterr().out  # the task's table
    assert main(["predict", "--model", str(out), "[3, 4, 5, 4]"]) == 0
    assert len(capsys.readouterr().out.split()) == 48  # one series' forecast, one line
