"""A one-minute demo: an LSTM learns the 1997 adding problem (a long-time-lag task).

The model reads each variable-length sequence with :class:`lstmkit.nn.LSTM` (``lengths``
given, so padding never enters the state) and regresses the target from its final hidden
state. Training stops when a held-out batch is solved or the time budget is spent; the
result is the solved fraction on fresh test sequences drawn with a different seed.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor, nn
from tqdm import tqdm

from lstmkit.nn import LSTM
from lstmkit.tasks.lab.adding import SOLVED_ERROR, adding_batch


class AddingRegressor(nn.Module):
    """``LSTM(2, H)`` -> last hidden state -> ``Linear(H, 1)``."""

    def __init__(self, hidden_size: int = 32, **lstm_kwargs) -> None:
        super().__init__()
        self.lstm = LSTM(2, hidden_size, **lstm_kwargs)
        self.head = nn.Linear(self.lstm.output_size, 1)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        _, (h_n, _) = self.lstm(x, lengths=lengths)  # h_n: (layers, N, H)
        return self.head(h_n[-1]).squeeze(-1)  # (N,)


@torch.no_grad()
def solved_fraction(model: nn.Module, T: int, n: int, generator: torch.Generator) -> float:
    """Fraction of ``n`` fresh sequences whose prediction is within 0.04 of the target."""
    model.eval()
    solved = 0
    for start in range(0, n, 500):
        batch = adding_batch(T, min(500, n - start), generator)
        error = (model(batch.x, batch.lengths) - batch.target).abs()
        solved += int((error < SOLVED_ERROR).sum())
    model.train()
    return solved / n


def run_demo(
    T: int = 30,
    hidden_size: int = 32,
    batch_size: int = 32,
    lr: float = 1e-2,
    max_seconds: float = 60.0,
    max_steps: int | None = None,
    seed: int = 0,
    test_size: int = 2000,
    progress: bool = True,
) -> dict:
    """Train on the adding problem; returns solved_fraction, train_sequences, steps, seconds."""
    torch.manual_seed(seed)
    train_gen = torch.Generator().manual_seed(seed)
    check_gen = torch.Generator().manual_seed(seed + 1)
    model = AddingRegressor(hidden_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    start = time.perf_counter()
    step = 0
    bar = tqdm(desc=f"adding T={T}", unit="step", disable=not progress)
    while time.perf_counter() - start < max_seconds and (max_steps is None or step < max_steps):
        batch = adding_batch(T, batch_size, train_gen)
        loss = nn.functional.mse_loss(model(batch.x, batch.lengths), batch.target)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        bar.update()
        if step % 100 == 0:
            check = solved_fraction(model, T, 500, check_gen)
            bar.set_postfix(loss=f"{loss.item():.4f}", solved=f"{check:.3f}")
            if check >= 0.995:
                break
    bar.close()
    seconds = time.perf_counter() - start
    test_gen = torch.Generator().manual_seed(seed + 10_000)  # fresh sequences, unseen seed
    return {
        "T": T,
        "solved_fraction": solved_fraction(model, T, test_size, test_gen),
        "test_sequences": test_size,
        "train_sequences": step * batch_size,
        "steps": step,
        "seconds": round(seconds, 1),
    }
