"""The lab task: a tiny adding problem is solved by an LSTM within a small step budget."""

import pytest

from lstmkit.tasks.lab import task


def test_lstm_solves_a_tiny_adding_problem(tmp_path):
    config = task.load_config(
        {
            "data": {"T": 20, "steps_per_epoch": 100, "test_size": 1000},
            "train": {"epochs": 15, "progress": False, "tensorboard": False},
        }
    )
    results = task.train(config, tmp_path)
    assert results["solved_fraction"] >= 0.95
    assert results["steps"] <= 1500
    assert results["train_sequences"] == 32 * results["steps"]


def test_config_errors():
    with pytest.raises(ValueError, match="data.T must be >= 11"):
        task.load_config({"data": {"T": 5}})
    with pytest.raises(ValueError, match=r"unknown key\(s\) model.hidden for ModelConfig"):
        task.load_config({"model": {"hidden": 5}})
    with pytest.raises(ValueError, match="model.cell must be one of lstm, gru, rnn"):
        task.load_config({"model": {"cell": "transformer"}})
