"""Training's config, :class:`TrainConfig` (optimisation, schedule, precision, logging,
stopping), validated in ``__post_init__``.

The general machinery (dataclasses from dicts, YAML presets, CLI overrides, the shared
checks) is :mod:`lstmkit.config`; it is re-exported here and from :mod:`lstmkit.train`, so
``from lstmkit.train import from_dict, to_dict, TrainConfig`` keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass

from lstmkit.config import (
    MAX_NUMBER,
    apply_overrides,
    check_fraction,
    check_positive,
    from_dict,
    load_yaml,
    to_dict,
)

__all__ = [
    "MAX_NUMBER",
    "OPTIMIZERS",
    "PRECISIONS",
    "SCHEDULES",
    "TrainConfig",
    "apply_overrides",
    "check_fraction",
    "check_positive",
    "from_dict",
    "load_yaml",
    "to_dict",
]

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("constant", "cosine", "linear", "slanted_triangular", "plateau")
PRECISIONS = ("fp32", "bf16", "auto")


def _positive(name: str, value: float | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or not value > 0:  # NaN is not > 0 either
        raise ValueError(f"{name} must be positive, got {value!r}")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


@dataclass
class TrainConfig:
    """How to train: optimisation, clipping, schedule, precision, logging and stopping.

    Args:
        epochs: passes over the training data. Default: 1
        max_steps: stop after this many optimizer steps in all (a cap: the LR schedule still
            spans ``epochs``); ``None`` = no cap. Default: ``None``
        max_minutes: stop after this much training time (checked between steps; a resumed
            run counts the time spent before). Default: ``None``
        lr: peak learning rate. Default: 1e-3
        optimizer: ``adamw`` or ``sgd``. Default: ``adamw``
        weight_decay: decoupled (AdamW) or L2 (SGD) weight decay. Default: 0.01
        betas: AdamW's betas. Default: (0.9, 0.999)
        momentum, nesterov: SGD's momentum and Nesterov flag. Default: 0.0, ``False``
        schedule: ``constant``, ``cosine`` (warmup + cosine to 0), ``linear`` (warmup + linear
            decay to 0), ``slanted_triangular`` (ULMFiT) or ``plateau`` (ReduceLROnPlateau on
            ``monitor``). Default: ``constant``
        schedule_by: ``steps``: the schedule spans the planned steps (``epochs`` or
            ``max_steps``); ``time``: it spans the time budget ``max_minutes`` instead and
            reaches its end (zero for cosine/linear) at the deadline, on any machine
            (budgeted training, Li et al. 2020), or with the planned steps where a fast
            machine runs them all before it (the larger fraction leads); a deadline inside an
            epoch ends it with the validation of the final weights (a partial epoch).
            Default: ``steps``
        warmup_steps: linear warmup from 0 for constant/cosine/linear. Default: 0
        stlr_cut_frac, stlr_ratio: slanted triangular's cut fraction and ratio. Default: 0.1, 32
        plateau_factor, plateau_patience: ReduceLROnPlateau's. Default: 0.5, 1
        monitor, mode: the validation metric the plateau schedule follows. Default:
            ``val_loss``, ``min``
        ema: decay of an exponential moving average of the weights (e.g. 0.999), updated
            after every step; validation, checkpoints and the final model use the average
            (:mod:`lstmkit.train.ema`). ``None``: off. Default: ``None``
        clip_norm: clip the global gradient norm to this (``None``: off). Default: 1.0
        clip_value: clip each gradient element to ±this, before norm clipping. Default: ``None``
        max_nonfinite_steps: stop with an error after this many consecutive steps whose
            gradients are not finite (each is skipped). Default: 5
        detect_anomaly: run backward under ``torch.autograd.detect_anomaly``. Default: ``False``
        precision: ``fp32``, ``bf16`` (autocast for the forward pass) or ``auto`` (bf16 where
            the hardware has native bf16, else fp32; :mod:`lstmkit.train.precision`).
            Default: ``fp32``
        seed: seeds random, numpy and torch. Default: 0
        deterministic: ``torch.use_deterministic_algorithms(True)``. Default: ``False``
        checkpoint_every: also save the trainer state every this many steps. Default: ``None``
        progress: show tqdm progress bars (also off when stdout is not a terminal).
            Default: ``True``
        tensorboard: log to TensorBoard when it is installed. Default: ``True``
        wandb: log to Weights & Biases (``lstmkit[wandb]``). Default: ``False``
    """

    epochs: int = 1
    max_steps: int | None = None
    max_minutes: float | None = None
    lr: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.0
    nesterov: bool = False
    schedule: str = "constant"
    schedule_by: str = "steps"
    warmup_steps: int = 0
    stlr_cut_frac: float = 0.1
    stlr_ratio: float = 32.0
    plateau_factor: float = 0.5
    plateau_patience: int = 1
    monitor: str = "val_loss"
    mode: str = "min"
    ema: float | None = None
    clip_norm: float | None = 1.0
    clip_value: float | None = None
    max_nonfinite_steps: int = 5
    detect_anomaly: bool = False
    precision: str = "fp32"
    seed: int = 0
    deterministic: bool = False
    checkpoint_every: int | None = None
    progress: bool = True
    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "lstmkit"

    def __post_init__(self) -> None:
        _positive("epochs", self.epochs)
        _positive("max_steps", self.max_steps, allow_none=True)
        _positive("max_minutes", self.max_minutes, allow_none=True)
        _positive("lr", self.lr)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("schedule_by", self.schedule_by, ("steps", "time"))
        if self.schedule_by == "time" and (self.max_minutes is None or self.schedule == "plateau"):
            raise ValueError(
                "schedule_by time needs max_minutes (the budget the schedule spans) and a "
                "schedule other than plateau"
            )
        _choice("precision", self.precision, PRECISIONS)
        _choice("mode", self.mode, ("min", "max"))
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs optimizer='sgd' and momentum > 0")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps!r}")
        if self.warmup_steps and self.schedule in ("plateau", "slanted_triangular"):
            raise ValueError(f"warmup_steps does not apply to schedule {self.schedule!r}")
        if not 0 < self.stlr_cut_frac < 1:
            raise ValueError(f"stlr_cut_frac must be in (0, 1), got {self.stlr_cut_frac!r}")
        _positive("stlr_ratio", self.stlr_ratio)
        if not 0 < self.plateau_factor < 1:
            raise ValueError(f"plateau_factor must be in (0, 1), got {self.plateau_factor!r}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ValueError(f"ema must be in (0, 1) (a decay such as 0.999), got {self.ema!r}")
        _positive("clip_norm", self.clip_norm, allow_none=True)
        _positive("clip_value", self.clip_value, allow_none=True)
        _positive("max_nonfinite_steps", self.max_nonfinite_steps)
        _positive("checkpoint_every", self.checkpoint_every, allow_none=True)
        if self.plateau_patience < 0:
            raise ValueError(f"plateau_patience must be >= 0, got {self.plateau_patience!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed!r}")
        self.betas = tuple(self.betas)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
