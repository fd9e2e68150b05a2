"""Typed, validated configuration: dataclasses from dicts, YAML presets and CLI overrides.

Every config is a dataclass validated in ``__post_init__``. :func:`from_dict` builds one from
plain data (YAML, JSON, CLI), converting strings to the field's type and rejecting unknown
keys; :func:`apply_overrides` turns ``--train.lr 3e-4`` style pairs into nested dicts.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

C = TypeVar("C")

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("constant", "cosine", "linear", "slanted_triangular", "plateau")
PRECISIONS = ("fp32", "bf16", "auto")
MAX_NUMBER = 2**31 - 1  # no config value is larger; bigger ones are typos or attacks


def _positive(name: str, value: float | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or not value > 0:  # NaN is not > 0 either
        raise ValueError(f"{name} must be positive, got {value!r}")


def check_positive(config: Any, section: str, names: tuple[str, ...]) -> None:
    """Each of ``names`` of ``config`` must be > 0 (``section.name`` in the message)."""
    for name in names:
        value = getattr(config, name)
        if not value > 0:  # NaN fails too
            raise ValueError(f"{section}.{name} must be positive, got {value!r}")


def check_fraction(config: Any, section: str, names: tuple[str, ...]) -> None:
    """Each of ``names`` of ``config`` (a probability such as a dropout) must be in [0, 1)."""
    for name in names:
        value = getattr(config, name)
        if not 0 <= value < 1:
            raise ValueError(f"{section}.{name} must be in [0, 1), got {value!r}")


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


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Convert ``value`` (from YAML, JSON or the command line) to the type ``hint``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        is_none = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_none and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where)
            except (TypeError, ValueError) as e:
                errors.append(str(e))
        raise ValueError(errors[0] if errors else f"{where}: cannot use {value!r}")
    if origin is tuple:
        items = yaml.safe_load(value) if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ValueError(f"{where} must be a list, got {value!r}")
        args = typing.get_args(hint)
        return tuple(_convert(v, args[0], where) for v in items)
    if origin is dict or hint in (dict, Any):
        return value
    if origin is list:
        items = yaml.safe_load(value) if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ValueError(f"{where} must be a list, got {value!r}")
        return [_convert(v, typing.get_args(hint)[0], where) for v in items]
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else from_dict(hint, value, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(f"{where} must be true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ValueError(f"{where} must be a number, got {value!r}")
        if isinstance(value, str):
            try:
                value = float(value) if hint is float else int(value)
            except ValueError:
                raise ValueError(f"{where} must be {hint.__name__}, got {value!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number, got {value!r}")
        if abs(value) > MAX_NUMBER:
            raise ValueError(f"{where} must be at most {MAX_NUMBER:.0e} in size, got {value!r}")
        if hint is int and isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{where} must be an integer, got {value!r}")
            value = int(value)
        if not isinstance(value, (int, float)):
            raise ValueError(f"{where} must be {hint.__name__}, got {value!r}")
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[C], data: dict[str, Any] | None, where: str = "") -> C:
    """Build the dataclass ``cls`` from ``data``; unknown keys and bad values are errors."""
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"{where or cls.__name__} must be a mapping, got {data!r}")
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - set(names))
    prefix = f"{where}." if where else ""
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(prefix + k for k in unknown)} for {cls.__name__}; "
            f"known: {', '.join(names)}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k, v in data.items():
        factory = fields[k].default_factory
        if isinstance(v, dict) and dataclasses.is_dataclass(hints[k]) and callable(factory):
            # a section given in part keeps the defaults its parent chose for the rest
            data[k] = {**to_dict(factory()), **v}
    kwargs = {k: _convert(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass as plain JSON/YAML-friendly data (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(config))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML preset as a dict (an empty file is an empty dict)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: a config must be a mapping of sections, got {type(data).__name__}"
        )
    return data


def apply_overrides(data: dict[str, Any], pairs: list[str]) -> dict[str, Any]:
    """Apply ``["--train.lr", "3e-4", "--model.hidden_size=64", "--patience", "5"]`` to
    nested ``data`` (a key without a dot is a top-level one, such as ``patience``).

    Values stay strings here; :func:`from_dict` converts them to each field's type and
    names any key the config does not have.
    """
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    items = list(pairs)
    while items:
        key = items.pop(0)
        if not key.startswith("--") or len(key) == 2:
            raise ValueError(
                f"unrecognised argument {key!r}; overrides look like --section.key VALUE"
            )
        key = key[2:]
        if "=" in key:
            key, value = key.split("=", 1)
        elif items and not items[0].startswith("--"):
            value = items.pop(0)
        else:
            raise ValueError(f"override --{key} needs a value")
        *sections, name = key.split(".")
        node = data
        for depth, section in enumerate(sections):  # --model.encoder.layer_norm: two levels
            child = node.get(section, {})
            if not isinstance(child, dict):
                where = ".".join(sections[: depth + 1])
                raise ValueError(f"cannot override {key}: {where} is not a section")
            node[section] = dict(child)  # a copy: the caller's data stays as it was
            node = node[section]
        node[name] = value
    return data
