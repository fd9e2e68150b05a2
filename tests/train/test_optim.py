"""Learning rates at given steps against the closed forms; optimizers and param groups."""

import math

import pytest
import torch
from torch import nn

from lstmkit.train import TrainConfig
from lstmkit.train.optim import build_optimizer, build_schedulers, discriminative_groups


def _lrs(steps, total=100, **kw):
    model = nn.Linear(2, 2)
    config = TrainConfig(lr=0.1, **kw)
    optimizer = build_optimizer(config, model.parameters())
    scheduler = build_schedulers(config, optimizer, total)["step"]
    lrs = []
    for step in range(max(steps) + 1):
        if step in steps:
            lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_constant_with_warmup():
    assert _lrs([0, 1, 4, 5, 50], warmup_steps=5) == pytest.approx(
        [0.1 / 6, 0.2 / 6, 0.5 / 6, 0.1, 0.1]
    )


def test_cosine():
    steps = [0, 10, 55, 100]
    want = [0.1 / 11, 0.1, 0.1 * 0.5 * (1 + math.cos(math.pi * 45 / 90)), 0.0]
    assert _lrs(steps, schedule="cosine", warmup_steps=10) == pytest.approx(want, abs=1e-12)


def test_linear():
    assert _lrs([0, 25, 100], schedule="linear") == pytest.approx([0.1, 0.075, 0.0], abs=1e-12)


def test_slanted_triangular_matches_ulmfit():
    # Howard & Ruder (2018) eq. 3 with T = 100, cut_frac = 0.1, ratio = 32
    def stlr(t, T=100, cut_frac=0.1, ratio=32, lr_max=0.1):
        cut = math.floor(T * cut_frac)
        p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
        return lr_max * (1 + p * (ratio - 1)) / ratio

    steps = [0, 5, 10, 40, 99]
    assert _lrs(steps, schedule="slanted_triangular") == pytest.approx([stlr(t) for t in steps])
    assert _lrs([10])[0] == pytest.approx(0.1)


def test_horizon_needed():
    config = TrainConfig(schedule="cosine")
    optimizer = build_optimizer(config, nn.Linear(1, 1).parameters())
    with pytest.raises(ValueError, match="schedule 'cosine' needs the number of steps"):
        build_schedulers(config, optimizer, None)


def test_plateau_reduces_on_the_monitored_metric():
    config = TrainConfig(lr=0.1, schedule="plateau", plateau_patience=1, plateau_factor=0.5)
    optimizer = build_optimizer(config, nn.Linear(1, 1).parameters())
    plateau = build_schedulers(config, optimizer, None)["plateau"]
    for value in [1.0, 0.9, 0.95, 0.96]:
        plateau.step(value)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def test_optimizers_follow_config():
    params = nn.Linear(1, 1).parameters()
    sgd = build_optimizer(TrainConfig(optimizer="sgd", momentum=0.9, nesterov=True), params)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"]
    adamw = build_optimizer(TrainConfig(betas=(0.8, 0.9)), nn.Linear(1, 1).parameters())
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["betas"] == (0.8, 0.9)


def test_discriminative_groups_keep_their_rates_under_a_schedule():
    layers = [nn.Linear(1, 1) for _ in range(3)]
    groups = discriminative_groups(layers, lr=0.026, decay=2.6)
    assert [g["lr"] for g in groups] == pytest.approx([0.026 / 2.6**2, 0.026 / 2.6, 0.026])
    config = TrainConfig(lr=0.026, schedule="linear")
    optimizer = build_optimizer(config, groups)
    scheduler = build_schedulers(config, optimizer, 10)["step"]
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(
        [0.5 * 0.026 / 2.6**2, 0.5 * 0.026 / 2.6, 0.5 * 0.026]
    )
