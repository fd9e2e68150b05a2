"""An exponential moving average of the weights (Polyak averaging), for ``train.ema``.

After every optimizer step each parameter's average moves toward it:

    avg_t = d_t * avg_{t-1} + (1 - d_t) * w_t,    d_t = min(d, (1 + n) / (10 + n))

where ``n`` is the number of updates before this one and the first update copies the
weights. The ramp of ``d_t`` is TensorFlow's ``ExponentialMovingAverage(num_updates=...)``:
without it the average would remember the initial weights for about ``1 / (1 - d)`` steps.
The averaging itself is torch's :class:`torch.optim.swa_utils.AveragedModel`.

The trainer validates and checkpoints the average (swapped into the model for that, then
swapped out so that training goes on from the raw weights) and leaves it in the model at the
end, as Keras's ``use_ema`` does. Buffers are not averaged: they stay the model's own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from lstmkit.train.checkpoint import unwrap

EMA_FILE = "ema.safetensors"  # in trainer_state/


def ema_decay(decay: float, updates: int) -> float:
    """The decay of the update after ``updates`` earlier ones (``updates`` >= 1)."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


class WeightAverage:
    """The moving average of ``model``'s parameters with decay ``decay`` (in (0, 1)).

    Example::

        >>> model = nn.Linear(3, 1)
        >>> average = WeightAverage(model, 0.999)
        >>> average.update(model)  # after every optimizer step
        >>> with average.applied(model):  # the averaged weights inside, the raw ones after
        ...     outputs = model(torch.zeros(2, 3))
        >>> average.updates
        1
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"the weight average's decay must be in (0, 1), got {decay!r}")
        self.decay = decay

        def lerp(averages: list[Tensor], current: list[Tensor], n: Tensor) -> None:
            d = ema_decay(decay, int(n))
            for avg, w in zip(averages, current):
                avg.lerp_(w, 1.0 - d)

        self.averaged = AveragedModel(unwrap(model), multi_avg_fn=lerp, use_buffers=False)
        self.averaged.requires_grad_(False)

    @property
    def updates(self) -> int:
        return int(self.averaged.n_averaged)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average toward ``model``'s current weights (the first call copies them)."""
        self.averaged.update_parameters(unwrap(model))

    def _pairs(self, model: nn.Module) -> list[tuple[Tensor, Tensor]]:
        return list(zip(unwrap(model).parameters(), self.averaged.module.parameters()))

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """Copy the averaged weights into ``model`` (before any update: a no-op)."""
        if self.updates:
            for param, avg in self._pairs(model):
                param.copy_(avg)

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Inside the block ``model`` holds the averaged weights; after it, its own again."""
        raw = [p.detach().clone() for p in unwrap(model).parameters()]
        self.apply(model)
        try:
            yield
        finally:
            with torch.no_grad():
                for param, saved in zip(unwrap(model).parameters(), raw):
                    param.copy_(saved)

    def save(self, path: str | Path) -> None:
        """The average and its update count as safetensors (tied weights stored once)."""
        save_model(self.averaged, str(path))

    def load(self, path: str | Path) -> None:
        load_model(self.averaged, str(path))
