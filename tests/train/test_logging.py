"""Loggers: TensorBoard event files and Weights & Biases in offline mode."""

import pytest
import torch

from lstmkit.train import TrainConfig, Trainer
from lstmkit.train.distributed import loader
from tests.train.tiny import TinyModel, tiny_step


def test_tensorboard_scalars(tmp_path, tiny_data):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    )
    config = TrainConfig(epochs=2, progress=False, tensorboard=True)
    Trainer(config, tiny_step, out_dir=tmp_path).fit(TinyModel(), loader(tiny_data, 16, True))
    events = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == list(range(1, 9))
    assert "train/grad_norm" in events.Tags()["scalars"]
    assert [e.step for e in events.Scalars("epoch/clip_rate")] == [1, 2]


def test_wandb_offline(tmp_path, tiny_data, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = TrainConfig(epochs=1, progress=False, tensorboard=False, wandb=True)
    torch.manual_seed(0)
    Trainer(config, tiny_step, out_dir=tmp_path).fit(TinyModel(), loader(tiny_data, 16, True))
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
