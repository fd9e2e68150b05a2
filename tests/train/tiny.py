"""A tiny sequence-regression task shared by the training tests."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

from lstmkit.nn import LSTM
from lstmkit.train import StepOutput


class TinyModel(nn.Module):
    """An LSTM with random variants (so the RNG matters) and a linear head."""

    def __init__(self, **lstm_kwargs):
        super().__init__()
        self.lstm = LSTM(3, 8, zoneout=0.1, recurrent_dropout=0.1, **lstm_kwargs)
        self.head = nn.Linear(8, 1)
        self.drop = nn.Dropout(0.2)

    def forward(self, x, state=None):
        out, state = self.lstm(x, state)
        return self.head(self.drop(out[-1])).squeeze(-1), state


def tiny_step(model, batch, state=None):
    x, y = batch
    prediction, _ = model(x.transpose(0, 1))  # (L, N, 3)
    loss = nn.functional.mse_loss(prediction, y)
    accuracy = ((prediction > 0) == (y > 0)).float().mean()
    return StepOutput(loss, len(y), {"sign_acc": float(accuracy)})


def tiny_dataset(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, 3, generator=g)
    y = x[:, 0, 0] + 0.5 * x[:, -1, 1]  # a lag of 4 steps
    return TensorDataset(x, y)
