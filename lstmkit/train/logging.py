"""Loggers as callbacks: CSV always, TensorBoard when installed, Weights & Biases on request."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import Any

from lstmkit.train.callbacks import Callback

STEP_LOG = "train_log.csv"
EPOCH_LOG = "epoch_log.csv"


class CSVLogger(Callback):
    """One row per optimizer step in ``train_log.csv``, one per epoch in ``epoch_log.csv``.

    On resume, rows past the resumed step (written after the last checkpoint by a run that
    then died) are dropped, so each step appears once.
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)

    def on_train_begin(self, trainer) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, key in ((STEP_LOG, "step"), (EPOCH_LOG, "epoch")):
            path = self.out_dir / name
            if not trainer.resumed:
                path.unlink(missing_ok=True)
            elif path.is_file():
                limit = trainer.global_step if key == "step" else trainer.epoch
                with path.open(newline="") as f:
                    rows = [r for r in csv.DictReader(f) if int(r[key]) <= limit]
                _write_rows(path, rows, mode="w")

    def on_step_end(self, trainer, logs: dict[str, Any]) -> None:
        _write_rows(self.out_dir / STEP_LOG, [logs])

    def on_epoch_end(self, trainer, logs: dict[str, Any]) -> None:
        _write_rows(self.out_dir / EPOCH_LOG, [logs])


def _write_rows(path: Path, rows: list[dict[str, Any]], mode: str = "a") -> None:
    if not rows:
        if mode == "w":
            path.unlink(missing_ok=True)
        return
    new = mode == "w" or not path.is_file()
    if new:
        fields = list(rows[0])
    else:
        with path.open(newline="") as f:
            fields = next(csv.reader(f))
    extra = [k for k in rows[0] if k not in fields]
    if extra:
        raise ValueError(f"{path.name}: new column(s) {', '.join(extra)} after the header")
    with path.open("w" if new else "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def tensorboard_available() -> bool:
    return importlib.util.find_spec("torch.utils.tensorboard") is not None and (
        importlib.util.find_spec("tensorboard") is not None
    )


class TensorBoardLogger(Callback):
    """Scalars to ``out_dir/tensorboard``: per step under ``train/``, per epoch under ``epoch/``."""

    def __init__(self, out_dir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(out_dir) / "tensorboard"))

    def on_step_end(self, trainer, logs: dict[str, Any]) -> None:
        for key, value in _scalars(logs).items():
            self.writer.add_scalar(f"train/{key}", value, logs["step"])

    def on_epoch_end(self, trainer, logs: dict[str, Any]) -> None:
        for key, value in _scalars(logs).items():
            self.writer.add_scalar(f"epoch/{key}", value, logs["epoch"])
        self.writer.flush()

    def on_train_end(self, trainer, logs: dict[str, Any]) -> None:
        self.writer.close()


class WandbLogger(Callback):
    """Weights & Biases (``pip install 'lstmkit[wandb]'``); ``WANDB_MODE=offline`` works."""

    def __init__(self, out_dir: str | Path, project: str, config: dict[str, Any]) -> None:
        try:
            import wandb
        except ImportError:
            raise ImportError(
                "wandb logging needs the wandb package: pip install 'lstmkit[wandb]'"
            ) from None
        self.run = wandb.init(project=project, dir=str(out_dir), config=config, reinit=True)

    def on_step_end(self, trainer, logs: dict[str, Any]) -> None:
        self.run.log({f"train/{k}": v for k, v in _scalars(logs).items()}, step=logs["step"])

    def on_epoch_end(self, trainer, logs: dict[str, Any]) -> None:
        self.run.log({f"epoch/{k}": v for k, v in _scalars(logs).items()}, step=trainer.global_step)

    def on_train_end(self, trainer, logs: dict[str, Any]) -> None:
        self.run.finish()


def _scalars(logs: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in logs.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "epoch")
    }
