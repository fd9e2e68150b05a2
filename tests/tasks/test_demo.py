import torch

from lstmkit.tasks.demo import AddingRegressor, run_demo, solved_fraction


def test_lstm_solves_a_tiny_adding_problem():
    result = run_demo(T=20, max_steps=1500, max_seconds=300, progress=False, test_size=1000)
    assert result["solved_fraction"] >= 0.95
    assert result["train_sequences"] == 32 * result["steps"]


def test_untrained_model_solves_few():
    torch.manual_seed(0)
    assert solved_fraction(AddingRegressor(), 20, 1000, torch.Generator().manual_seed(0)) < 0.3
