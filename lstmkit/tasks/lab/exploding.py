"""``lab exploding``: an Elman RNN whose gradients explode, trained with and without clipping.

The recurrent matrix is scaled to a spectral radius above 1, the regime in which gradients
can grow exponentially with the time lag (Pascanu, Mikolov & Bengio 2013). The same model,
data and plain SGD are trained three times on the adding problem: without clipping, with
value clipping and with global-norm clipping. Without clipping the gradient norm reaches
astronomical values and steps turn non-finite (the trainer skips and counts them); with
either clipping the training stays finite. Results: ``results.json`` and ``exploding.png``
(loss and gradient norm per step, log scale) plus each run's model directory.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from lstmkit.tasks import run as task_run
from lstmkit.tasks.lab import task
from lstmkit.train.checkpoint import METRICS_FILE, read_json, write_json
from lstmkit.train.logging import STEP_LOG
from lstmkit.train.plot import read_log

RUNS = {
    "no clipping": {"clip_norm": None, "clip_value": None},
    "value clipping": {"clip_norm": None, "clip_value": 0.1},
    "norm clipping": {"clip_norm": 1.0, "clip_value": None},
}


def run(
    out_dir: str | Path,
    T: int = 30,
    spectral_radius: float = 3.0,
    hidden_size: int = 32,
    lr: float = 0.05,
    steps: int = 300,
    seed: int = 0,
) -> dict[str, Any]:
    """Train the three runs; write results.json and exploding.png; return the results."""
    for name, value in (
        ("hidden-size", hidden_size),
        ("steps", steps),
        ("lr", lr),
        ("spectral-radius", spectral_radius),
    ):
        if not value > 0:
            raise ValueError(f"--{name} must be positive, got {value}")
    out_dir = Path(out_dir)
    start = time.monotonic()
    results: dict[str, Any] = {
        "T": T,
        "spectral_radius": spectral_radius,
        "lr": lr,
        "steps": steps,
        "runs": {},
    }
    logs = {}
    for name, clipping in RUNS.items():
        config = task.load_config(
            {
                "model": {
                    "cell": "rnn",
                    "hidden_size": hidden_size,
                    "spectral_radius": spectral_radius,
                },
                "data": {"T": T, "steps_per_epoch": steps, "test_size": 500},
                "train": {
                    "epochs": 1,
                    "optimizer": "sgd",
                    "lr": lr,
                    "weight_decay": 0.0,
                    "seed": seed,
                    "max_nonfinite_steps": steps + 1,
                    "progress": False,
                    "tensorboard": False,
                    **clipping,
                },
            }
        )
        run_dir = out_dir / name.replace(" ", "-")
        task_run.train(task.TASK, config, run_dir, overwrite=True)
        final = read_json(run_dir / METRICS_FILE)
        log = read_log(run_dir / STEP_LOG)
        logs[name] = log
        finite = log["grad_norm"][np.isfinite(log["grad_norm"])]
        results["runs"][name] = {
            **clipping,
            "nonfinite_steps": int(log["skipped"].sum()),
            "max_grad_norm": float(finite.max()) if finite.size else math.nan,
            "final_loss": float(log["loss"][-1]),
            "val_loss": final["val_loss"],
            "val_solved": final["val_solved"],
        }
    results["seconds"] = round(time.monotonic() - start, 1)
    write_json(out_dir / "results.json", results)
    plot(logs, out_dir / "exploding.png", spectral_radius)
    return results


def plot(logs: dict[str, dict[str, np.ndarray]], path: Path, radius: float) -> None:
    figure = Figure(figsize=(10, 4))
    loss_axes, norm_axes = figure.subplots(1, 2)
    for k, (name, log) in enumerate(logs.items()):
        skipped = log["skipped"] > 0
        loss = np.where(np.isfinite(log["loss"]), log["loss"], np.nan)
        loss_axes.plot(log["step"], loss, color=f"C{k}", lw=1, label=name)
        norm_axes.plot(log["step"], log["grad_norm"], color=f"C{k}", lw=1, label=name)
        if skipped.any():
            norm_axes.plot(
                log["step"][skipped],
                np.full(
                    skipped.sum(),
                    np.nanmax(np.where(np.isfinite(log["grad_norm"]), log["grad_norm"], np.nan)),
                ),
                "x",
                color=f"C{k}",
                ms=3,
                label=f"{name}: non-finite (skipped)",
            )
    for axes, label in ((loss_axes, "training loss (MSE)"), (norm_axes, "gradient norm")):
        axes.set_yscale("log")
        axes.set_xlabel("step")
        axes.set_ylabel(label)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=7)
    figure.suptitle(f"Elman RNN, recurrent spectral radius {radius}, SGD: clipping keeps it finite")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
