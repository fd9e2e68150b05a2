"""The lab's task pipeline: a recurrent model trained on a generated long-time-lag problem.

``train`` builds the model and the data from an :class:`AddingConfig`, fits it with the
:class:`lstmkit.train.Trainer` (progress bar, CSV log, checkpoints, exact resume, DDP), and
writes a model directory plus ``results.json`` with the solved fraction on 2,000 fresh test
sequences drawn from a seed the training never used. ``evaluate`` reloads a model directory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lstmkit.nn import GRU, LSTM, RNN
from lstmkit.tasks.lab.adding import SOLVED_ERROR, AddingBatch, AddingStream, fixed_set
from lstmkit.train import (
    Callback,
    History,
    LambdaCallback,
    StepOutput,
    TrainConfig,
    Trainer,
    distributed,
    from_dict,
    to_dict,
)
from lstmkit.train.checkpoint import CONFIG_FILE, MODEL_FILE, load_weights, read_json, write_json

CELLS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
VAL_SEED_OFFSET, TEST_SEED_OFFSET = 1, 10_000


@dataclass
class ModelConfig:
    """The recurrent reader: ``cell`` (lstm, gru, rnn), sizes, and the LSTM's variants."""

    cell: str = "lstm"
    hidden_size: int = 32
    num_layers: int = 1
    layer_norm: bool = False
    peephole: bool = False
    coupled: bool = False
    zoneout: float = 0.0
    recurrent_dropout: float = 0.0
    weight_drop: float = 0.0
    forget_bias: float | None = 1.0
    spectral_radius: float | None = None

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"model.cell must be one of {', '.join(CELLS)}; got {self.cell!r}")
        if self.spectral_radius is not None and (self.cell != "rnn" or self.spectral_radius <= 0):
            raise ValueError("model.spectral_radius must be positive and needs model.cell: rnn")
        variants = {k: v for k, v in self.variant_kwargs().items() if v and k != "forget_bias"}
        if self.cell != "lstm" and variants:
            raise ValueError(f"{', '.join(variants)} apply to the lstm cell only, not {self.cell}")

    def variant_kwargs(self) -> dict[str, Any]:
        names = ("layer_norm", "peephole", "coupled", "zoneout", "recurrent_dropout",
                 "weight_drop", "forget_bias")  # fmt: skip
        return {k: getattr(self, k) for k in names}


@dataclass
class DataConfig:
    """The adding problem: minimal length ``T``, batches per epoch, evaluation set sizes."""

    T: int = 30
    batch_size: int = 32
    steps_per_epoch: int = 100
    val_size: int = 500
    test_size: int = 2000

    def __post_init__(self) -> None:
        if self.T < 11:
            raise ValueError(f"data.T must be >= 11 for the adding problem, got {self.T}")
        for name in ("batch_size", "steps_per_epoch", "val_size", "test_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"data.{name} must be positive, got {getattr(self, name)}")


@dataclass
class AddingConfig:
    """The whole run: ``model``, ``data`` and ``train`` sections, and the stopping target."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-2, epochs=50))
    target_solved: float = 0.99

    def __post_init__(self) -> None:
        if not 0 < self.target_solved <= 1:
            raise ValueError(f"target_solved must be in (0, 1], got {self.target_solved}")


class SequenceRegressor(nn.Module):
    """A recurrent layer reads the variable-length sequence; a linear head reads its final
    hidden state (the last layer's, at each sequence's own last step)."""

    def __init__(self, config: ModelConfig, input_size: int = 2, out_features: int = 1) -> None:
        super().__init__()
        kwargs = config.variant_kwargs() if config.cell == "lstm" else {}
        self.rnn = CELLS[config.cell](input_size, config.hidden_size, config.num_layers, **kwargs)
        self.head = nn.Linear(config.hidden_size, out_features)
        if config.spectral_radius is not None:
            self._set_spectral_radius(config.spectral_radius)

    @torch.no_grad()
    def _set_spectral_radius(self, radius: float) -> None:
        """Scale each Elman W_hh so its largest |eigenvalue| is ``radius`` (> 1: gradients
        can explode, Pascanu et al. 2013)."""
        for layer in range(self.rnn.num_layers):
            w = self.rnn.param("weight_hh", layer)
            w.mul_(radius / torch.linalg.eigvals(w).abs().max())

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        _, state = self.rnn(x, lengths=lengths)
        h_n = state[0] if isinstance(state, tuple) else state  # (layers, N, H)
        return self.head(h_n[-1]).squeeze(-1)  # (N,)


def adding_step(model: nn.Module, batch: AddingBatch, state: Any = None) -> StepOutput:
    """MSE on the final prediction; ``solved`` is the fraction within 0.04 of the target."""
    prediction = model(batch.x, batch.lengths)
    loss = nn.functional.mse_loss(prediction.float(), batch.target)
    solved = ((prediction.detach().float() - batch.target).abs() < SOLVED_ERROR).float().mean()
    return StepOutput(loss, len(batch.target), {"solved": float(solved)})


def load_config(data: dict[str, Any] | None = None) -> AddingConfig:
    data = dict(data or {})
    train = data.pop("train", {})
    config = from_dict(AddingConfig, data)
    config.train = from_dict(TrainConfig, {**to_dict(AddingConfig().train), **train}, "train")
    return config


def train_model(
    config: AddingConfig,
    out_dir: str | Path,
    resume: bool = False,
    callbacks: list[Callback] | None = None,
) -> tuple[SequenceRegressor, Trainer, History]:
    """Fit a model on the adding problem (writing its model directory); return the model,
    the trainer (its step count, its ``evaluate``) and the history."""
    d = distributed.setup()
    seed = config.train.seed
    torch.manual_seed(seed)  # the same initial weights in every process
    model = SequenceRegressor(config.model)
    data = config.data
    stream = AddingStream(data.T, data.batch_size, data.steps_per_epoch, seed, d.rank, d.world_size)
    val = fixed_set(data.T, data.val_size, seed + VAL_SEED_OFFSET)

    def stop_at_target(trainer: Trainer, logs: dict[str, Any]) -> None:
        if logs["val_solved"] >= config.target_solved:
            trainer.stop_training = True

    trainer = Trainer(
        config.train, adding_step, out_dir=out_dir,
        callbacks=[LambdaCallback(on_epoch_end=stop_at_target), *(callbacks or [])],
        run_config={"task": "lab-adding", **to_dict(config)},
    )  # fmt: skip
    history = trainer.fit(model, stream, val, resume=resume)
    return model, trainer, history


def train(
    config: AddingConfig,
    out_dir: str | Path,
    resume: bool = False,
    callbacks: list[Callback] | None = None,
) -> dict[str, Any]:
    """Train on the adding problem; write the model directory and ``results.json`` with the
    solved fraction of fresh test sequences. ``callbacks`` are added to the trainer's (e.g.
    a pruning callback during tuning)."""
    start = time.monotonic()
    model, trainer, _ = train_model(config, out_dir, resume, callbacks)
    seconds = time.monotonic() - start
    data, seed = config.data, config.train.seed
    test = trainer.evaluate(model, fixed_set(data.T, data.test_size, seed + TEST_SEED_OFFSET))
    results = {
        "task": "adding",
        "T": data.T,
        "cell": config.model.cell,
        "solved_fraction": test["solved"],
        "test_sequences": data.test_size,
        "test_mse": test["loss"],
        "train_sequences": trainer.global_step * data.batch_size,
        "steps": trainer.global_step,
        "seconds": round(seconds, 1),
    }
    if trainer.is_main:
        write_json(Path(out_dir) / "results.json", results)
    return results


def load_model(model_dir: str | Path) -> tuple[SequenceRegressor, AddingConfig]:
    """Rebuild a trained model from its directory (config.json + model.safetensors)."""
    model_dir = Path(model_dir)
    raw = read_json(model_dir / CONFIG_FILE)
    if raw.get("task") != "lab-adding":
        raise ValueError(f"{model_dir} holds a {raw.get('task')!r} model, not lab-adding")
    config = load_config({k: v for k, v in raw.items() if k != "task"})
    model = SequenceRegressor(config.model)
    load_weights(model, model_dir / MODEL_FILE)
    return model.eval(), config


def evaluate(model_dir: str | Path, split: str = "test") -> dict[str, Any]:
    """Solved fraction and MSE on the validation or test sequences of the saved run."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    model, config = load_model(model_dir)
    seed = config.train.seed + (VAL_SEED_OFFSET if split == "val" else TEST_SEED_OFFSET)
    size = config.data.val_size if split == "val" else config.data.test_size
    metrics = Trainer(config.train, adding_step).evaluate(
        model, fixed_set(config.data.T, size, seed)
    )
    return {"split": split, "n": size, "solved_fraction": metrics["solved"], "mse": metrics["loss"]}
