"""Training curves as PNG files from a model directory's CSV logs.

The Trainer's :class:`lstmkit.train.logging.CSVLogger` writes ``train_log.csv`` (one row per
optimizer step) and ``epoch_log.csv`` (one row per epoch, with the ``val_*`` metrics). This
turns them into pictures anyone can open, with no TensorBoard or notebook: the loss, each
metric (train vs val), the gradient norm with the clipped steps marked, and the learning rate.

Figures are built with :class:`matplotlib.figure.Figure`, which renders with the Agg backend
and leaves pyplot's global state (and whatever backend a notebook chose) alone.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lstmkit.train.checkpoint import METRICS_FILE, read_json
from lstmkit.train.logging import EPOCH_LOG, STEP_LOG

STEP_COLUMNS = ("step", "epoch", "loss", "lr", "grad_norm", "clipped", "skipped")
"""What the Trainer logs every step; any other column of ``train_log.csv`` is a metric."""

PLOTS_DIR = "plots"
FIGSIZE = (7.0, 4.0)
DPI = 100


def read_log(path: str | Path) -> dict[str, np.ndarray]:
    """A CSV log as float columns. Blank or unreadable cells (a row being written while a
    live run is plotted) are NaN."""
    with Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    columns = list(rows[0]) if rows else []
    return {c: np.array([_number(row.get(c)) for row in rows]) for c in columns}


def _number(cell: str | None) -> float:
    try:
        return float(cell) if cell else math.nan
    except ValueError:
        return math.nan


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average, debiased so that the first
    values are not pulled towards 0; NaNs are skipped."""
    if not 0 <= weight < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {weight}")
    out = np.empty(len(values))
    last, count = 0.0, 0
    for i, value in enumerate(values):
        if math.isfinite(value):
            last, count = last * weight + (1 - weight) * value, count + 1
        out[i] = last / (1 - weight**count) if count else math.nan
    return out


def log_figures(model_dir: str | Path, smoothing: float = 0.9) -> dict[str, Figure]:
    """The figures of a model directory's logs, by name: ``loss``, one per metric (e.g.
    ``solved``), ``grad_norm`` and ``lr``. Epoch values are drawn at each epoch's last step.

    ``epoch_log.csv`` may be missing (a run still in its first epoch): the epoch curves are
    then left out. ``train_log.csv`` is required.
    """
    model_dir = Path(model_dir)
    step_path = model_dir / STEP_LOG
    if not step_path.is_file():
        raise FileNotFoundError(f"no training log at {step_path} (the Trainer's CSV logger)")
    steps = read_log(step_path)
    if not steps or not len(steps["step"]):
        raise ValueError(f"{step_path} has no steps yet")
    epoch_path = model_dir / EPOCH_LOG
    epochs = read_log(epoch_path) if epoch_path.is_file() else {}
    epoch_x = _epoch_ends(steps, epochs.get("epoch", np.array([])))
    x = steps["step"]

    figures = {"loss": _curves("loss", x, steps["loss"], epoch_x, epochs, smoothing)}
    for metric in (c for c in steps if c not in STEP_COLUMNS):
        figures[metric] = _curves(metric, x, steps[metric], epoch_x, epochs, smoothing)
    clip_norm = _clip_norm(model_dir)
    figures["grad_norm"] = _grad_norm(x, steps["grad_norm"], steps["clipped"], clip_norm)
    figures["lr"] = _lr(x, steps["lr"])
    for name, figure in figures.items():
        figure.axes[0].set_title(f"{name} - {model_dir.resolve().name}")
    return figures


def plot_log(
    model_dir: str | Path, out: str | Path | None = None, smoothing: float = 0.9
) -> list[Path]:
    """Write the figures of :func:`log_figures` as ``NAME.png`` into ``out`` (default
    ``model_dir/plots``); returns their paths."""
    figures = log_figures(model_dir, smoothing)
    out = Path(out) if out is not None else Path(model_dir) / PLOTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, figure in figures.items():
        path = out / f"{name}.png"
        figure.savefig(path, dpi=DPI)
        paths.append(path)
    return paths


def _epoch_ends(steps: dict[str, np.ndarray], epoch_numbers: np.ndarray) -> np.ndarray:
    """The last logged step of each epoch (NaN for an epoch with no steps in the log)."""
    ends = [steps["step"][steps["epoch"] == e] for e in epoch_numbers]
    return np.array([s.max() if len(s) else math.nan for s in ends])


def _clip_norm(model_dir: Path) -> float | None:
    """The run's ``train.clip_norm`` (``metrics.json``, once training ended), to draw as the
    clipping threshold."""
    path = model_dir / METRICS_FILE
    return read_json(path).get("clip_norm") if path.is_file() else None


def _axes(ylabel: str) -> tuple[Figure, Axes]:
    figure = Figure(figsize=FIGSIZE, layout="constrained")
    ax = figure.subplots()
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return figure, ax


def _curves(
    name: str,
    x: np.ndarray,
    per_step: np.ndarray,
    epoch_x: np.ndarray,
    epochs: dict[str, np.ndarray],
    smoothing: float,
) -> Figure:
    """Per-step values (faint), their smoothed curve, and the train and val epoch means."""
    figure, ax = _axes(name)
    ax.plot(x, per_step, color="C0", alpha=0.25, linewidth=0.8, label="per step")
    ax.plot(x, smooth(per_step, smoothing), color="C0", label=f"smoothed ({smoothing:g})")
    for key, label, color in ((name, "train (epoch mean)", "C1"), (f"val_{name}", "val", "C2")):
        if key in epochs:
            ax.plot(epoch_x, epochs[key], "o-", color=color, label=label)
    ax.legend()
    return figure


def _grad_norm(
    x: np.ndarray, norms: np.ndarray, clipped: np.ndarray, clip_norm: float | None
) -> Figure:
    """Gradient norm before clipping, log scale; clipped steps marked, non-finite ones as
    vertical lines (the Trainer skipped them)."""
    figure, ax = _axes("gradient norm (before clipping)")
    ax.set_yscale("log")
    finite = np.isfinite(norms)
    ax.plot(x[finite], norms[finite], color="C0", linewidth=0.8, label="per step")
    hit = (clipped == 1) & finite
    ax.scatter(
        x[hit],
        norms[hit],
        color="C3",
        marker="x",
        zorder=3,
        label=f"clipped ({int(hit.sum())} of {len(x)} steps)",
    )
    if clip_norm is not None:
        ax.axhline(clip_norm, color="C3", linestyle="--", linewidth=0.8, label="clip_norm")
    for i, step in enumerate(x[~finite]):
        ax.axvline(step, color="C3", alpha=0.5, label="non-finite (skipped)" if i == 0 else None)
    ax.legend()
    return figure


def _lr(x: np.ndarray, lr: np.ndarray) -> Figure:
    figure, ax = _axes("learning rate")
    ax.plot(x, lr, color="C0", label="per step")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    return figure
