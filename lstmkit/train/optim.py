"""Optimizers and learning-rate schedules, each schedule a closed-form function of the step."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from lstmkit.train.config import TrainConfig


def build_optimizer(config: TrainConfig, params: Iterable) -> torch.optim.Optimizer:
    """AdamW or SGD over ``params`` (tensors or torch param-group dicts with their own lr)."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(
            params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
        )
    return torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )


def discriminative_groups(layers: Sequence[nn.Module], lr: float, decay: float = 2.6) -> list[dict]:
    """ULMFiT's discriminative learning rates: the last layer gets ``lr``, each earlier one
    ``decay`` times less (Howard & Ruder 2018). ``layers`` are ordered input to output."""
    n = len(layers)
    return [
        {"params": list(layer.parameters()), "lr": lr / decay ** (n - 1 - k)}
        for k, layer in enumerate(layers)
    ]


def lr_factor(
    config: TrainConfig,
    total_steps: int | None,
    time_fraction: Callable[[], float] | None = None,
) -> Callable[[int], float]:
    """The schedule as a multiplier of each group's base lr after ``step`` optimizer steps;
    with ``config.schedule_by == "time"``, of the fraction of the time budget spent
    (``time_fraction()``) instead (warmup still counts steps)."""
    warmup = config.warmup_steps

    def warm(step: int) -> float:
        return (step + 1) / (warmup + 1) if step < warmup else 1.0

    if config.schedule == "constant":
        return warm
    if config.schedule_by == "time":
        if time_fraction is None:
            raise ValueError("schedule_by time needs the fraction of the time budget spent")
        return _time_factor(config, warm, time_fraction, total_steps)
    if total_steps is None:
        raise ValueError(
            f"schedule {config.schedule!r} needs the number of steps: give max_steps or "
            "training data with a length"
        )
    if config.schedule == "cosine":

        def cosine(step: int) -> float:
            if step < warmup:
                return warm(step)
            progress = min(1.0, _step_progress(step, warmup, total_steps))
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        return cosine
    if config.schedule == "linear":

        def linear(step: int) -> float:
            if step < warmup:
                return warm(step)
            return max(0.0, 1.0 - _step_progress(step, warmup, total_steps))

        return linear
    # slanted triangular (Howard & Ruder 2018, eq. 3)
    cut = max(1, math.floor(total_steps * config.stlr_cut_frac))
    ratio = config.stlr_ratio

    def slanted(step: int) -> float:
        if step < cut:
            p = step / cut
        else:
            p = max(0.0, 1.0 - (step - cut) / (cut * (1.0 / config.stlr_cut_frac - 1.0)))
        return (1.0 + p * (ratio - 1.0)) / ratio

    return slanted


def _step_progress(step: int, warmup: int, total_steps: int) -> float:
    """The fraction of the planned steps after warmup done after ``step`` steps."""
    return (step - warmup) / max(1, total_steps - warmup)


def _time_factor(
    config: TrainConfig,
    warm: Callable[[int], float],
    time_fraction: Callable[[], float],
    total_steps: int | None = None,
) -> Callable[[int], float]:
    """The schedule over the time budget: ``p`` in [0, 1] is the fraction of it spent, or of
    the planned steps (``total_steps``, after warmup) where that is larger: a machine fast
    enough to run them all before the deadline ends the schedule with its last step."""
    cut, ratio = config.stlr_cut_frac, config.stlr_ratio
    warmup = config.warmup_steps

    def factor(step: int) -> float:
        if step < warmup:
            return warm(step)
        p = time_fraction()
        if total_steps is not None:
            p = max(p, _step_progress(step, warmup, total_steps))
        p = min(1.0, max(0.0, p))
        if config.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * p))
        if config.schedule == "linear":
            return 1.0 - p
        rise = p / cut if p < cut else 1.0 - (p - cut) / (1.0 - cut)  # slanted triangular
        return (1.0 + rise * (ratio - 1.0)) / ratio

    return factor


def build_schedulers(
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    total_steps: int | None,
    time_fraction: Callable[[], float] | None = None,
) -> dict[str, object]:
    """``step``: a LambdaLR stepped after every optimizer step; ``plateau``: a
    ReduceLROnPlateau stepped on the monitored metric after each epoch (or ``None``)."""
    if config.schedule != "plateau":
        factor = lr_factor(config, total_steps, time_fraction)
        step = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"step": step, "plateau": None}
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=config.mode, factor=config.plateau_factor, patience=config.plateau_patience
    )
    return {"step": None, "plateau": plateau}
