"""Truncated-BPTT batches cover the stream exactly once; carried state equals one long pass."""

import pytest
import torch

from lstmkit.data.bptt import BPTTBatches
from lstmkit.nn import LSTM
from lstmkit.train import StepOutput, TrainConfig, Trainer


@pytest.mark.parametrize("variable", [False, True])
def test_windows_cover_each_column_once(variable):
    tokens = torch.arange(1003)
    batches = BPTTBatches(tokens, batch_size=4, bptt=20, variable=variable, seed=1)
    assert batches.dropped == 3
    xs = torch.cat([b.x for b in batches])
    ys = torch.cat([b.y for b in batches])
    columns = tokens[:1000].view(4, 250).t()
    assert torch.equal(xs, columns[:-1]) and torch.equal(ys, columns[1:])
    lengths = [b.x.size(0) for b in batches]
    assert len(batches) == len(lengths)
    if variable:
        assert len(set(lengths)) > 3 and min(lengths[:-1]) >= 5 and max(lengths) <= 40
        batches.set_epoch(1)
        assert [b.x.size(0) for b in batches] != lengths  # new lengths each epoch
        batches.set_epoch(0)
        assert [b.x.size(0) for b in batches] == lengths  # a function of (seed, epoch)
    else:
        assert lengths[:-1] == [20] * (len(lengths) - 1)


def test_state_carried_by_the_trainer_equals_one_long_forward_pass():
    torch.manual_seed(0)
    embed, lstm = torch.nn.Embedding(50, 6), LSTM(6, 8)
    model = torch.nn.ModuleDict({"embed": embed, "lstm": lstm})
    tokens = torch.randint(0, 50, (401,))
    outputs = []

    def step(model, batch, state):
        out, state = model["lstm"](model["embed"](batch.x), state)
        outputs.append(out.detach())
        return StepOutput(out.pow(2).mean(), batch.x.numel(), {}, state)

    data = BPTTBatches(tokens, batch_size=4, bptt=17, variable=True)
    Trainer(TrainConfig(progress=False, tensorboard=False), step).evaluate(model, data)
    full = lstm(embed(data.columns[:-1]))[0]
    torch.testing.assert_close(torch.cat(outputs), full, rtol=1e-5, atol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="tokens must be 1-D"):
        BPTTBatches(torch.zeros(3, 3, dtype=torch.long), 2, 5)
    with pytest.raises(ValueError, match="10 tokens are too few for 8 columns"):
        BPTTBatches(torch.arange(10), 8, 5)
