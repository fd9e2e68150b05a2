"""Forecasting: series files -> a global LSTM forecaster -> M4's scores beside its benchmarks.

``train`` reads the series (M4's wide CSV or a long ``unique_id, ds, y`` frame; by default
a sample of M4 Hourly bundled with lstmkit), holds out the last horizon of every series for
validation (M4's protocol one horizon earlier: the test follows the training data in time),
and fits a :class:`~lstmkit.tasks.forecast.model.Forecaster` on windows drawn from the rest
(pinball loss on the quantiles; early stopping and the best epoch kept on validation OWA).
Scores: sMAPE, MASE, OWA (relative to M4's Naive2) and, for the 95% interval, MSIS and
coverage, of the model and of Naive, seasonal naive, Naive2 and any statsforecast models
listed in ``data.baselines``, side by side.

Forecasts for new origins read the whole series: the last ``input_size`` values; a series
shorter than that is padded (counted). Every series read gets a forecast.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from lstmkit.data.series import M4_FREQUENCIES, Series, read_series
from lstmkit.tasks.base import Built, Predictor, RunContext, load_model, read_config
from lstmkit.tasks.forecast import baselines as bl
from lstmkit.tasks.forecast.card import CARD
from lstmkit.tasks.forecast.esrnn import EPS, es_normalize
from lstmkit.tasks.forecast.metrics import mase, mase_scale, owa, score_set, smape
from lstmkit.tasks.forecast.model import Forecaster, ForecastModelConfig, chunk_size, pinball
from lstmkit.tasks.forecast.stream import ForecastStream
from lstmkit.tasks.forecast.windows import (
    TrainWindows,
    Windows,
    check_positive_series,
    denormalize,
    make_windows,
)
from lstmkit.train import StepOutput, TrainConfig, keep_callbacks
from lstmkit.train.config import check_positive

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "m4_hourly_sample.csv.gz"
STATS_BASELINES = ("AutoETS", "AutoTheta", "AutoARIMA", "MSTL")


@dataclass
class ForecastDataConfig:
    """The series, the horizon and the windows.

    Args:
        path: an M4 CSV (``Hourly-train.csv``), a long frame (CSV or Parquet), or ``None``
            for the 40-series M4 Hourly sample bundled with lstmkit. Default: ``None``
        layout: ``auto``, ``m4`` or ``long``. Default: ``auto``
        frequency: an M4 frequency name (hourly, daily, weekly, monthly, quarterly, yearly)
            giving the horizon and seasonal period. Default: ``hourly``
        horizon, season: override the frequency's (0: the frequency's). Default: 0, 0
        freq: the pandas alias of a dated long frame's time step (``None``: the
            frequency's). Default: ``None``
        input_size: the window, rounded up to whole chunks (0: two horizons or 14 seasons,
            the longer; two weeks of hourly values). Default: 0
        windows_per_series: training windows drawn per series and epoch. Default: 128
        min_history: real values a training window needs before its origin (0: one
            chunk). Default: 0
        batch_size, eval_batch_size: windows per batch. Default: 256, 1024
        baselines: statsforecast models scored beside the model (AutoETS, AutoTheta,
            AutoARIMA, MSTL); Naive, seasonal naive and Naive2 always are. Default: none
    """

    path: str | None = None
    layout: str = "auto"
    frequency: str = "hourly"
    horizon: int = 0
    season: int = 0
    freq: str | None = None
    input_size: int = 0
    windows_per_series: int = 128
    min_history: int = 0
    batch_size: int = 256
    eval_batch_size: int = 1024
    baselines: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.frequency not in M4_FREQUENCIES:
            raise ValueError(
                f"data.frequency must be one of {', '.join(M4_FREQUENCIES)}; got {self.frequency!r}"
            )
        if self.layout not in ("auto", "m4", "long"):
            raise ValueError(f"data.layout must be auto, m4 or long; got {self.layout!r}")
        for name in ("horizon", "season", "input_size", "min_history"):
            if getattr(self, name) < 0:
                raise ValueError(f"data.{name} must be >= 0, got {getattr(self, name)!r}")
        check_positive(self, "data", ("windows_per_series", "batch_size", "eval_batch_size"))
        self.baselines = tuple(self.baselines)
        unknown = [b for b in self.baselines if b not in STATS_BASELINES]
        if unknown:
            raise ValueError(
                f"data.baselines: unknown model {unknown[0]!r}; known: {', '.join(STATS_BASELINES)}"
            )

    @property
    def h(self) -> int:
        return self.horizon or M4_FREQUENCIES[self.frequency].horizon

    @property
    def m(self) -> int:
        return self.season or M4_FREQUENCIES[self.frequency].season

    @property
    def pandas_freq(self) -> str:
        return self.freq or M4_FREQUENCIES[self.frequency].pandas


@dataclass
class ForecastConfig:
    """The whole run: ``data``, ``model``, ``train`` and ``patience`` (epochs without a
    better validation OWA before stopping)."""

    data: ForecastDataConfig = field(default_factory=ForecastDataConfig)
    model: ForecastModelConfig = field(default_factory=ForecastModelConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=20, lr=3e-3, schedule="cosine", weight_decay=0.0, monitor="val_owa"
        )
    )
    patience: int = 10

    def __post_init__(self) -> None:
        check_positive(self, "", ("patience",))


class Sizes(NamedTuple):
    """The resolved window, chunk, horizon and season of a config."""

    input_size: int
    chunk: int
    horizon: int
    season: int


def sizes(config: ForecastConfig) -> Sizes:
    d = config.data
    chunk = chunk_size(config.model, d.m)
    size = d.input_size or max(2 * d.h, 14 * d.m if d.m > 1 else 0)
    size = max(chunk, size + (-size) % chunk)  # up to whole chunks
    return Sizes(size, chunk, d.h, d.m)


def build_model(config: ForecastConfig, n_series: int = 0) -> Forecaster:
    s = sizes(config)
    return Forecaster(config.model, s.input_size, s.horizon, s.season, n_series)


def normalized(model: Forecaster, batch: Windows) -> tuple[Tensor, Tensor, Tensor | None, Any]:
    """``(z, phase, target_z, to_units)`` of a batch for ``model``: the windows as the
    model reads them, the normalised targets (``None`` without targets) and the function
    that takes normalised forecasts (N, h[, Q]) back to the series' units."""
    device = next(model.parameters()).device
    phase = batch.phase.to(device)
    if model.es is None:
        mode = model.config.normalize
        target_z = None if batch.target_z is None else batch.target_z.to(device)
        level, scale = batch.level.to(device), batch.scale.to(device)
        return batch.z.to(device), phase, target_z, lambda q: denormalize(q, level, scale, mode)
    raw = batch.raw.to(device)
    raw_phase = (phase - (raw.shape[1] - model.input_size)) % model.season
    z, level, ahead = es_normalize(
        model.es, raw, batch.series.to(device), raw_phase, model.input_size, model.horizon
    )
    factor = level.unsqueeze(1) * ahead  # (N, h)
    target_z = None
    if batch.target is not None:
        target_z = torch.log(batch.target.to(device).clamp_min(EPS) / factor)

    def to_units(q: Tensor) -> Tensor:
        return (factor if q.dim() == 2 else factor.unsqueeze(-1)) * torch.exp(q)

    return z, phase, target_z, to_units


# -- scoring ----------------------------------------------------------------------------------


class ScoreData(NamedTuple):
    """Series to score: ``histories`` (what the forecasts may read), ``actuals`` (S, h), and
    which ``split`` of which ``source``."""

    split: str
    source: str
    ids: list[str]
    histories: list[np.ndarray]
    actuals: np.ndarray
    baselines: tuple[str, ...]
    config: ForecastConfig
    index: list[int] | None = None  # the series' indices in the ES-RNN hybrid's coefficients


def validation_split(series: list[Series], horizon: int) -> tuple[list[Series], list[Series]]:
    """(series long enough to hold out ``horizon`` values, those that are not)."""
    ok = [s for s in series if len(s) > horizon + 1]
    return ok, [s for s in series if len(s) <= horizon + 1]


def scales(histories: list[np.ndarray], season: int) -> list[float]:
    """MASE scales; a history too short for its season is scaled at lag 1 (M4 has none)."""
    return [mase_scale(h, season if len(h) > season else 1) for h in histories]


@torch.no_grad()
def forecast(
    model: Forecaster,
    histories: list[np.ndarray],
    config: ForecastConfig,
    batch_size: int | None = None,
    index: list[int] | None = None,
) -> np.ndarray:
    """The quantile forecasts (S, h, Q) of ``model`` from the end of each history
    (``index``: each history's series index, for the ES-RNN hybrid's coefficients)."""
    s = sizes(config)
    out = []
    size = batch_size or config.data.eval_batch_size
    for start in range(0, len(histories), size):
        part = histories[start : start + size]
        w = make_windows(
            part,
            [len(v) for v in part],
            s.input_size,
            s.horizon,
            s.season,
            config.model.normalize,
            s.chunk,
            targets=False,
            history=model.history,
            index=None if index is None else index[start : start + size],
        )
        z, phase, _, to_units = normalized(model, w)
        out.append(to_units(model(z, phase).float()).double().cpu().numpy())
    return np.concatenate(out)


def score_forecasts(model: Forecaster, data: ScoreData) -> dict:
    """The model and the benchmarks on ``data``: sMAPE, MASE, OWA (and MSIS, coverage)."""
    config = data.config
    s = sizes(config)
    qs = list(config.model.quantiles)
    pred = forecast(model, data.histories, config, index=data.index)
    median = pred[..., qs.index(0.5)]
    interval = (pred[..., 0], pred[..., -1]) if len(qs) >= 3 else (None, None)
    rows = {"lstm": score_set(data.histories, data.actuals, median, s.season, *interval)}
    fc = {
        "naive": bl.naive(data.histories, s.horizon),
        "seasonal_naive": bl.seasonal_naive(data.histories, s.horizon, s.season),
        "naive2": bl.naive2(data.histories, s.horizon, s.season),
    }
    if data.baselines:
        fc.update(bl.statsforecast_models(data.histories, s.horizon, s.season, data.baselines))
    for name, f in fc.items():
        rows[name] = score_set(data.histories, data.actuals, f, s.season)
    for row in rows.values():
        row["owa"] = owa(row, rows["naive2"])
    return {
        "split": data.split,
        "data": data.source,
        "n": len(data.ids),
        "horizon": s.horizon,
        "season": s.season,
        **rows["lstm"],
        "methods": rows,
        "interval": f"{qs[0]:g}-{qs[-1]:g} quantiles" if interval[0] is not None else None,
    }


def format_table(result: dict[str, Any]) -> str:
    """The methods side by side, best OWA first."""
    lines = [f"{'method':<16} {'sMAPE':>8} {'MASE':>8} {'OWA':>7} {'MSIS':>8} {'cover':>6}"]
    rows = sorted(result["methods"].items(), key=lambda kv: kv[1]["owa"])
    for name, r in rows:
        msis = f"{r['msis']:8.3f}" if "msis" in r else f"{'':>8}"
        cover = f"{r['coverage']:6.3f}" if "coverage" in r else ""
        lines.append(
            f"{name:<16} {r['smape']:8.3f} {r['mase']:8.3f} {r['owa']:7.3f} {msis} {cover}"
        )
    return "\n".join(lines)


# -- training ---------------------------------------------------------------------------------


def forecast_step(model: Forecaster, batch: Windows, state: Any = None) -> StepOutput:
    device = next(model.parameters()).device
    z, phase, target_z, to_units = normalized(model, batch)
    quantiles = torch.tensor(model.config.quantiles, device=device)
    outs = model.forward_members(z, phase)
    loss = torch.stack([pinball(o.float(), target_z, quantiles) for o in outs]).mean()
    metrics = {}
    if batch.naive2 is not None:  # validation: M4's scores of the median forecast
        with torch.no_grad():
            mid = torch.stack(outs).mean(0)[..., model.config.quantiles.index(0.5)].float()
            f, y = to_units(mid).double().cpu().numpy(), batch.target.double().numpy()
            # the batch means of M4's per-series scores (every row has h values)
            scores = {
                "smape": smape(y, f),
                "mase": float(
                    np.mean([mase(a, b, c) for a, b, c in zip(y, f, batch.mase_scale.tolist())])
                ),
            }
            metrics = {**scores, "owa": owa(scores, dict(zip(("smape", "mase"), batch.naive2)))}
    return StepOutput(loss, len(batch.z), metrics)


def _read(data: ForecastDataConfig, path: str | None = None) -> list[Series]:
    return read_series(path or data.path or SAMPLE, data.layout, data.pandas_freq)


class ForecastTask:
    """Global LSTM forecasting (see the module docstring)."""

    name = "forecast"
    config_class = ForecastConfig
    card = CARD
    onnx = "lstmkit.tasks.forecast.export"  # its OnnxExport, imported when used
    widget = "forecast"  # the web page's widget (lstmkit/serve/static)

    def build(self, config: ForecastConfig, run: RunContext) -> Built:
        d, s = config.data, sizes(config)
        series, short = validation_split(_read(d), s.horizon)
        if not series:
            raise ValueError(
                f"no series has more than {s.horizon + 1} values: nothing to "
                f"train on with a horizon of {s.horizon}"
            )
        train = [v.values[: -s.horizon] for v in series]
        if config.model.normalize == "log":
            check_positive_series([v.id for v in series], [v.values for v in series])
        padded = sum(len(v) < s.input_size for v in train)
        esrnn = config.model.kind == "esrnn"
        model = build_model(config, len(series) if esrnn else 0)
        print(
            f"{len(series)} series ({d.frequency}, horizon {s.horizon}, season {s.season}); "
            f"the last {s.horizon} values of each held out for validation; window "
            f"{s.input_size} ({padded} series shorter, padded); "
            f"{len(short)} series too short to validate (forecast only)"
        )
        train_data = TrainWindows(
            train,
            s.input_size,
            s.horizon,
            s.season,
            config.model.normalize,
            s.chunk,
            d.windows_per_series,
            d.batch_size,
            d.min_history or s.chunk,
            config.train.seed,
            history=model.history,
        )
        source = str(d.path or SAMPLE)
        score = ScoreData(
            "val",
            source,
            [v.id for v in series],
            train,
            np.stack([v.values[-s.horizon :] for v in series]),
            d.baselines,
            config,
            index=list(range(len(series))),
        )
        artifacts = {"input_size": s.input_size, "horizon": s.horizon, "season": s.season}
        if esrnn:  # the coefficients' series, in order, so forecasts find their own
            artifacts["series_ids"] = [v.id for v in series]
        return Built(
            model,
            train_data,
            self.val_batches(config, score, model.history),
            score_data=score,
            artifacts=artifacts,
            facts={
                "train_series": len(series),
                "padded_series": padded,
                "unvalidated_series": len(short),
            },
            per_step={"train_windows": d.batch_size},
        )

    def val_batches(
        self, config: ForecastConfig, data: ScoreData, history: int = 0
    ) -> list[Windows]:
        """Validation batches: one window per series at its held-out horizon, carrying
        Naive2's mean sMAPE and MASE so that the trainer reports OWA."""
        s = sizes(config)
        n2 = score_set(
            data.histories, data.actuals, bl.naive2(data.histories, s.horizon, s.season), s.season
        )
        full = [np.concatenate([h, a]) for h, a in zip(data.histories, data.actuals)]
        mase_scales = scales(data.histories, s.season)
        out, size = [], config.data.eval_batch_size
        for k in range(0, len(full), size):
            part = full[k : k + size]
            w = make_windows(
                part,
                [len(v) - s.horizon for v in part],
                s.input_size,
                s.horizon,
                s.season,
                config.model.normalize,
                s.chunk,
                mase_scales=mase_scales[k : k + size],
                history=history,
                index=None if data.index is None else data.index[k : k + size],
            )
            out.append(w._replace(naive2=(n2["smape"], n2["mase"])))
        return out

    def step_fn(self, config: ForecastConfig):
        return forecast_step

    def callbacks(self, config: ForecastConfig) -> list:
        return keep_callbacks("val_owa", "min", patience=config.patience)

    def score(self, model: nn.Module, data: ScoreData) -> dict[str, Any]:
        return score_forecasts(model, data)

    def eval_data(
        self,
        predictor: ForecastPredictor,
        path: str | None,
        split: str | None,
        test: str | None = None,
        baselines: tuple[str, ...] = (),
    ) -> ScoreData:
        """``val``: the last horizon of every series of ``path`` (default: the training
        data) held out; with ``test`` (an M4 test file or long frame of the same ids): the
        forecasts from the whole series scored against it (split ``test``)."""
        config = predictor.config
        s = sizes(config)
        series = _read(config.data, path)
        source = str(path or config.data.path or SAMPLE)
        if test is None:
            if split == "test":
                raise ValueError("the test split is a separate file: give --test TEST.csv")
            series, short = validation_split(series, s.horizon)
            if short:
                print(f"{len(short)} series too short to hold out {s.horizon} values: not scored")
            return ScoreData(
                "val",
                source,
                [v.id for v in series],
                [v.values[: -s.horizon] for v in series],
                np.stack([v.values[-s.horizon :] for v in series]),
                tuple(baselines) or config.data.baselines,
                config,
                predictor.series_index([v.id for v in series]),
            )
        actuals = _read(config.data, test)
        by_id = {a.id: a for a in actuals}
        missing = [v.id for v in series if v.id not in by_id]
        if missing:
            raise ValueError(
                f"{test} has no values for series {missing[0]!r} ({len(missing)} series missing)"
            )
        for v in series:
            if len(by_id[v.id]) != s.horizon:
                raise ValueError(
                    f"{test}: series {v.id!r} has {len(by_id[v.id])} test values, "
                    f"but the model's horizon is {s.horizon}"
                )
        return ScoreData(
            "test",
            f"{source} vs {test}",
            [v.id for v in series],
            [v.values for v in series],
            np.stack([by_id[v.id].values for v in series]),
            tuple(baselines) or config.data.baselines,
            config,
            predictor.series_index([v.id for v in series]),
        )

    def load(self, model_dir: str | Path, device: torch.device | None = None) -> Predictor:
        config, artifacts = read_config(model_dir, self, require=("horizon",))
        n_series = len(artifacts.get("series_ids", ()))
        model = load_model(lambda: build_model(config, n_series), model_dir)
        return ForecastPredictor(self.name, config, model, artifacts, model_dir, device)

    def summary(self, results: dict[str, Any]) -> str:
        return (
            f"{format_table(results)}\nvalidation OWA {results['owa']:.3f} (sMAPE "
            f"{results['smape']:.3f}, MASE {results['mase']:.3f}) on the held-out last "
            f"{results['horizon']} values of {results['n']} series; {results['steps']} steps "
            f"in {results['seconds']} s"
        )


class ForecastPredictor(Predictor):
    """Forecasts of series (lists of numbers, oldest first): the median, the interval and
    every quantile, for the model's horizon."""

    @torch.no_grad()
    def predict(self, inputs: list[Any]) -> list[dict[str, Any]]:
        if not inputs:
            raise ValueError("no series to forecast")
        histories = [self._history(k, x) for k, x in enumerate(inputs)]
        if self.config.model.normalize == "log":
            check_positive_series([f"input {k + 1}" for k in range(len(histories))], histories)
        ids = [x.id if isinstance(x, Series) else None for x in inputs]
        pred = forecast(self.model, histories, self.config, index=self.series_index(ids))
        qs = list(self.config.model.quantiles)
        out = []
        for row in pred:
            item = {
                "forecast": row[:, qs.index(0.5)].tolist(),
                "quantiles": {f"{q:g}": row[:, k].tolist() for k, q in enumerate(qs)},
            }
            if len(qs) >= 3:
                item["lower"], item["upper"] = row[:, 0].tolist(), row[:, -1].tolist()
            out.append(item)
        return out

    def open_stream(self) -> ForecastStream:
        """A series fed value by value (:class:`~lstmkit.tasks.forecast.stream.ForecastStream`)."""
        return ForecastStream(self)

    def series_index(self, ids: list[str | None]) -> list[int] | None:
        """Each series' index among the ES-RNN hybrid's coefficients (-1: none, the mean)."""
        known = self.artifacts.get("series_ids")
        if not known:
            return None
        position = {sid: k for k, sid in enumerate(known)}
        return [position.get(sid, -1) for sid in ids]

    @staticmethod
    def _history(k: int, x: Any) -> np.ndarray:
        if isinstance(x, Series):
            return x.values
        try:
            values = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"input {k + 1} is not a list of numbers") from None
        if values.ndim != 1 or len(values) == 0:
            raise ValueError(f"input {k + 1} must be a non-empty list of numbers")
        if not np.isfinite(values).all():
            raise ValueError(f"input {k + 1} holds NaN or infinite values")
        return values

    def parse_input(self, text: str) -> list[float]:
        try:
            values = json.loads(text)
        except json.JSONDecodeError:
            values = text.replace(",", " ").split()
        try:
            return [float(v) for v in values]
        except (TypeError, ValueError):
            raise ValueError(f"not a list of numbers: {text[:60]!r}") from None

    def format_output(self, item: Any, output: dict[str, Any]) -> str:
        return " ".join(f"{v:.6g}" for v in output["forecast"])


TASK = ForecastTask()
