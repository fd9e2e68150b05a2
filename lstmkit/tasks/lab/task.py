"""The lab's task pipeline: a recurrent model trained on a generated long-time-lag problem.

Problems (``data.problem``): ``adding`` (1997, experiment 4; regression, metric ``solved``),
``temporal_order`` (1997, task 6a; 4 classes, metric ``accuracy``) and ``copy`` (copy memory,
Arjovsky et al. 2016; per-step classes, metric ``accuracy`` on the 10 copied symbols).
``train`` builds the model and the data from a :class:`LabConfig`, fits it with the
:class:`lstmkit.train.Trainer` (progress bar, CSV log, checkpoints, exact resume, DDP), and
writes a model directory plus ``results.json`` with the metric on fresh test sequences drawn
from a seed the training never used. ``evaluate`` reloads a model directory.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lstmkit.nn import GRU, LSTM, RNN, chrono_init_
from lstmkit.tasks.lab.adding import SOLVED_ERROR, adding_batch
from lstmkit.tasks.lab.sequences import (
    COPY_ALPHABET,
    COPY_LENGTH,
    TEMPORAL_SYMBOLS,
    copy_baseline_loss,
    copy_batch,
    temporal_order_batch,
)
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
from lstmkit.train.checkpoint import (
    MODEL_FILE,
    load_weights,
    read_run_config,
    write_json,
)

CELLS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
VAL_SEED_OFFSET, TEST_SEED_OFFSET = 1, 10_000


@dataclass
class ModelConfig:
    """The recurrent reader: ``cell`` (lstm, gru, rnn), sizes, and the LSTM's variants.

    ``chrono``: if set, the LSTM's forget and input biases get chrono initialisation with
    this T_max (:func:`lstmkit.nn.chrono_init_`) instead of ``forget_bias``."""

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
    chrono: int | None = None
    spectral_radius: float | None = None

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"model.cell must be one of {', '.join(CELLS)}; got {self.cell!r}")
        if self.spectral_radius is not None and (self.cell != "rnn" or self.spectral_radius <= 0):
            raise ValueError("model.spectral_radius must be positive and needs model.cell: rnn")
        if self.chrono is not None and (self.cell != "lstm" or self.chrono <= 2):
            raise ValueError("model.chrono (T_max of chrono init) must be > 2 and needs cell: lstm")
        variants = {k: v for k, v in self.variant_kwargs().items() if v and k != "forget_bias"}
        if self.cell != "lstm" and variants:
            raise ValueError(f"{', '.join(variants)} apply to the lstm cell only, not {self.cell}")

    def variant_kwargs(self) -> dict[str, Any]:
        names = ("layer_norm", "peephole", "coupled", "zoneout", "recurrent_dropout",
                 "weight_drop", "forget_bias")  # fmt: skip
        return {k: getattr(self, k) for k in names}


@dataclass(frozen=True)
class Problem:
    """How a problem is generated, read and scored."""

    make_batch: Callable[[int, int, torch.Generator], Any]  # (T, batch size, generator)
    input_size: int
    out_features: int
    per_step: bool  # the head reads every step (copy) or the final state
    metric: str
    shortest: int


PROBLEMS = {
    "adding": Problem(adding_batch, 2, 1, False, "solved", 11),
    "temporal_order": Problem(lambda T, n, g: temporal_order_batch(n, g, T), 8, 4, False,
                              "accuracy", 20),
    "copy": Problem(copy_batch, COPY_ALPHABET + 2, COPY_ALPHABET + 1, True, "accuracy", 1),
}  # fmt: skip


@dataclass
class DataConfig:
    """The problem, its length ``T``, batches per epoch and evaluation set sizes."""

    problem: str = "adding"
    T: int = 30
    batch_size: int = 32
    steps_per_epoch: int = 100
    val_size: int = 500
    test_size: int = 2000

    def __post_init__(self) -> None:
        if self.problem not in PROBLEMS:
            raise ValueError(
                f"data.problem must be one of {', '.join(PROBLEMS)}; got {self.problem!r}"
            )
        shortest = PROBLEMS[self.problem].shortest
        if shortest > self.T:
            raise ValueError(
                f"data.T must be >= {shortest} for the {self.problem} problem, got {self.T}"
            )
        for name in ("batch_size", "steps_per_epoch", "val_size", "test_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"data.{name} must be positive, got {getattr(self, name)}")


@dataclass
class LabConfig:
    """The whole run: ``model``, ``data`` and ``train`` sections, and ``target``: training
    stops once the validation metric (solved fraction or accuracy) reaches it."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-2, epochs=50))
    target: float = 0.99

    def __post_init__(self) -> None:
        if not 0 < self.target <= 1:
            raise ValueError(f"target must be in (0, 1], got {self.target}")


class SequenceModel(nn.Module):
    """A recurrent layer reads the (variable-length) sequence; a linear head reads its final
    hidden state (the last layer's, at each sequence's own last step) or, with ``per_step``,
    its output at every step.

    The reader is causal and one-directional, so the padded batch runs without ``lengths`` and
    each sequence's final hidden state is its output at its own last step: the same numbers,
    and PyTorch's fused kernel runs unpacked (on the CPU its packed path was 10-34x slower here).
    """

    def __init__(
        self, config: ModelConfig, input_size: int = 2, out_features: int = 1,
        per_step: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        self.per_step = per_step
        kwargs = config.variant_kwargs() if config.cell == "lstm" else {}
        self.rnn = CELLS[config.cell](input_size, config.hidden_size, config.num_layers, **kwargs)
        self.head = nn.Linear(config.hidden_size, out_features)
        if config.spectral_radius is not None:
            self._set_spectral_radius(config.spectral_radius)
        if config.chrono is not None:
            chrono_init_(self.rnn, config.chrono)

    @torch.no_grad()
    def _set_spectral_radius(self, radius: float) -> None:
        """Scale each Elman W_hh so its largest |eigenvalue| is ``radius`` (> 1: gradients
        can explode, Pascanu et al. 2013)."""
        for layer in range(self.rnn.num_layers):
            w = self.rnn.param("weight_hh", layer)
            w.mul_(radius / torch.linalg.eigvals(w).abs().max())

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        output, _ = self.rnn(x)  # (L, N, H)
        if self.per_step:
            return self.head(output)  # (L, N, out_features)
        last = output.size(0) - 1 if lengths is None else lengths.to(x.device) - 1
        h_last = output[last, torch.arange(output.size(1), device=x.device)]  # (N, H)
        return self.head(h_last).squeeze(-1)  # (N,) or (N, out_features)


def build_model(config: LabConfig) -> SequenceModel:
    problem = PROBLEMS[config.data.problem]
    return SequenceModel(config.model, problem.input_size, problem.out_features, problem.per_step)


def lab_step(model: nn.Module, batch: Any, state: Any = None) -> StepOutput:
    """The loss and metric of one batch of any lab problem (see the module docstring)."""
    if hasattr(batch, "positions"):  # adding: MSE; solved = within 0.04 of the target
        prediction = model(batch.x, batch.lengths).float()
        loss = nn.functional.mse_loss(prediction, batch.target)
        solved = ((prediction.detach() - batch.target).abs() < SOLVED_ERROR).float().mean()
        return StepOutput(loss, len(batch.target), {"solved": float(solved)})
    if batch.target.dim() == 2:  # copy: cross-entropy at every step, accuracy on the copy
        logits = model(batch.x).float()  # (L, N, C)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), batch.target.flatten())
        copied = logits[-COPY_LENGTH:].argmax(-1) == batch.target[-COPY_LENGTH:]
        return StepOutput(loss, batch.target.size(1), {"accuracy": float(copied.float().mean())})
    logits = model(batch.x, batch.lengths).float()  # temporal order: (N, 4)
    loss = nn.functional.cross_entropy(logits, batch.target)
    accuracy = (logits.argmax(-1) == batch.target).float().mean()
    return StepOutput(loss, len(batch.target), {"accuracy": float(accuracy)})


def _shard(batch: Any, rank: int, world: int) -> Any:
    """This process's share (rank::world) of a global batch."""
    take = slice(rank, None, world)
    fields = {}
    for f in dataclasses.fields(batch):
        value = getattr(batch, f.name)
        two_d_target = f.name == "target" and value.dim() == 2
        fields[f.name] = value[:, take] if f.name == "x" or two_d_target else value[take]
    if "lengths" in fields:  # drop the padding no sequence of this share reaches
        fields["x"] = fields["x"][: int(fields["lengths"].max())]
    return type(batch)(**fields)


class ProblemStream:
    """``steps_per_epoch`` fresh batches per epoch, a function of (seed, epoch) only.

    Under DDP each process takes its share (rank::world_size) of every global batch of
    ``batch_size`` sequences, so any number of processes trains on the same sequences.
    """

    def __init__(self, data: DataConfig, seed: int, rank: int = 0, world: int = 1) -> None:
        self.data, self.seed, self.rank, self.world = data, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.data.steps_per_epoch

    def __iter__(self):
        make = PROBLEMS[self.data.problem].make_batch
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        for _ in range(self.data.steps_per_epoch):
            batch = make(self.data.T, self.data.batch_size, generator)
            yield batch if self.world == 1 else _shard(batch, self.rank, self.world)


def fixed_set(data: DataConfig, size: int, seed: int, batch_size: int = 500) -> list:
    """A fixed evaluation set of ``size`` sequences drawn with its own seed."""
    make = PROBLEMS[data.problem].make_batch
    generator = torch.Generator().manual_seed(seed)
    return [make(data.T, min(batch_size, size - start), generator)
            for start in range(0, size, batch_size)]  # fmt: skip


def load_config(data: dict[str, Any] | None = None) -> LabConfig:
    data = dict(data or {})
    train = data.pop("train", {})
    config = from_dict(LabConfig, data)
    config.train = from_dict(TrainConfig, {**to_dict(LabConfig().train), **train}, "train")
    return config


def train_model(
    config: LabConfig,
    out_dir: str | Path,
    resume: bool = False,
    callbacks: list[Callback] | None = None,
) -> tuple[SequenceModel, Trainer, History]:
    """Fit a model on the configured problem (writing its model directory); return the
    model, the trainer (its step count, its ``evaluate``) and the history."""
    d = distributed.setup()
    seed = config.train.seed
    torch.manual_seed(seed)  # the same initial weights in every process
    model = build_model(config)
    stream = ProblemStream(config.data, seed, d.rank, d.world_size)
    val = fixed_set(config.data, config.data.val_size, seed + VAL_SEED_OFFSET)
    monitor = "val_" + PROBLEMS[config.data.problem].metric

    def stop_at_target(trainer: Trainer, logs: dict[str, Any]) -> None:
        if logs[monitor] >= config.target:
            trainer.stop_training = True

    trainer = Trainer(
        config.train, lab_step, out_dir=out_dir,
        callbacks=[LambdaCallback(on_epoch_end=stop_at_target), *(callbacks or [])],
        run_config={"task": "lab", **to_dict(config)},
    )  # fmt: skip
    history = trainer.fit(model, stream, val, resume=resume)
    return model, trainer, history


def train(
    config: LabConfig,
    out_dir: str | Path,
    resume: bool = False,
    callbacks: list[Callback] | None = None,
) -> dict[str, Any]:
    """Train; write the model directory and ``results.json`` with the metric on fresh test
    sequences (``solved_fraction`` for adding, ``accuracy`` otherwise). ``callbacks`` are
    added to the trainer's (e.g. a pruning callback during tuning)."""
    start = time.monotonic()
    model, trainer, _ = train_model(config, out_dir, resume, callbacks)
    seconds = time.monotonic() - start
    data, seed = config.data, config.train.seed
    test = trainer.evaluate(model, fixed_set(data, data.test_size, seed + TEST_SEED_OFFSET))
    results = {
        "task": data.problem,
        "T": data.T,
        "cell": config.model.cell,
        **_scores(data, test),
        "test_sequences": data.test_size,
        "train_sequences": trainer.global_step * data.batch_size,
        "steps": trainer.global_step,
        "seconds": round(seconds, 1),
    }
    if trainer.is_main:
        write_json(Path(out_dir) / "results.json", results)
    return results


def _scores(data: DataConfig, metrics: dict[str, float]) -> dict[str, float]:
    """The reported numbers of an evaluation, named per problem."""
    if data.problem == "adding":
        return {"solved_fraction": metrics["solved"], "test_mse": metrics["loss"]}
    scores = {"accuracy": metrics["accuracy"], "test_loss": metrics["loss"]}
    if data.problem == "copy":  # what a model without memory achieves
        scores.update(baseline_accuracy=1 / COPY_ALPHABET, baseline_loss=copy_baseline_loss(data.T))
    return scores


def example(config: LabConfig, seed: int) -> tuple[Tensor, list[str]]:
    """One fresh sequence of the problem (L, H_in) and a label per step, for pictures."""
    batch = PROBLEMS[config.data.problem].make_batch(
        config.data.T, 1, torch.Generator().manual_seed(seed)
    )
    x = batch.x[:, 0]
    if config.data.problem == "adding":
        marks = {1.0: "X", -1.0: "|", 0.0: ""}
        labels = [f"{marks[float(m)]}{v:+.1f}" for v, m in x.tolist()]
    elif config.data.problem == "temporal_order":
        labels = [TEMPORAL_SYMBOLS[k] for k in x.argmax(-1).tolist()]
    else:
        labels = [{0: "_", COPY_ALPHABET + 1: ":"}.get(k, str(k)) for k in x.argmax(-1).tolist()]
    return x, labels


def load_model(model_dir: str | Path) -> tuple[SequenceModel, LabConfig]:
    """Rebuild a trained model from its directory (config.json + model.safetensors)."""
    model_dir = Path(model_dir)
    raw = read_run_config(model_dir, "lab", "a lab model")
    config = load_config({k: v for k, v in raw.items() if k != "task"})
    model = build_model(config)
    load_weights(model, model_dir / MODEL_FILE)
    return model.eval(), config


def evaluate(model_dir: str | Path, split: str = "test") -> dict[str, Any]:
    """The metric on the validation or test sequences of the saved run."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    model, config = load_model(model_dir)
    seed = config.train.seed + (VAL_SEED_OFFSET if split == "val" else TEST_SEED_OFFSET)
    size = config.data.val_size if split == "val" else config.data.test_size
    metrics = Trainer(config.train, lab_step).evaluate(model, fixed_set(config.data, size, seed))
    scores = _scores(config.data, metrics)
    return {"split": split, "problem": config.data.problem, "n": size, **scores}
