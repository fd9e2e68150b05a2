"""The training loop: clipping and its diagnostics, non-finite steps, callbacks, TBPTT."""

import json
import math

import pytest
import torch
from torch import nn

from lstmkit.train import (
    EarlyStopping,
    LambdaCallback,
    ModelCheckpoint,
    StepOutput,
    TrainConfig,
    Trainer,
)
from lstmkit.train.checkpoint import load_weights
from lstmkit.train.distributed import loader
from lstmkit.train.precision import bf16_supported
from tests.train.tiny import TinyModel, tiny_dataset, tiny_step


def _config(**kw):
    return TrainConfig(**({"progress": False, "tensorboard": False, "lr": 1e-2} | kw))


def test_logged_norm_equals_clip_grad_norm_and_clipping_scales(tiny_data):
    torch.manual_seed(0)
    model = TinyModel()
    clone = TinyModel()
    clone.load_state_dict(model.state_dict())
    seen = []

    def spy(trainer, logs):
        seen.append(logs)

    trainer = Trainer(
        _config(clip_norm=0.05, max_steps=1, optimizer="sgd", weight_decay=0.0),
        tiny_step,
        callbacks=[LambdaCallback(on_step_end=spy)],
    )
    batch = next(iter(loader(tiny_data, 8, shuffle=False)))
    trainer.fit(model, [batch])
    # the same step by hand with torch's clipping
    torch.manual_seed(0)
    loss = tiny_step(clone, batch).loss
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(clone.parameters(), 0.05)
    assert seen[0]["grad_norm"] == pytest.approx(float(norm), rel=1e-6)
    assert seen[0]["clipped"] == 1 and norm > 0.05
    with torch.no_grad():
        for p in clone.parameters():
            p -= 1e-2 * p.grad
    for a, b in zip(model.parameters(), clone.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_clip_value_clamps_each_element():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    x = torch.tensor([[100.0, 0.001]])

    def step(model, batch, state):
        return StepOutput(model(x).sum() - (model.weight * x).sum() * 2, 1)  # grad = -x

    Trainer(
        _config(
            clip_value=0.5, clip_norm=None, optimizer="sgd", lr=1.0, weight_decay=0, max_steps=1
        ),
        step,
    ).fit(model, [None])
    torch.testing.assert_close(model.weight, torch.tensor([[0.5, 0.001]]))


def test_nonfinite_steps_are_skipped_counted_and_stop_training():
    model = nn.Linear(1, 1)
    losses = iter([1.0, math.nan, math.inf, 1.0, math.nan, math.nan, math.nan])

    def step(model, batch, state):
        return StepOutput(model(torch.ones(1, 1)).sum() * next(losses), 1)

    before = [p.detach().clone() for p in model.parameters()]
    updates = []

    def watch(trainer, logs):
        updates.append([p.detach().clone() for p in model.parameters()])

    trainer = Trainer(
        _config(max_nonfinite_steps=3, weight_decay=0.0),
        step,
        callbacks=[LambdaCallback(on_step_end=watch)],
    )
    with pytest.raises(RuntimeError, match="training stopped at step 7: 3 consecutive steps"):
        trainer.fit(model, [None] * 7)
    assert not torch.equal(updates[0][0], before[0])  # step 1 updated
    assert torch.equal(updates[1][0], updates[0][0]) and torch.equal(updates[2][0], updates[0][0])
    assert not torch.equal(updates[3][0], updates[2][0])  # finite again: updated


def test_nonfinite_steps_in_epoch_summary():
    model = nn.Linear(1, 1)
    values = [1.0, math.nan, 1.0, 1.0]

    def step(model, batch, state):
        return StepOutput(model(torch.ones(1, 1)).sum() * values[batch], 1)

    history = Trainer(_config(), step).fit(model, [0, 1, 2, 3])
    assert history["nonfinite_steps"] == [1]
    assert history.steps[1]["skipped"] == 1 and math.isnan(history.steps[1]["grad_norm"])


def test_early_stopping_restores_best_weights_and_checkpoint_keeps_best(tmp_path, tiny_data):
    torch.manual_seed(0)
    model = TinyModel()
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.9])
    snapshots = {}

    def fake_metric(trainer, logs):  # runs before the callbacks below: sets the monitored value
        logs["val_score"] = next(scores)
        snapshots[logs["epoch"]] = {k: v.clone() for k, v in model.state_dict().items()}

    stopper = EarlyStopping("val_score", patience=1, mode="max", restore_best_weights=True)
    checkpoint = ModelCheckpoint("val_score", mode="max", save_best_only=True)
    trainer = Trainer(
        _config(epochs=5),
        tiny_step,
        out_dir=tmp_path,
        callbacks=[LambdaCallback(on_epoch_end=fake_metric), stopper, checkpoint],
    )
    history = trainer.fit(model, loader(tiny_data, 16, shuffle=True))
    assert len(history.epochs) == 3 and stopper.stopped_epoch == 3 and stopper.best_epoch == 2
    for k, v in model.state_dict().items():  # best epoch's weights restored
        assert torch.equal(v, snapshots[2][k])
    saved = load_weights(TinyModel(), tmp_path / "model.safetensors")
    for k, v in saved.state_dict().items():
        assert torch.equal(v, snapshots[2][k])
    # metrics.json: the trainer's final epoch logs, the checkpoint's best epoch, the history
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epoch"] == 3 and metrics["best_epoch"] == 2
    assert metrics["val_score"] == 0.6 and metrics["stopped_by"] == "callback"
    assert [e["val_score"] for e in metrics["history"]] == [0.5, 0.7, 0.6]


def test_early_stopping_names_a_missing_metric(tiny_data):
    trainer = Trainer(_config(), tiny_step, callbacks=[EarlyStopping("val_acc")])
    with pytest.raises(ValueError, match="monitored metric 'val_acc' is not in the epoch logs"):
        trainer.fit(TinyModel(), loader(tiny_data, 32, shuffle=False))


def test_truncated_bptt_carries_detached_state():
    """Two halves with carried state give the one-long-sequence output; gradients stop."""
    torch.manual_seed(0)
    lstm = nn.LSTM(2, 4)
    x = torch.randn(10, 3, 2)
    seen = []

    def step(model, batch, state):
        out, state = model(batch, state)
        if state is not None:
            seen.append(state[0].requires_grad)
        return StepOutput(out.pow(2).mean(), 1, {}, state)

    trainer = Trainer(_config(lr=1e-9, max_steps=2, clip_norm=None), step)
    outputs = []
    trainer.step_fn = lambda m, b, s: (lambda o: (outputs.append(o), o)[1])(step(m, b, s))
    trainer.fit(lstm, [x[:5], x[5:]])
    assert seen == [True, True]  # model output state has grad; the carried input is detached
    full = lstm(x)[0].pow(2).mean()
    halves = (outputs[0].loss + outputs[1].loss) / 2
    torch.testing.assert_close(halves, full, rtol=1e-4, atol=1e-6)


def test_evaluate_carries_state_and_weights_by_size(tiny_data):
    trainer = Trainer(
        _config(), lambda m, b, s: StepOutput(torch.tensor(float(b)), b, {"double": 2.0 * b})
    )
    metrics = trainer.evaluate(nn.Linear(1, 1), [1, 3])
    assert metrics == {"loss": pytest.approx((1 * 1 + 3 * 3) / 4), "double": pytest.approx(5.0)}


@pytest.mark.skipif(
    not bf16_supported("cpu"),
    reason="this CPU's oneDNN has no bf16 LSTM (e.g. AVX2 only); the trainer refuses bf16 "
    "with a clear error there (tests/tasks/test_precision.py)",
)
def test_bf16_autocast_trains(tiny_data):
    torch.manual_seed(0)
    model = TinyModel()
    history = Trainer(_config(precision="bf16", epochs=2), tiny_step).fit(
        model, loader(tiny_data, 16, shuffle=True), loader(tiny_data, 64, shuffle=False)
    )
    assert all(math.isfinite(v) for v in history["loss"])
    assert model.head.weight.dtype == torch.float32


def test_fit_learns_the_tiny_task():
    """y = x_0[0] + x_4[1]/2 (variance 1.25): a held-out MSE below 0.1 needs the lag learned."""
    torch.manual_seed(0)
    model = TinyModel()
    config = _config(epochs=20, lr=2e-2, schedule="cosine", warmup_steps=5)
    history = Trainer(config, tiny_step).fit(
        model, loader(tiny_dataset(384, seed=0), 32, True), loader(tiny_dataset(128, 1), 128, False)
    )
    assert history["val_loss"][0] > 0.5
    assert history["val_loss"][-1] < 0.1
    assert history["val_sign_acc"][-1] >= 0.85


def test_predict(tiny_data):
    model = TinyModel()
    trainer = Trainer(_config(), tiny_step, predict_fn=lambda m, b: m(b[0].transpose(0, 1))[0])
    out = trainer.predict(model, loader(tiny_data, 32, shuffle=False))
    assert [o.shape for o in out] == [torch.Size([32]), torch.Size([32])]
    with pytest.raises(ValueError, match="predict needs a predict_fn"):
        Trainer(_config(), tiny_step).predict(model, [])


def test_model_directory_contents(tmp_path, tiny_data):
    Trainer(
        _config(epochs=2, tensorboard=True),
        tiny_step,
        out_dir=tmp_path,
        run_config={"model": {"hidden": 8}},
    ).fit(TinyModel(), loader(tiny_data, 16, True))
    names = {p.name for p in tmp_path.iterdir()}
    assert "config.json" not in names  # the model directory's owner writes it, not the Trainer
    assert {
        "model.safetensors",
        "metrics.json",
        "train_log.csv",
        "epoch_log.csv",
        "trainer_state",
        "tensorboard",
    } <= names
    assert any((tmp_path / "tensorboard").iterdir())
    header = (tmp_path / "train_log.csv").read_text().splitlines()[0]
    assert header == "step,epoch,loss,lr,grad_norm,clipped,skipped,sign_acc"
    assert len((tmp_path / "train_log.csv").read_text().splitlines()) == 1 + 8


def test_deterministic_and_seeded_runs_repeat(tiny_data):
    def run():
        torch.manual_seed(0)
        model = TinyModel()
        Trainer(_config(epochs=2, deterministic=True, seed=3), tiny_step).fit(
            model, loader(tiny_data, 16, True)
        )
        return model

    try:
        a, b = run(), run()
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(x, y)


def test_a_second_fit_starts_from_step_zero(tiny_data):
    trainer = Trainer(_config(max_steps=3), tiny_step)
    trainer.fit(TinyModel(), loader(tiny_data, 16, True))
    history = trainer.fit(TinyModel(), loader(tiny_data, 16, True))
    assert [s["step"] for s in history.steps] == [1, 2, 3]


def test_progress_bar_on_a_terminal(tiny_data, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    config = TrainConfig(epochs=1, tensorboard=False, progress=True)
    Trainer(config, tiny_step).fit(TinyModel(), loader(tiny_data, 16, True))
    out = capsys.readouterr().out
    assert "epoch 1/1" in out and "loss=" in out and "lr=" in out and "4/4" in out
    assert "epoch 1/1: loss" in out  # the summary line
