"""Trains the DDP test's model; run alone, or by torchrun with N processes.

usage: python ddp_run.py OUT_DIR GLOBAL_BATCH
"""

import sys

import torch
from torch import nn

from lstmkit.nn import LSTM
from lstmkit.train import StepOutput, TrainConfig, Trainer, distributed
from tests.train.tiny import tiny_dataset


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = LSTM(3, 8)
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        return self.head(self.lstm(x.transpose(0, 1))[0][-1]).squeeze(-1)


def step(model, batch, state):
    x, y = batch
    return StepOutput(nn.functional.mse_loss(model(x), y), len(y))


def main(out_dir: str, global_batch: int) -> None:
    d = distributed.setup()
    torch.manual_seed(0)
    model = Model()
    config = TrainConfig(epochs=2, lr=1e-2, clip_norm=0.5, progress=False, tensorboard=False)
    data = tiny_dataset(64)
    train = distributed.loader(data, global_batch // d.world_size, shuffle=True, seed=5)
    val = distributed.loader(data, 16, shuffle=False)
    Trainer(config, step, out_dir=out_dir).fit(model, train, val)
    distributed.cleanup()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
