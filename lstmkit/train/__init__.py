"""Task-agnostic training: the Trainer, its config, callbacks, checkpoints and tuning."""

from lstmkit.train.callbacks import (
    Callback,
    EarlyStopping,
    LambdaCallback,
    ModelCheckpoint,
    keep_callbacks,
)
from lstmkit.train.config import TrainConfig, apply_overrides, from_dict, load_yaml, to_dict
from lstmkit.train.trainer import History, StepOutput, Trainer

__all__ = [
    "Callback",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "ModelCheckpoint",
    "keep_callbacks",
    "StepOutput",
    "TrainConfig",
    "Trainer",
    "apply_overrides",
    "from_dict",
    "load_yaml",
    "to_dict",
]
