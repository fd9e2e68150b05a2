"""Schedules that follow the time budget (``schedule_by: time``) under a fake clock: the
closed forms, zero at the deadline, and exact resume that counts the time already spent."""

import math

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from lstmkit.train import StepOutput, TrainConfig, Trainer
from lstmkit.train.checkpoint import MODEL_FILE


class FakeClock:
    """Seconds that pass only when a training step runs (one second a step)."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def batches(n: int = 10) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(x, x.sum(1, keepdim=True)) for x in torch.randn(n, 4, 3, generator=g)]


def fit(tmp_path, clock, resume=False, **train):
    config = TrainConfig(**{"lr": 0.1, "epochs": 10, "max_minutes": 1.0, "schedule": "cosine",
                            "schedule_by": "time", "progress": False, "tensorboard": False,
                            **train})  # fmt: skip

    def step(model, batch, state=None):
        clock.now += 1.0
        x, y = batch
        return StepOutput(nn.functional.mse_loss(model(x), y), len(x))

    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    trainer = Trainer(config, step, out_dir=tmp_path, clock=clock)
    history = trainer.fit(model, batches(), resume=resume)
    return trainer, history


@pytest.mark.parametrize(
    "schedule,closed_form",
    [
        ("cosine", lambda p: 0.5 * (1 + math.cos(math.pi * p))),
        ("linear", lambda p: 1 - p),
        ("slanted_triangular", lambda p: (1 + (p / 0.1 if p < 0.1 else 1 - (p - 0.1) / 0.9) * 31)
         / 32),
    ],
)  # fmt: skip
def test_time_schedules_follow_the_budget_and_end_at_the_deadline(tmp_path, schedule, closed_form):
    trainer, history = fit(tmp_path, FakeClock(), schedule=schedule)
    lrs = [row["lr"] for row in history.steps]
    # the budget is 60 s of one-second steps: the run stops after the 61st step, although
    # 100 steps were planned; step n runs at the rate set after n - 1 seconds
    assert trainer.global_step == 61
    for n, lr in enumerate(lrs):
        assert lr == pytest.approx(0.1 * closed_form(n / 60), abs=1e-12), n
    assert lrs[-1] == pytest.approx(0.1 * closed_form(1.0), abs=1e-12)
    if schedule != "slanted_triangular":
        assert lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_warmup_counts_steps_then_the_budget(tmp_path):
    _, history = fit(tmp_path, FakeClock(), warmup_steps=4)
    lrs = [row["lr"] for row in history.steps]
    assert lrs[:4] == pytest.approx([0.1 * k / 5 for k in range(1, 5)])
    assert lrs[10] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 10 / 60)))


def test_resume_counts_the_time_already_spent(tmp_path):
    _, straight = fit(tmp_path / "a", FakeClock())
    fit(tmp_path / "b", FakeClock(), max_steps=25)
    # the resumed process's clock starts elsewhere: only the elapsed time is carried
    _, resumed = fit(tmp_path / "b", FakeClock(start=5000.0), resume=True)
    assert [r["lr"] for r in resumed.steps] == [r["lr"] for r in straight.steps[25:]]
    a, b = (load_file(str(tmp_path / d / MODEL_FILE)) for d in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_time_schedule_needs_a_budget():
    with pytest.raises(ValueError, match="schedule_by time needs max_minutes"):
        TrainConfig(schedule="cosine", schedule_by="time")
    with pytest.raises(ValueError, match="schedule_by must be one of steps, time"):
        TrainConfig(schedule_by="wall")
