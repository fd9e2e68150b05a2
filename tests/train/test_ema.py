"""train.ema: the moving average against its closed form, the swap in and out, the trainer's
use of it (validation, checkpoint, final weights), exact resume and its errors."""

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from lstmkit.train import LambdaCallback, TrainConfig, Trainer
from lstmkit.train.distributed import loader
from lstmkit.train.ema import WeightAverage, ema_decay
from tests.train.test_resume import _losses, _run
from tests.train.tiny import TinyModel, tiny_step


def _closed_form(weights: list[torch.Tensor], decay: float) -> torch.Tensor:
    avg = weights[0].double()
    for n, w in enumerate(weights[1:], start=1):
        d = min(decay, (1 + n) / (10 + n))
        avg = d * avg + (1 - d) * w.double()
    return avg


def test_decay_ramps_up_to_its_value():
    assert ema_decay(0.999, 1) == pytest.approx(2 / 11)
    assert ema_decay(0.999, 90) == pytest.approx(91 / 100)
    assert ema_decay(0.9, 1000) == 0.9


def test_average_matches_the_closed_form_by_hand():
    layer = nn.Linear(1, 1, bias=False).double()
    average = WeightAverage(layer, 0.5)
    values = [1.0, 3.0, 5.0, -2.0]
    for v in values:
        with torch.no_grad():
            layer.weight.fill_(v)
        average.update(layer)
    # the first update copies; then d = min(0.5, (1 + n) / (10 + n)) = 2/11, 3/12, 4/13
    expected = 1.0
    expected = 2 / 11 * expected + 9 / 11 * 3.0
    expected = 1 / 4 * expected + 3 / 4 * 5.0
    expected = 4 / 13 * expected + 9 / 13 * -2.0
    assert average.updates == 4
    assert float(average.averaged.module.weight) == pytest.approx(expected, abs=1e-12)


def test_applied_swaps_the_average_in_and_the_raw_weights_back():
    layer = nn.Linear(3, 2)
    average = WeightAverage(layer, 0.9)
    average.update(layer)
    with torch.no_grad():
        layer.weight.add_(1.0)
    average.update(layer)
    raw = {k: v.clone() for k, v in layer.state_dict().items()}
    with average.applied(layer):
        for p, avg in zip(layer.parameters(), average.averaged.module.parameters()):
            assert torch.equal(p, avg)
        assert not torch.equal(layer.weight, raw["weight"])
    for k, v in layer.state_dict().items():
        assert torch.equal(v, raw[k]), k


def test_apply_before_any_update_leaves_the_model():
    layer = nn.Linear(2, 2)
    before = layer.weight.clone()
    average = WeightAverage(layer, 0.9)
    with torch.no_grad():
        layer.weight.mul_(2)
    average.apply(layer)
    assert torch.equal(layer.weight, 2 * before)


def test_tied_weights_save_and_load(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(5, 4)
            self.out = nn.Linear(4, 5, bias=False)
            self.out.weight = self.embed.weight

    model = Tied()
    average = WeightAverage(model, 0.9)
    average.update(model)
    average.save(tmp_path / "ema.safetensors")
    other = WeightAverage(Tied(), 0.9)
    other.load(tmp_path / "ema.safetensors")
    assert other.updates == 1
    assert torch.equal(other.averaged.module.embed.weight, model.embed.weight)
    assert other.averaged.module.out.weight is other.averaged.module.embed.weight


@pytest.mark.parametrize("decay", [0, 1, -0.5])
def test_decay_out_of_range_is_an_error(decay):
    with pytest.raises(ValueError, match=r"ema must be in \(0, 1\)"):
        TrainConfig(ema=decay)
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\)"):
        WeightAverage(nn.Linear(1, 1), decay)


def _fit(tiny_data, out_dir=None, **cfg):
    torch.manual_seed(123)
    model = TinyModel()
    config = TrainConfig(epochs=2, lr=1e-2, progress=False, tensorboard=False, seed=7, **cfg)
    seen = []
    keep = LambdaCallback(
        on_step_end=lambda t, logs: seen.append(t.model.head.weight.detach().clone())
    )
    trainer = Trainer(config, tiny_step, callbacks=[keep], out_dir=out_dir)
    train = loader(tiny_data, batch_size=8, shuffle=True, seed=3)
    val = loader(tiny_data, batch_size=32, shuffle=False)
    history = trainer.fit(model, train, val)
    return model, trainer, history, seen, val


def test_trainer_trains_the_raw_weights_and_ends_with_their_average(tiny_data, tmp_path):
    _, _, plain_history, plain_seen, _ = _fit(tiny_data)
    model, trainer, history, seen, val = _fit(tiny_data, tmp_path, ema=0.8)
    # the average does not change training: the same raw weights after every step
    assert history["loss"] == plain_history["loss"]
    assert all(torch.equal(a, b) for a, b in zip(seen, plain_seen))
    assert len(seen) == 16
    # the model ends with the average of the raw weights, as the closed form has it
    torch.testing.assert_close(
        model.head.weight.double(), _closed_form(seen, 0.8), rtol=0, atol=1e-6
    )
    assert not torch.allclose(model.head.weight, seen[-1])
    # validation scored the average, and the saved weights are the average
    assert history["val_loss"][-1] == pytest.approx(trainer.evaluate(model, val)["loss"])
    assert history["val_loss"][-1] != pytest.approx(plain_history["val_loss"][-1])
    saved = load_file(str(tmp_path / "model.safetensors"))
    assert torch.equal(saved["head.weight"], model.head.weight)


@pytest.mark.parametrize("split", [10, 8], ids=["mid-epoch", "epoch-boundary"])
def test_resume_with_ema_is_exact(tmp_path, tiny_data, split):
    straight = _run(tmp_path / "a", tiny_data, 20, ema=0.9)
    _run(tmp_path / "b", tiny_data, split, ema=0.9)
    resumed = _run(tmp_path / "b", tiny_data, 20, resume=True, ema=0.9)
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_resume_with_ema_needs_a_saved_average(tmp_path, tiny_data):
    _run(tmp_path, tiny_data, 4)
    with pytest.raises(ValueError, match="has no weight average"):
        _run(tmp_path, tiny_data, 8, resume=True, ema=0.9)
