"""Schedules that follow the time budget (``schedule_by: time``) under a fake clock: the
closed forms, zero at the deadline, and exact resume that counts the time already spent."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from lstmkit.train import ModelCheckpoint, StepOutput, TrainConfig, Trainer
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
    config = TrainConfig(
        **{
            "lr": 0.1,
            "epochs": 10,
            "max_minutes": 1.0,
            "schedule": "cosine",
            "schedule_by": "time",
            "progress": False,
            "tensorboard": False,
            **train,
        }
    )

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
        (
            "slanted_triangular",
            lambda p: (1 + (p / 0.1 if p < 0.1 else 1 - (p - 0.1) / 0.9) * 31) / 32,
        ),
    ],
)
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


def test_planned_steps_end_the_time_schedule_on_a_fast_machine(tmp_path):
    # 3 epochs of 10 one-second steps fit in the 60-second budget: the schedule follows the
    # planned steps, the larger fraction, and ends with them as a step-based schedule would
    trainer, history = fit(tmp_path / "time", FakeClock(), epochs=3, warmup_steps=2)
    _, by_steps = fit(
        tmp_path / "steps", FakeClock(), epochs=3, warmup_steps=2, schedule_by="steps"
    )
    lrs = [row["lr"] for row in history.steps]
    assert trainer.global_step == 30
    # the warmup's seconds count in the time fraction only: it leads for two steps after it
    for n, lr in enumerate(lrs[2:], start=2):
        p = max(n / 60, (n - 2) / 28)
        assert lr == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * p)), abs=1e-12), n
    assert lrs[4:] == pytest.approx([row["lr"] for row in by_steps.steps][4:], abs=1e-12)
    # with 40 epochs planned the budget is the smaller horizon and the time fraction leads
    _, long = fit(tmp_path / "long", FakeClock(), epochs=40)
    assert [r["lr"] for r in long.steps][30] == pytest.approx(
        0.1 * 0.5 * (1 + math.cos(math.pi / 2))
    )


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


def fit_validated(tmp_path, clock, **train):
    """``fit`` with validation data and a best-val_loss checkpoint."""
    config = TrainConfig(
        **{
            "lr": 0.1,
            "epochs": 10,
            "max_minutes": 1.0,
            "schedule": "cosine",
            "schedule_by": "time",
            "progress": False,
            "tensorboard": False,
            **train,
        }
    )

    def step(model, batch, state=None):
        if model.training:
            clock.now += 1.0
        x, y = batch
        return StepOutput(nn.functional.mse_loss(model(x), y), len(x))

    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    checkpoint = ModelCheckpoint("val_loss", "min", save_best_only=True)
    trainer = Trainer(config, step, out_dir=tmp_path, clock=clock, callbacks=[checkpoint])
    history = trainer.fit(model, batches(), batches(3))
    return trainer, history, model


def test_the_deadline_inside_an_epoch_validates_the_final_weights(tmp_path):
    trainer, history, model = fit_validated(tmp_path, FakeClock(), max_minutes=0.925)
    # one-second steps, 10 a epoch, a 55.5-second budget: the deadline falls six steps into
    # epoch 6
    assert trainer.global_step == 56 and trainer.epoch == 5
    assert history["epoch"] == [1, 2, 3, 4, 5, 6]
    assert history["val_loss"][-1] == pytest.approx(trainer.evaluate(model, batches(3))["loss"])
    assert history["val_loss"][-1] < min(history["val_loss"][:-1])
    # so the checkpoint kept the final weights, and the summary says which epoch that was
    saved = load_file(str(tmp_path / MODEL_FILE))
    assert torch.equal(saved["weight"], model.weight)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["best_epoch"] == 6 and metrics["stopped_by"] == "max_minutes=0.925"
    # the trainer state (for resume) was saved before: it has the 5 whole epochs only
    state = json.loads((tmp_path / "trainer_state" / "trainer.json").read_text())
    assert len(state["progress"]["history"]) == 5


def test_other_stops_inside_an_epoch_validate_nothing_more(tmp_path):
    # a step cap, and a time cap over a schedule planned in steps: the run may go on (resume)
    trainer, history, _ = fit_validated(tmp_path / "a", FakeClock(), max_steps=25)
    assert trainer.global_step == 25 and history["epoch"] == [1, 2]
    trainer, history, _ = fit_validated(tmp_path / "b", FakeClock(), schedule_by="steps")
    assert trainer.global_step == 61 and history["epoch"] == [1, 2, 3, 4, 5, 6]
