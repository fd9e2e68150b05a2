"""The lab task: a tiny adding problem is solved by an LSTM within a small step budget."""

import math

import pytest
import torch

from lstmkit.tasks import run
from lstmkit.tasks.lab import task
from lstmkit.tasks.lab.adding import adding_batch


def test_lstm_solves_a_tiny_adding_problem(tmp_path):
    config = task.load_config(
        {
            "data": {"T": 20, "steps_per_epoch": 100, "test_size": 1000},
            "train": {"epochs": 15, "progress": False, "tensorboard": False},
        }
    )
    results = run.train(task.TASK, config, tmp_path)
    assert results["task"] == "lab" and results["problem"] == "adding"
    assert results["split"] == "test" and results["n"] == 1000
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


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_final_state_read_from_the_padded_run_equals_the_packed_one(cell):
    torch.manual_seed(0)
    config = task.load_config({"model": {"cell": cell, "hidden_size": 5, "num_layers": 2}})
    model = task.build_model(config).double()
    batch = adding_batch(20, 6, torch.Generator().manual_seed(0))
    assert batch.lengths.unique().numel() > 1
    x = batch.x.double()
    _, state = model.rnn(x, lengths=batch.lengths)
    h_n = state[0] if cell == "lstm" else state
    expected = model.head(h_n[-1]).squeeze(-1)
    torch.testing.assert_close(model(x, batch.lengths), expected, rtol=1e-12, atol=1e-12)


def test_chrono_config_initialises_the_lstm():
    torch.manual_seed(0)
    model = task.build_model(task.load_config({"model": {"chrono": 50, "hidden_size": 8}}))
    b_i, b_f = model.rnn.bias_ih_l0[:8], model.rnn.bias_ih_l0[8:16]
    assert torch.equal(b_i, -b_f) and b_f.min() >= 0 and b_f.max() <= math.log(49)
    with pytest.raises(ValueError, match=r"model.chrono \(T_max of chrono init\) must be > 2"):
        task.load_config({"model": {"chrono": 2}})
    with pytest.raises(ValueError, match="needs cell: lstm"):
        task.load_config({"model": {"chrono": 50, "cell": "gru"}})
