"""Forecasts of a whole series file: M4's submission layout or a long frame, and plots.

Every series of the input gets a row, in input order (short ones from a padded window: the
count is printed); ``--format long`` continues each series' time stamps (dates at the
model's frequency, or integers).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from lstmkit.data.series import Series, future_stamps, read_series, write_m4


def forecast_file(
    predictor: Any,
    data: str | Path,
    out: str | Path | None,
    layout: str = "m4",
    plot_dir: str | Path | None = None,
    plot_ids: list[str] | None = None,
) -> list[str]:
    """Forecast every series of ``data`` into ``out``; plot ``plot_ids`` (default: the
    first three) into ``plot_dir``. Returns the lines to print (what was written)."""
    config = predictor.config
    series = read_series(data, config.data.layout, config.data.pandas_freq)
    outputs = predictor.predict(series)
    size = predictor.artifacts.get("input_size", 0)
    lines = [
        f"{len(series)} series forecast {predictor.artifacts['horizon']} steps ahead"
        f" ({sum(len(s) < size for s in series)} shorter than the window of {size}, padded)"
    ]
    if out is not None:
        if layout == "m4":
            write_m4(out, [s.id for s in series], [o["forecast"] for o in outputs])
        else:
            write_long(out, series, outputs, config.data.pandas_freq)
        lines.append(f"forecasts: {out}")
    if plot_dir is not None:
        by_id = {s.id: (s, o) for s, o in zip(series, outputs)}
        ids = plot_ids or [s.id for s in series[:3]]
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise ValueError(f"{data} has no series {unknown[0]!r} to plot")
        for sid in ids:
            lines.append(str(plot_forecast(*by_id[sid], Path(plot_dir), predictor.artifacts)))
    elif out is None:
        lines += [
            f"{s.id}\t{' '.join(f'{v:.6g}' for v in o['forecast'])}"
            for s, o in zip(series, outputs)
        ]
    return lines


def write_long(path: str | Path, series: list[Series], outputs: list[dict], freq: str) -> None:
    """``unique_id, ds, y_hat`` and one column per quantile (``q0.025``, ...)."""
    quantiles = list(outputs[0]["quantiles"])
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["unique_id", "ds", "y_hat", *[f"q{q}" for q in quantiles]])
        for s, o in zip(series, outputs):
            stamps = future_stamps(s, len(o["forecast"]), freq)
            for k, ds in enumerate(stamps):
                w.writerow(
                    [
                        s.id,
                        ds,
                        repr(o["forecast"][k]),
                        *[repr(o["quantiles"][q][k]) for q in quantiles],
                    ]
                )


def plot_forecast(series: Series, output: dict, out_dir: Path, artifacts: dict) -> Path:
    """A PNG of the series' recent history (four horizons), the forecast and its interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    h = len(output["forecast"])
    n = len(series)
    shown = series.values[-4 * h :]
    x_hist = np.arange(n - len(shown), n)
    x_future = np.arange(n, n + h)
    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=100)
    ax.plot(x_hist, shown, color="0.3", lw=1, label="history")
    ax.plot(x_future, output["forecast"], color="C0", lw=1.5, label="forecast (median)")
    if "lower" in output:
        qs = list(output["quantiles"])
        ax.fill_between(
            x_future,
            output["lower"],
            output["upper"],
            color="C0",
            alpha=0.25,
            label=f"{qs[0]}–{qs[-1]} quantiles",
        )
    ax.set_title(f"{series.id}: {n} values, horizon {h}")
    ax.set_xlabel("step")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = out_dir / f"{_safe(series.id)}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "series"
