"""``lab vanishing``: how far back gradient signal reaches in an Elman RNN, a GRU and LSTMs.

For each model, at initialisation and after a short training on the adding problem, the
norm of ∂L/∂h_t for a loss at the last step is measured at every t of sequences of length
T (the first T pairs of adding-problem sequences). Plotted against the number of steps back
from the loss on a log scale, the Elman RNN's curve falls off exponentially while the
LSTM's stays flat: the vanishing-gradient problem of Hochreiter (1991) and Bengio et al.
(1994), and the constant error carousel that answers it.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import nn

from lstmkit.tasks import run as task_run
from lstmkit.tasks.lab import task
from lstmkit.tasks.lab.adding import adding_batch
from lstmkit.tasks.lab.diagnostics import gradient_profile
from lstmkit.train.checkpoint import METRICS_FILE, read_json, write_json

MODELS = {
    "rnn": {"cell": "rnn"},
    "gru": {"cell": "gru"},
    "lstm": {"cell": "lstm"},
    "lstm-peephole": {"cell": "lstm", "peephole": True},
    "lstm-layer_norm": {"cell": "lstm", "layer_norm": True},
    "lstm-chrono": {"cell": "lstm", "chrono": 1000},  # memory spans up to 1,000 steps
}


def _profile(model: task.SequenceModel, T: int, batch: int, seed: int) -> dict[str, list]:
    data = adding_batch(max(T, 11), batch, torch.Generator().manual_seed(seed))
    x = data.x[:T]  # every sequence has at least T pairs: a fixed length for the profile

    def loss(h_last: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(model.head(h_last).squeeze(-1), data.target)

    return gradient_profile(model.rnn, x, loss, jacobian=T <= 200).as_dict()


def run(
    out_dir: str | Path,
    lengths: tuple[int, ...] = (10, 100, 1000),
    hidden_size: int = 32,
    batch: int = 32,
    train_T: int = 50,
    train_steps: int = 400,
    seed: int = 0,
    models: tuple[str, ...] = tuple(MODELS),
) -> dict[str, Any]:
    """Measure, train briefly, measure again; write results.json, profiles.csv, vanishing.png."""
    bad = [T for T in lengths if T < 2]
    if not lengths or bad:
        raise ValueError(f"--T: every length must be >= 2, got {list(lengths)}")
    for name, value in (("hidden-size", hidden_size), ("train-steps", train_steps)):
        if value <= 0:
            raise ValueError(f"--{name} must be positive, got {value}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    results: dict[str, Any] = {
        "lengths": list(lengths),
        "train_T": train_T,
        "train_steps": train_steps,
        "models": {},
    }
    for name in models:
        config = task.load_config(
            {
                "model": {**MODELS[name], "hidden_size": hidden_size},
                "data": {
                    "T": train_T,
                    "steps_per_epoch": train_steps,
                    "val_size": 500,
                    "test_size": 500,
                },
                "train": {"epochs": 1, "seed": seed, "progress": False, "tensorboard": False},
            }
        )
        torch.manual_seed(seed)
        model = task.build_model(config)
        init = {T: _profile(model, T, batch, seed + 1) for T in lengths}
        task_run.train(task.TASK, config, out_dir / name, overwrite=True)
        trained_model = task.TASK.load(out_dir / name).model
        final = read_json(out_dir / name / METRICS_FILE)
        trained = {T: _profile(trained_model, T, batch, seed + 1) for T in lengths}
        results["models"][name] = {
            "init": init,
            "trained": trained,
            "val_solved": final["val_solved"],
        }
    results["seconds"] = round(time.monotonic() - start, 1)
    write_json(out_dir / "results.json", results)
    _write_csv(out_dir / "profiles.csv", results)
    plot(results, out_dir / "vanishing.png")
    return results


def _write_csv(path: Path, results: dict[str, Any]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "when", "T", "t", "steps_back", "dh_norm", "jacobian_norm"])
        for name, entry in results["models"].items():
            for when in ("init", "trained"):
                for T, profile in entry[when].items():
                    for t, dh in enumerate(profile["dh"][-1]):
                        writer.writerow(
                            [name, when, T, t, int(T) - 1 - t, dh, profile["jacobian"][t]]
                        )


def plot(results: dict[str, Any], path: Path) -> None:
    """||∂L/∂h_t|| against steps back from the loss, longest T, all models, log scale."""
    T = max(results["lengths"])
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    for k, (name, entry) in enumerate(results["models"].items()):
        color = f"C{k}"
        for when, style in (("init", "-"), ("trained", "--")):
            dh = entry[when][T]["dh"][-1]  # last layer
            steps_back = list(range(T - 1, -1, -1))
            axes.plot(steps_back, dh, style, color=color, label=f"{name} ({when})", lw=1.2)
    axes.set_yscale("log")
    axes.set_xlabel("steps back from the loss (T - 1 - t)")
    axes.set_ylabel("||∂L/∂h_t|| (batch mean)")
    axes.set_title(f"Gradient reaching each step, T = {T} (adding problem, loss at the end)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
