"""The models a server holds: each loaded once at start-up, with what the server says of it.

``--model DIR`` serves DIR under its folder name, ``--model NAME=DIR`` under NAME. Loading
goes through the task's own ``load`` (safetensors weights, ``config.json`` checked before
anything large is allocated), so a bad directory fails start-up with the same one-line
message as ``lstmkit predict``.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lstmkit.serve.batching import MicroBatcher
from lstmkit.serve.config import BatchConfig
from lstmkit.tasks import TASKS, get_task
from lstmkit.tasks.base import ModelDir, Predictor

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def parse_model_specs(specs: list[str]) -> dict[str, Path]:
    """``["DIR", "NAME=DIR", ...]`` -> {name: directory}; names unique and URL-safe."""
    if not specs:
        raise ValueError("give at least one --model DIR (or NAME=DIR)")
    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec).resolve().name, spec
        if not NAME.match(name):
            raise ValueError(
                f"--model {spec}: the name {name!r} must be 1-64 letters, digits, "
                "'_', '.' or '-' (it is part of the URL); give NAME=DIR"
            )
        if name in out:
            raise ValueError(f"--model {spec}: two models named {name!r}; give NAME=DIR")
        out[name] = Path(path)
    return out


def _numbers(results: dict[str, Any]) -> dict[str, Any]:
    """The scalar scores of results.json (the per-class report and matrices left out)."""
    return {k: v for k, v in results.items() if isinstance(v, (int, float, str))}


@dataclass
class ServedModel:
    """A loaded model: its ``name``, ``predictor``, worker thread and batcher."""

    name: str
    predictor: Predictor
    batching: BatchConfig
    threads: int = 0  # torch's threads in the worker (0: torch's default)
    executor: ThreadPoolExecutor = field(init=False, repr=False)
    batcher: MicroBatcher = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # one thread per model: torch calls on a model never overlap, and a slow model does
        # not hold up the others. torch's thread count is per calling thread (OpenMP), so
        # the worker sets its own
        init = {"initializer": torch_threads, "initargs": (self.threads,)} if self.threads else {}
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"model-{self.name}", **init)
        self.batcher = MicroBatcher(self.predictor.predict, self.batching, self.executor)

    @property
    def task(self) -> str:
        return self.predictor.task

    def widget(self) -> str:
        """The web page's widget the task declares; else the generic one (text or JSON in,
        the Predictor's JSON out), also for a Predictor of no registered task."""
        if self.task not in TASKS:
            return "generic"
        return getattr(get_task(self.task), "widget", "generic")

    def info(self) -> dict[str, Any]:
        """What ``GET /v1/models`` says: task, widget, config summary, scores."""
        model_dir = ModelDir(self.predictor.model_dir)
        results, raw = model_dir.results(), model_dir.read()
        return {
            "name": self.name,
            "task": self.task,
            "widget": self.widget(),
            "config": raw["config"].get("model", {}),
            "metrics": _numbers(results),
            "parameters": sum(p.numel() for p in self.predictor.model.parameters()),
        }


RUNTIMES = ("eager", "onnx", "int8")


def torch_threads(n: int) -> None:
    """Give the calling thread ``n`` torch (OpenMP) threads."""
    import torch

    torch.set_num_threads(n)


def share_threads(threads: int, models: int) -> int:
    """Each model worker's torch threads: ``threads`` (0: torch's default) split among
    ``models``, at least one each, so the OpenMP teams together never outnumber the cores
    (more threads than cores makes libgomp's barriers sleep instead of spin: the eager
    sentiment model then took 6-13 ms a review instead of 2 ms, BENCHMARKS.md)."""
    import torch

    return max(1, (threads or torch.get_num_threads()) // max(models, 1))


def load_models(
    dirs: dict[str, Path],
    batching: BatchConfig,
    device: str | None = "cpu",
    runtime: str = "eager",
    threads: int = 0,
) -> dict[str, ServedModel]:
    """Every model of ``dirs`` loaded once; the first bad directory stops start-up.

    ``runtime``: ``eager`` (PyTorch), ``onnx`` (the exported graph in onnxruntime) or
    ``int8`` (the same, dynamically quantized); the graphs are exported at start-up into a
    temporary folder (:mod:`lstmkit.export`)."""
    from lstmkit.tasks import run
    from lstmkit.tasks.export import use_graph

    if runtime not in RUNTIMES:
        raise ValueError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    models = {}
    share = share_threads(threads, len(dirs))
    for name, path in dirs.items():
        try:
            predictor = run.load(path, device)
            if runtime != "eager":
                use_graph(predictor, runtime, threads)
        except (ValueError, OSError) as e:  # one line, as every user error of the CLI
            raise ValueError(f"cannot serve model {name!r} from {path}: {e}") from None
        models[name] = ServedModel(name, predictor, batching, share)
    return models
