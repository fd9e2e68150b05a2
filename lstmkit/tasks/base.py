"""The task contract: what a task supplies, what a trained model gives back, and the model
directory every task writes.

A task is one object with these members (a :class:`Task`; composition, not a base class to
inherit from), registered by one line in :data:`lstmkit.tasks.TASKS`:

- ``name`` and ``config_class``: a typed config dataclass with ``data``, ``model`` and
  ``train`` (a :class:`~lstmkit.train.TrainConfig`) sections;
- ``build(config, run)``: the model, the training and validation batches, the data to score
  the best model on, and the task's *artifacts* (tokenizers, label maps, sizes: everything
  besides the weights that the model directory must carry, saved into ``run.out_dir``);
- ``step_fn(config)``: the trainer's ``step(model, batch, state) -> StepOutput`` (one
  batch's loss and metrics) for this config;
- ``callbacks(config)``: what the trainer should run besides logging (early stopping, a
  best-epoch :class:`~lstmkit.train.ModelCheckpoint`, a target to stop at);
- ``score(model, data) -> dict``: the task's reported numbers on ``data`` (tasks that score
  by decoding or generating do it here, not through the step loss);
- ``eval_data(predictor, path, split, **options)``: that data again, for a saved model;
- ``load(model_dir) -> Predictor``: the model, loaded once, predicting many times;
- ``summary(results) -> str``: what ``train`` prints at the end.

and, optionally, what makes it exportable and servable, each read only where it is used:

- ``onnx``: an :class:`~lstmkit.export.runtime.OnnxExport` (its graphs, random feeds, the
  eager answers to them, the onnxruntime module, the headline scores), or the name of the
  module holding it as ``ONNX`` (imported when used): ``lstmkit export`` and ``lstmkit
  serve --runtime onnx|int8``;
- ``card``: a :class:`TaskCard` for the model card (else a generic one);
- ``widget``: the name of the web page's widget for its models (else ``generic``);
- ``shards``: ``False`` for a task whose batches are not sharded across processes, which
  :func:`lstmkit.tasks.run.train` then refuses to run under torchrun (else ``True``).

A Predictor may likewise offer ``open_stream()`` (a :class:`Stream`: the server's
stateful sessions) and the optional methods the server's extra endpoints look for
(``generate_tokens``, ``gate_inputs``, ``attention``, ``transcribe_audio``).

:mod:`lstmkit.tasks.run` does everything else (device, processes, the trainer, the model
directory, ``results.json``). The smallest example is the toy regression task in
``tests/tasks/test_contract.py``.

The model directory (one format for every task)::

    config.json         {"lstmkit": version, "format": 1, "task": name,
                         "config": {data, model, train, ...}, "artifacts": {...}}
    model.safetensors   the weights (the best epoch's when the task keeps the best)
    <artifact files>    e.g. tokenizer.json, named in config.json's "artifacts"
    metrics.json        the trainer's final epoch logs and per-epoch history
    results.json        the task's scores of the kept weights on the validation data
    train_log.csv, epoch_log.csv, tensorboard/, trainer_state/ (exact resume)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from lstmkit.train import Callback
from lstmkit.train.checkpoint import MODEL_FILE, load_weights, write_json
from lstmkit.train.trainer import StepFn
from lstmkit.version import __version__

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
FORMAT = 1  # bumped when a model directory can no longer be read by older code


class ModelDirError(ValueError):
    """A model directory that is missing, of another task, or of an unreadable format."""


@dataclass
class RunContext:
    """Where and how a run happens: ``out_dir`` (the model directory), ``resume``,
    ``device``, and this process's ``rank`` of ``world_size``."""

    out_dir: Path
    resume: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    rank: int = 0
    world_size: int = 1


@dataclass
class Stage:
    """One fit of a staged fine-tuning (ULMFiT's gradual unfreezing): the modules that
    train, the optimizer's parameter groups, and ``epochs`` (``None``: the config's)."""

    name: str
    trainable: list[nn.Module]
    param_groups: list[dict[str, Any]] | None = None
    epochs: int | None = None


@dataclass
class Built:
    """What :meth:`Task.build` returns.

    Args:
        model: the model to train.
        train_data, val_data: re-iterables of batches for the trainer.
        score_data: what :meth:`Task.score` reads to report the kept weights' numbers.
        artifacts: JSON-able facts config.json records besides the config (vocabulary
            size, artifact file names, a pretrained encoder's architecture).
        facts: JSON-able numbers ``results.json`` reports besides the scores (data sizes).
        per_step: counts that grow by this much with every optimizer step (``results.json``
            reports ``count * steps``, e.g. ``{"train_sequences": batch_size}``).
        param_groups: optimizer parameter groups (``None``: all trainable parameters).
        stages: fits to run one after the other (``None``: one fit).
    """

    model: nn.Module
    train_data: Iterable
    val_data: Iterable | None
    score_data: Any = None
    artifacts: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    per_step: dict[str, int] = field(default_factory=dict)
    param_groups: list[dict[str, Any]] | None = None
    stages: list[Stage] | None = None


class Task(Protocol):
    """See the module docstring."""

    name: str
    config_class: type

    def build(self, config: Any, run: RunContext) -> Built: ...

    def step_fn(self, config: Any) -> StepFn: ...

    def callbacks(self, config: Any) -> list[Callback]: ...

    def score(self, model: nn.Module, data: Any) -> dict[str, Any]: ...

    def eval_data(
        self, predictor: Predictor, path: str | None, split: str | None, **options: Any
    ) -> Any: ...

    def load(self, model_dir: str | Path, device: torch.device | None = None) -> Predictor: ...

    def summary(self, results: dict[str, Any]) -> str: ...


LSTM_CITATION = """@article{hochreiter1997lstm,
  title = {Long Short-Term Memory},
  author = {Hochreiter, Sepp and Schmidhuber, J{\\"u}rgen},
  journal = {Neural Computation}, volume = {9}, number = {8}, pages = {1735--1780},
  year = {1997}
}"""


@dataclass(frozen=True)
class TaskCard:
    """What lstmkit knows of a task for its cards."""

    title: str
    pipeline_tag: str | None
    data: str
    citation: str
    intended_use: str
    limits: str
    headline: tuple[str, ...]  # the results.json numbers to show first
    datasets: tuple[str, ...] = ()


class InputError(ValueError):
    """A refused input, naming the ``field`` at fault (``input``, ``final``, ...)."""

    def __init__(self, message: str, field: str = "input") -> None:
        super().__init__(message)
        self.field = field


class Stream(Protocol):
    """An input read chunk by chunk with the state carried (:meth:`Predictor.open_stream`).

    ``step(chunk, options)`` returns the output for the chunk and the stream after it; the
    stream it is called on is left as it was, so a caller can drop a step (a refused chunk,
    a memory bound) and keep the state before it. ``nbytes``: the state's size in memory.
    A bad chunk raises :class:`InputError` (a ``ValueError``).
    """

    @property
    def nbytes(self) -> int: ...

    def step(self, chunk: Any, options: dict[str, Any]) -> tuple[dict[str, Any], Stream]: ...


class Predictor:
    """A trained model loaded once: ``predict(inputs)`` any number of times.

    ``inputs`` is a list (texts, prompts, sequences: what the task reads); the result is one
    JSON-serialisable dict per input, in order. Tasks subclass it and implement
    :meth:`predict`; ``parse_input`` turns one command-line string into an input and
    ``format_output`` one result into a line (defaults: the string itself, and JSON).
    """

    def __init__(
        self,
        task: str,
        config: Any,
        model: nn.Module,
        artifacts: dict[str, Any],
        model_dir: str | Path,
        device: torch.device | None = None,
    ) -> None:
        self.task, self.config, self.artifacts = task, config, artifacts
        self.model_dir = Path(model_dir)
        self.device = device or torch.device("cpu")
        self.model = model.to(self.device).eval()

    def predict(self, inputs: list[Any]) -> list[dict[str, Any]]:
        raise NotImplementedError(f"the {self.task} task has no predict")

    def parse_input(self, text: str) -> Any:
        return text

    def check_input(self, item: Any) -> None:
        """Refuse (with :class:`InputError`) an input that ``predict`` must not see over
        HTTP; the server calls it for every input before batching. Default: any input."""

    def generation_length(self, item: Any) -> tuple[str, Any] | None:
        """The option of ``item`` that sets how many tokens ``predict`` generates and its
        value, defaults filled in (e.g. ``("max_new", 200)``); ``None`` for a task that
        generates nothing. The server bounds it."""
        return None

    def format_output(self, item: Any, output: dict[str, Any]) -> str:
        return json.dumps(output)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task!r}, model_dir={str(self.model_dir)!r})"


# -- config.json ------------------------------------------------------------------------------


def model_dir_config(task: str, config: dict[str, Any], artifacts: dict[str, Any]) -> dict:
    """The content of a model directory's ``config.json``."""
    return {
        "lstmkit": __version__,
        "format": FORMAT,
        "task": task,
        "config": config,
        "artifacts": artifacts,
    }


def read_model_dir(
    model_dir: str | Path, task: str | None = None, require: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``config.json`` of ``model_dir``, checked: present, readable, of this format, (if
    ``task`` is given) of that task, and with the ``require``d artifacts. Directories of
    lstmkit 0.1's layout (``{"task": ..., sections...}``) are read as the same thing."""
    model_dir = Path(model_dir)
    path = model_dir / CONFIG_FILE
    if not model_dir.is_dir():
        raise ModelDirError(f"{model_dir} is not a model directory (no such directory)")
    if not path.is_file():
        raise ModelDirError(f"{model_dir} is not a model directory (no {CONFIG_FILE})")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelDirError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("task"), str):
        raise ModelDirError(f'{path}: not an lstmkit model config (no "task" name)')
    if "format" not in raw:  # lstmkit 0.1: the sections at the top level
        sections = {k: v for k, v in raw.items() if k not in ("task", "vocab_size", "encoder")}
        if raw["task"] in ("sentiment", "lm") and isinstance(sections.get("data"), dict):
            sections["data"] = {"split": "random", **sections["data"]}  # 0.1 split at random
        artifacts = {k: raw[k] for k in ("vocab_size", "encoder") if k in raw}
        raw = model_dir_config(raw["task"], sections, artifacts)
    if not isinstance(raw["format"], int) or raw["format"] > FORMAT:
        raise ModelDirError(
            f"{path}: model directory format {raw['format']!r} was written by a newer lstmkit "
            f"({raw.get('lstmkit')}); this lstmkit ({__version__}) reads format {FORMAT}"
        )
    for key, kind in (("config", dict), ("artifacts", dict)):
        if not isinstance(raw.get(key), kind):
            raise ModelDirError(f'{path}: "{key}" must be a mapping')
    if task is not None and raw["task"] != task:
        raise ModelDirError(f"{model_dir} holds a {raw['task']!r} model, not a {task!r} model")
    missing = [k for k in require if k not in raw["artifacts"]]
    if missing:
        raise ModelDirError(f'{path}: "artifacts" lacks {", ".join(missing)}')
    return raw


@dataclass(frozen=True)
class ModelDir:
    """A model directory (the layout in the module docstring): the one place its
    ``config.json`` and ``results.json`` are written and read; the model card is made from
    them (:func:`lstmkit.tasks.card.write_card`). The Trainer writes only its own files into
    it (weights, logs, ``metrics.json``, resume state)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def read(self, task: str | None = None, require: tuple[str, ...] = ()) -> dict[str, Any]:
        """``config.json``, checked (:func:`read_model_dir`)."""
        return read_model_dir(self.path, task, require)

    def write_config(self, raw: dict[str, Any]) -> None:
        """Write ``config.json`` (``raw``: :func:`model_dir_config`'s)."""
        write_json(self.path / CONFIG_FILE, raw)

    def results(self) -> dict[str, Any]:
        """``results.json`` (empty before the model is scored)."""
        path = self.path / RESULTS_FILE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def write_results(self, results: dict[str, Any]) -> None:
        write_json(self.path / RESULTS_FILE, results)


def _header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118 (a safe_open has no __iter__)
    except (SafetensorError, OSError) as e:
        raise ModelDirError(f"{path}: not a readable safetensors file ({e})") from None


def load_model(build: Callable[[], nn.Module], model_dir: str | Path) -> nn.Module:
    """``build()`` with the weights of ``model_dir``, checked before anything is allocated:
    the tensors' shapes in the file's header against a model built on the meta device (so a
    config.json claiming a huge vocabulary fails at once), then every weight finite."""
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise ModelDirError(f"{model_dir} has no {MODEL_FILE}")
    stored = _header_shapes(path)
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in build().state_dict().items()}
    except (NotImplementedError, RuntimeError):  # an init the meta device cannot run
        expected = None
    if expected is not None:
        for name, shape in stored.items():
            if name not in expected:
                raise ModelDirError(f"{path} holds {name}, which the model of config.json has not")
            if expected[name] != shape:
                raise ModelDirError(
                    f"{path}: {name} has shape {list(shape)}, but config.json describes a model "
                    f"whose {name} has shape {list(expected[name])}"
                )
    model = build()
    try:
        load_weights(model, path)
    except RuntimeError as e:  # missing tensors (strict loading)
        raise ModelDirError(f"{path} does not fit the model of config.json ({e})") from None
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ModelDirError(f"{path}: {name} holds NaN or infinite values")
    return model


def read_config(model_dir: str | Path, task: Any, require: tuple[str, ...] = ()):
    """The typed config and the artifacts of a model directory of ``task``."""
    from lstmkit.train.config import from_dict

    raw = read_model_dir(model_dir, task.name, require)
    return from_dict(task.config_class, raw["config"]), raw["artifacts"]


def load_tokenizer(model_dir: str | Path, vocab_size: int) -> Any:
    """The tokenizer of ``model_dir``, checked against the vocabulary the weights expect
    (a tokenizer.json copied from another model would give confident nonsense)."""
    from lstmkit.data.tokenizer import Tokenizer

    tokenizer = Tokenizer.load(model_dir)
    if tokenizer.vocab_size != vocab_size:
        raise ModelDirError(
            f"{Path(model_dir) / 'tokenizer.json'} has {tokenizer.vocab_size} tokens, but the "
            f"model of config.json reads {vocab_size}: the tokenizer is not this model's"
        )
    return tokenizer
