"""Exact resume: N steps straight equal N/2 steps, save, resume, N/2 steps — bitwise on CPU."""

import csv

import pytest
import torch

from lstmkit.train import TrainConfig, Trainer
from lstmkit.train.distributed import loader
from tests.train.tiny import TinyModel, tiny_step


def _run(out_dir, data, max_steps, resume=False, **cfg):
    torch.manual_seed(123)
    model = TinyModel()
    config = TrainConfig(
        epochs=3, max_steps=max_steps, lr=1e-2, progress=False, tensorboard=False, seed=7, **cfg
    )
    trainer = Trainer(config, tiny_step, out_dir=out_dir)
    train = loader(data, batch_size=8, shuffle=True, seed=3)  # 8 steps per epoch
    val = loader(data, batch_size=32, shuffle=False)
    trainer.fit(model, train, val, resume=resume)
    return model


def _losses(out_dir):
    with open(out_dir / "train_log.csv", newline="") as f:
        return [(int(r["step"]), r["loss"], r["lr"], r["grad_norm"]) for r in csv.DictReader(f)]


@pytest.mark.parametrize("split", [10, 8], ids=["mid-epoch", "epoch-boundary"])
@pytest.mark.parametrize("schedule", ["cosine", "plateau"])
def test_resume_is_exact(tmp_path, tiny_data, split, schedule):
    n = 20
    straight = _run(tmp_path / "a", tiny_data, n, schedule=schedule)
    _run(tmp_path / "b", tiny_data, split, schedule=schedule)
    resumed = _run(tmp_path / "b", tiny_data, n, resume=True, schedule=schedule)
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")  # same strings: bitwise
    assert len(_losses(tmp_path / "b")) == n
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_resume_without_state_is_a_clear_error(tmp_path, tiny_data):
    with pytest.raises(FileNotFoundError, match="cannot resume: no trainer state in"):
        _run(tmp_path / "none", tiny_data, 4, resume=True)


def test_log_rows_past_the_checkpoint_are_dropped_on_resume(tmp_path, tiny_data):
    _run(tmp_path, tiny_data, 12, checkpoint_every=5)  # state saved at the end, step 12
    with open(tmp_path / "train_log.csv", "a") as f:  # a crashed run's extra row
        f.write("13,2,9.9,0.01,1.0,0,0,0.5\n")
    _run(tmp_path, tiny_data, 14, resume=True)
    steps = [s for s, *_ in _losses(tmp_path)]
    assert steps == list(range(1, 15))
