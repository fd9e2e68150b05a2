"""Callbacks with Keras's names and meaning, and the plain hook they all implement."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lstmkit.train.checkpoint import MODEL_FILE, save_weights, unwrap

if TYPE_CHECKING:
    from lstmkit.train.trainer import Trainer

_MAX_WORDS = ("acc", "f1", "auc", "precision", "recall", "solved")


class Callback:
    """Hooks called by :class:`lstmkit.train.Trainer`; override the ones you need.

    ``logs`` of a step hold ``step``, ``epoch``, ``loss``, the task's metrics, ``lr``,
    ``grad_norm`` (before clipping), ``clipped`` and ``skipped``; logs of an epoch hold the
    epoch means, the ``val_*`` metrics and the clipping summary. Set
    ``trainer.stop_training = True`` to stop after the current epoch.
    """

    def on_train_begin(self, trainer: Trainer) -> None: ...

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None: ...

    def on_step_end(self, trainer: Trainer, logs: dict[str, Any]) -> None: ...

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None: ...

    def on_train_end(self, trainer: Trainer, logs: dict[str, Any]) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state saved with the trainer state, for exact resume."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=lambda t, logs: ...)``."""

    def __init__(self, **hooks: Callable) -> None:
        unknown = set(hooks) - {
            "on_train_begin",
            "on_epoch_begin",
            "on_step_end",
            "on_epoch_end",
            "on_train_end",
        }
        if unknown:
            raise ValueError(f"unknown callback hook(s): {', '.join(sorted(unknown))}")
        for name, fn in hooks.items():
            setattr(self, name, fn)


class _Monitor:
    """Tracks the best value of one logged metric."""

    def __init__(self, monitor: str, mode: str, min_delta: float = 0.0) -> None:
        if mode == "auto":
            mode = "max" if any(w in monitor for w in _MAX_WORDS) else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(min_delta)
        self.best = math.inf if mode == "min" else -math.inf

    def value(self, logs: dict[str, Any]) -> float:
        if self.monitor not in logs:
            raise ValueError(
                f"monitored metric {self.monitor!r} is not in the epoch logs "
                f"(they have: {', '.join(sorted(logs))})"
            )
        return float(logs[self.monitor])

    def improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    Args:
        monitor: an epoch log key. Default: ``"val_loss"``
        patience: epochs without improvement before stopping. Default: 0
        mode: ``"min"``, ``"max"`` or ``"auto"`` (max for accuracy-like names). Default: auto
        min_delta: the smallest change that counts as improvement. Default: 0
        restore_best_weights: load the best epoch's weights when training ends. Default: False
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 0,
        mode: str = "auto",
        min_delta: float = 0.0,
        restore_best_weights: bool = False,
    ) -> None:
        self._monitor = _Monitor(monitor, mode, min_delta)
        self.patience = patience
        self.restore_best_weights = restore_best_weights
        self.wait = 0
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self._best_weights: dict | None = None

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        value = self._monitor.value(logs)
        if self._monitor.improved(value):
            self._monitor.best, self.best_epoch, self.wait = value, logs["epoch"], 0
            if self.restore_best_weights:
                self._best_weights = copy.deepcopy(unwrap(trainer.model).state_dict())
            return
        self.wait += 1
        if self.wait >= self.patience:  # as Keras: patience=1 stops after one bad epoch
            self.stopped_epoch = logs["epoch"]
            trainer.stop_training = True

    def on_train_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if self.restore_best_weights and self._best_weights is not None:
            unwrap(trainer.model).load_state_dict(self._best_weights)
            logs["restored_best_epoch"] = self.best_epoch

    def state_dict(self) -> dict[str, Any]:
        return {"best": self._monitor.best, "wait": self.wait, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._monitor.best, self.wait = state["best"], state["wait"]
        self.best_epoch = state["best_epoch"]


class ModelCheckpoint(Callback):
    """Write the model's weights (``model.safetensors``) into the trainer's ``out_dir``: the
    one writer of that file.

    Args:
        monitor: an epoch log key; ``None`` keeps the last weights (written when training
            ends, and after every epoch). Default: ``"val_loss"``
        mode: ``"min"``, ``"max"`` or ``"auto"``. Default: auto
        save_best_only: write only when ``monitor`` improved (the best epoch's weights stay);
            else after every epoch and at the end. Default: ``True``

    The trainer adds ``ModelCheckpoint(monitor=None)`` when no checkpoint is given. The best
    epoch is reported in the final logs as ``best_epoch``.
    """

    def __init__(
        self, monitor: str | None = "val_loss", mode: str = "auto", save_best_only: bool = True
    ) -> None:
        self._monitor = None if monitor is None else _Monitor(monitor, mode)
        self.save_best_only = save_best_only and monitor is not None
        self.best_epoch: int | None = None

    def _save(self, trainer: Trainer) -> None:
        if trainer.out_dir is not None and trainer.is_main:
            save_weights(trainer.model, trainer.out_dir / MODEL_FILE)

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if self._monitor is None:
            self._save(trainer)
            return
        value = self._monitor.value(logs)
        improved = self._monitor.improved(value)
        if improved:
            self._monitor.best, self.best_epoch = value, logs["epoch"]
        if improved or not self.save_best_only:
            self._save(trainer)

    def on_train_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if not self.save_best_only or self.best_epoch is None:
            self._save(trainer)  # the last weights (also of a run stopped inside an epoch)
        if self.best_epoch is not None:
            logs["best_epoch"] = self.best_epoch

    def state_dict(self) -> dict[str, Any]:
        best = None if self._monitor is None else self._monitor.best
        return {"best": best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self._monitor is not None:
            self._monitor.best = state["best"]
        self.best_epoch = state["best_epoch"]


KEEP = ("best", "last")


def keep_callbacks(
    monitor: str, mode: str = "auto", keep: str = "best", patience: int | None = None
) -> list[Callback]:
    """The standard checkpoint and early-stopping policy of a training run.

    ``keep="best"``: the best epoch's weights (by ``monitor``) are written as they happen,
    so a resumed run keeps them; ``keep="last"``: the last epoch's. ``patience``: stop after
    that many epochs without improvement (restoring the best weights when keeping the best);
    ``None``: never stop early.
    """
    if keep not in KEEP:
        raise ValueError(f"keep must be one of {', '.join(KEEP)}, got {keep!r}")
    best = keep == "best"
    stop = (
        []
        if patience is None
        else [EarlyStopping(monitor, patience, mode, restore_best_weights=best)]
    )
    if not best:
        return stop or [ModelCheckpoint(None)]
    return [*stop, ModelCheckpoint(monitor, mode, save_best_only=True)]
