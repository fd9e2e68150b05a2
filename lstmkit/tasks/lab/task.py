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
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from lstmkit.nn import GRU, LSTM, RNN, chrono_init_
from lstmkit.tasks.base import Built, Predictor, RunContext, load_model, read_config
from lstmkit.tasks.lab.adding import SOLVED_ERROR, adding_batch
from lstmkit.tasks.lab.card import CARD
from lstmkit.tasks.lab.sequences import (
    COPY_ALPHABET,
    COPY_LENGTH,
    TEMPORAL_SYMBOLS,
    copy_baseline_loss,
    copy_batch,
    temporal_order_batch,
)
from lstmkit.train import Callback, LambdaCallback, StepOutput, TrainConfig, from_dict
from lstmkit.train.config import check_fraction, check_positive

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
        check_positive(self, "model", ("hidden_size", "num_layers"))
        check_fraction(self, "model", ("zoneout", "recurrent_dropout", "weight_drop"))
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
        names = (
            "layer_norm",
            "peephole",
            "coupled",
            "zoneout",
            "recurrent_dropout",
            "weight_drop",
            "forget_bias",
        )
        return {k: getattr(self, k) for k in names}


def _adding_step(model: nn.Module, batch: Any) -> StepOutput:
    """MSE; solved = within 0.04 of the target."""
    prediction = model(batch.x, batch.lengths).float()
    loss = nn.functional.mse_loss(prediction, batch.target)
    solved = ((prediction.detach() - batch.target).abs() < SOLVED_ERROR).float().mean()
    return StepOutput(loss, len(batch.target), {"solved": float(solved)})


def _copy_step(model: nn.Module, batch: Any) -> StepOutput:
    """Cross-entropy at every step, accuracy on the copied symbols."""
    logits = model(batch.x).float()  # (L, N, C)
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), batch.target.flatten())
    copied = logits[-COPY_LENGTH:].argmax(-1) == batch.target[-COPY_LENGTH:]
    return StepOutput(loss, batch.target.size(1), {"accuracy": float(copied.float().mean())})


def _temporal_order_step(model: nn.Module, batch: Any) -> StepOutput:
    logits = model(batch.x, batch.lengths).float()  # (N, 4)
    loss = nn.functional.cross_entropy(logits, batch.target)
    accuracy = (logits.argmax(-1) == batch.target).float().mean()
    return StepOutput(loss, len(batch.target), {"accuracy": float(accuracy)})


def _adding_scores(T: int, metrics: dict[str, float]) -> dict[str, float]:
    return {"solved_fraction": metrics["solved"], "test_mse": metrics["loss"]}


def _accuracy_scores(T: int, metrics: dict[str, float]) -> dict[str, float]:
    return {"accuracy": metrics["accuracy"], "test_loss": metrics["loss"]}


def _copy_scores(T: int, metrics: dict[str, float]) -> dict[str, float]:
    # with what a model without memory achieves
    return {
        **_accuracy_scores(T, metrics),
        "baseline_accuracy": 1 / COPY_ALPHABET,
        "baseline_loss": copy_baseline_loss(T),
    }


def _adding_labels(x: Tensor) -> list[str]:
    marks = {1.0: "X", -1.0: "|", 0.0: ""}
    return [f"{marks[float(m)]}{v:+.1f}" for v, m in x.tolist()]


def _temporal_order_labels(x: Tensor) -> list[str]:
    return [TEMPORAL_SYMBOLS[k] for k in x.argmax(-1).tolist()]


def _copy_labels(x: Tensor) -> list[str]:
    return [{0: "_", COPY_ALPHABET + 1: ":"}.get(k, str(k)) for k in x.argmax(-1).tolist()]


def _adding_output(y: Tensor) -> dict[str, Any]:
    return {"prediction": float(y)}


def _classes_output(y: Tensor) -> dict[str, Any]:
    probs = y.softmax(-1)
    return {"label": int(probs.argmax()), "probabilities": probs.tolist()}


def _copy_output(y: Tensor) -> dict[str, Any]:  # y: (L, C)
    return {"symbols": y.argmax(-1).tolist()}


@dataclass(frozen=True)
class Problem:
    """How a problem is generated, read, scored, drawn and predicted."""

    make_batch: Callable[[int, int, torch.Generator], Any]  # (T, batch size, generator)
    input_size: int
    out_features: int
    per_step: bool  # the head reads every step (copy) or the final state
    metric: str
    shortest: int
    step: Callable[[nn.Module, Any], StepOutput]  # loss and metric of a batch
    scores: Callable[[int, dict[str, float]], dict[str, float]]  # reported, from the means
    labels: Callable[[Tensor], list[str]]  # one per step of a sequence (L, H_in)
    output: Callable[[Tensor], dict[str, Any]]  # a prediction as JSON


PROBLEMS = {
    "adding": Problem(
        adding_batch,
        2,
        1,
        False,
        "solved",
        11,
        _adding_step,
        _adding_scores,
        _adding_labels,
        _adding_output,
    ),
    "temporal_order": Problem(
        lambda T, n, g: temporal_order_batch(n, g, T),
        8,
        4,
        False,
        "accuracy",
        20,
        _temporal_order_step,
        _accuracy_scores,
        _temporal_order_labels,
        _classes_output,
    ),
    "copy": Problem(
        copy_batch,
        COPY_ALPHABET + 2,
        COPY_ALPHABET + 1,
        True,
        "accuracy",
        1,
        _copy_step,
        _copy_scores,
        _copy_labels,
        _copy_output,
    ),
}


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
        check_positive(self, "data", ("batch_size", "steps_per_epoch", "val_size", "test_size"))


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
    and PyTorch's fused kernel runs unpacked (its packed CPU path is far slower; RESULTS.md).
    """

    def __init__(
        self,
        config: ModelConfig,
        input_size: int = 2,
        out_features: int = 1,
        per_step: bool = False,
    ) -> None:
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
    return [
        make(data.T, min(batch_size, size - start), generator)
        for start in range(0, size, batch_size)
    ]


def load_config(data: dict[str, Any] | None = None) -> LabConfig:
    return from_dict(LabConfig, data)


class ScoreData(NamedTuple):
    """Fixed sequences to score: which ``split`` and their batches."""

    split: str
    problem: str
    T: int
    batches: list


@torch.no_grad()
def mean_metrics(model: nn.Module, problem: Problem, batches: list) -> dict[str, float]:
    """The loss and metric over ``batches``, each batch weighted by its size."""
    sums: dict[str, float] = {}
    total = 0
    for batch in batches:
        out = problem.step(model, batch)
        for key, value in {"loss": float(out.loss), **out.metrics}.items():
            sums[key] = sums.get(key, 0.0) + value * out.size
        total += out.size
    return {k: v / total for k, v in sums.items()}


def _score_data(config: LabConfig, split: str) -> ScoreData:
    data, seed = config.data, config.train.seed
    if split == "val":
        offset, size = VAL_SEED_OFFSET, data.val_size
    else:
        offset, size = TEST_SEED_OFFSET, data.test_size
    return ScoreData(split, data.problem, data.T, fixed_set(data, size, seed + offset))


class LabTask:
    """The long-time-lag problems (see the module docstring)."""

    name = "lab"
    config_class = LabConfig
    card = CARD
    onnx = "lstmkit.tasks.lab.export"  # its OnnxExport, imported when used
    widget = "generic"  # the web page's widget (lstmkit/serve/static)

    def build(self, config: LabConfig, run: RunContext) -> Built:
        data, seed = config.data, config.train.seed
        return Built(
            build_model(config),
            ProblemStream(data, seed, run.rank, run.world_size),
            fixed_set(data, data.val_size, seed + VAL_SEED_OFFSET),
            score_data=_score_data(config, "test"),
            facts={
                "problem": data.problem,
                "T": data.T,
                "cell": config.model.cell,
                "test_sequences": data.test_size,
            },
            per_step={"train_sequences": data.batch_size},
        )

    def step_fn(self, config: LabConfig):
        step = PROBLEMS[config.data.problem].step
        return lambda model, batch, state=None: step(model, batch)

    def callbacks(self, config: LabConfig) -> list[Callback]:
        monitor = "val_" + PROBLEMS[config.data.problem].metric

        def stop_at_target(trainer: Any, logs: dict[str, Any]) -> None:
            if logs[monitor] >= config.target:
                trainer.stop_training = True

        return [LambdaCallback(on_epoch_end=stop_at_target)]

    def score(self, model: nn.Module, data: ScoreData) -> dict[str, Any]:
        problem = PROBLEMS[data.problem]
        means = mean_metrics(model, problem, data.batches)
        n = sum(b.x.size(1) for b in data.batches)
        return {"split": data.split, "n": n, **problem.scores(data.T, means)}

    def eval_data(self, predictor: LabPredictor, path: str | None, split: str | None) -> ScoreData:
        """The run's own fresh ``val`` or ``test`` (default) sequences, drawn from seeds the
        training never used; lab problems are generated, so there is no ``path``."""
        if path is not None:
            raise ValueError("lab problems are generated: evaluate takes no --data")
        split = split or "test"
        if split not in ("val", "test"):
            raise ValueError(f"split must be 'val' or 'test', got {split!r}")
        return _score_data(predictor.config, split)

    def load(self, model_dir: str | Path, device: torch.device | None = None) -> LabPredictor:
        config, artifacts = read_config(model_dir, self)
        model = load_model(lambda: build_model(config), model_dir)
        return LabPredictor(self.name, config, model, artifacts, model_dir, device)

    def summary(self, results: dict[str, Any]) -> str:
        cell, n, T = results["cell"].upper(), results["test_sequences"], results["T"]
        if results["problem"] == "adding":
            score = f"solved {results['solved_fraction']:.1%} of {n} fresh adding-problem "
            score += f"sequences (T={T}, error < 0.04)"
        else:
            score = f"reached {results['accuracy']:.1%} accuracy on {n} fresh "
            score += f"{results['problem']} sequences (T={T})"
            if "baseline_accuracy" in results:
                score += f"; memoryless baseline {results['baseline_accuracy']:.1%}"
        return (
            f"{cell} {score} after {results['train_sequences']:,} training sequences in "
            f"{results['seconds']} s"
        )


class LabPredictor(Predictor):
    """The model's answer for sequences: each input is a sequence of steps (L lists of
    H_in numbers, as the problem's generator makes them; JSON on the command line).
    Adding: ``prediction``; temporal order: ``label`` (0-3: XX, XY, YX, YY) and
    ``probabilities``; copy: the ``symbols`` read at every step."""

    @torch.no_grad()
    def predict(self, inputs: list[Any]) -> list[dict[str, Any]]:
        problem = PROBLEMS[self.config.data.problem]
        if not inputs:
            raise ValueError("no sequence to read")
        out = []
        for k, item in enumerate(inputs):
            try:
                x = torch.as_tensor(item, dtype=torch.float32)
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(f"input {k + 1} is not a sequence of numbers") from None
            if x.dim() != 2 or x.size(1) != problem.input_size or x.size(0) == 0:
                raise ValueError(
                    f"input {k + 1}: expected a sequence of shape (L, {problem.input_size}) "
                    f"with L >= 1, got {tuple(x.shape)}"
                )
            y = self.model(x.unsqueeze(1).to(self.device))  # (N=1) batch
            out.append(problem.output(y[:, 0] if problem.per_step else y[0]))
        return out

    def parse_input(self, text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"a lab input is a JSON list of steps, e.g. [[0.5, 1], [0.2, 0]]: {e}"
            ) from None


def example(config: LabConfig, seed: int) -> tuple[Tensor, list[str]]:
    """One fresh sequence of the problem (L, H_in) and a label per step, for pictures."""
    problem = PROBLEMS[config.data.problem]
    batch = problem.make_batch(config.data.T, 1, torch.Generator().manual_seed(seed))
    x = batch.x[:, 0]
    return x, problem.labels(x)


TASK = LabTask()
