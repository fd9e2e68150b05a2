"""bf16 on a machine without a bf16 LSTM: a clear error before any data is read."""

import pytest
import torch

from lstmkit.tasks import get_task, run
from lstmkit.train import StepOutput, TrainConfig, Trainer, from_dict
from lstmkit.train import precision as precision_module
from lstmkit.train.precision import bf16_supported, check_precision


@pytest.fixture
def no_bf16(monkeypatch):
    monkeypatch.setattr(precision_module, "bf16_supported", lambda device_type="cpu": False)


def test_check_precision_names_the_setting(no_bf16):
    with pytest.raises(ValueError, match="train.precision bf16: this CPU cannot run an LSTM"):
        check_precision("bf16", torch.device("cpu"))
    check_precision("fp32", torch.device("cpu"))


def test_trainer_refuses_bf16_before_the_first_step(no_bf16):
    model = torch.nn.Linear(2, 1)
    steps = []
    trainer = Trainer(TrainConfig(precision="bf16", progress=False), lambda *a: steps.append(1))
    with pytest.raises(ValueError, match="use train.precision fp32"):
        trainer.fit(model, [None])
    assert steps == []


def test_run_refuses_bf16_before_reading_data(no_bf16, tmp_path, monkeypatch):
    lab = get_task("lab")
    monkeypatch.setattr(lab, "build", lambda *a: pytest.fail("data was prepared"))
    config = from_dict(lab.config_class, {"train": {"precision": "bf16"}})
    with pytest.raises(ValueError, match="train.precision bf16"):
        run.train(lab, config, tmp_path)


def test_probe_agrees_with_an_actual_bf16_step():
    lstm = torch.nn.LSTM(4, 4)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = lstm(torch.randn(3, 2, 4))
        out.float().sum().backward()
        works = True
    except RuntimeError:
        works = False
    assert bf16_supported("cpu") == works


@pytest.mark.parametrize(
    "native, runs, expected", [(True, True, "bf16"), (True, False, "fp32"), (False, True, "fp32")]
)
def test_auto_takes_bf16_only_where_it_is_native_and_runs(monkeypatch, native, runs, expected):
    monkeypatch.setattr(precision_module, "native_bf16", lambda device_type="cpu": native)
    monkeypatch.setattr(precision_module, "bf16_supported", lambda device_type="cpu": runs)
    cpu = torch.device("cpu")
    assert precision_module.resolve_precision("auto", cpu) == expected
    assert precision_module.resolve_precision("fp32", cpu) == "fp32"
    check_precision("auto", cpu)  # auto never refuses: it falls back
    seen = []

    def step(model, batch, state=None):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return StepOutput(model(torch.ones(1, 2)).sum())

    trainer = Trainer(TrainConfig(precision="auto", progress=False, max_steps=1), step)
    trainer.fit(torch.nn.Linear(2, 1), [None])
    assert trainer.precision == expected
    assert seen == [torch.bfloat16 if expected == "bf16" else None]
