"""Task pipelines and their registry.

Adding a task is one module (exposing ``TASK``, see :mod:`lstmkit.tasks.base`) and one line
in :data:`TASKS`; the command line (``lstmkit NAME train|evaluate|predict``, ``lstmkit
predict``, ``lstmkit tune NAME``) and :func:`lstmkit.load` pick it up from here. Entries are
imported only when used, so ``lstmkit --help`` does not import torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TaskEntry:
    """A registered task: the module holding ``TASK`` (or the task object itself), a line of
    help, and optionally its CLI hooks adding the task's own flags and commands
    (:class:`lstmkit.cli.hooks.TaskCLI`)."""

    target: Any  # "package.module" exposing TASK, or a Task object
    help: str
    cli: Any = None  # "package.module" exposing CLI, or a TaskCLI object


TASKS: dict[str, TaskEntry] = {
    "sentiment": TaskEntry(
        "lstmkit.tasks.sentiment.task",
        "IMDB sentiment: train, evaluate, predict",
        cli="lstmkit.cli.sentiment",
    ),
    "lm": TaskEntry(
        "lstmkit.tasks.lm.task",
        "language models: train, evaluate, predict, generate",
        cli="lstmkit.cli.lm",
    ),
    "lab": TaskEntry(
        "lstmkit.tasks.lab.task",
        "the gradient lab: long-time-lag experiments",
        cli="lstmkit.cli.lab",
    ),
    "forecast": TaskEntry(
        "lstmkit.tasks.forecast.task",
        "time-series forecasting (M4): train, evaluate, predict",
        cli="lstmkit.cli.forecast",
    ),
    "speech": TaskEntry(
        "lstmkit.tasks.speech.task",
        "speech recognition (FSDD digits, CTC): train, evaluate, transcribe",
        cli="lstmkit.cli.speech",
    ),
    "translate": TaskEntry(
        "lstmkit.tasks.translate.task",
        "machine translation (Multi30k): train, evaluate, run, attention",
        cli="lstmkit.cli.translate",
    ),
}


def register(name: str, target: Any, help: str = "", cli: Any = None) -> None:
    """Add a task (a module path exposing ``TASK``, or a task object) to :data:`TASKS`, with
    its CLI hooks (a module path exposing ``CLI``, or a ``TaskCLI``), if any."""
    if name in TASKS:
        raise ValueError(f"a task named {name!r} is already registered")
    TASKS[name] = TaskEntry(target, help, cli)


def get_task(name: str) -> Any:
    """The task object registered as ``name``."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    target = TASKS[name].target
    return importlib.import_module(target).TASK if isinstance(target, str) else target
