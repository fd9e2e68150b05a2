"""What a task's CLI module adds to the generic ``lstmkit TASK train|evaluate|predict``.

A task's CLI module (``TaskEntry.cli``) exposes one ``CLI = TaskCLI(...)`` naming the hooks
it has; every hook is optional and ``None`` leaves the generic behaviour. The fields are
keyword-only, so a misspelt hook name is a ``TypeError`` where the module defines ``CLI``,
not a hook silently never called. Nothing here imports torch.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: a command's function: the parsed arguments and the ``--section.key VALUE`` overrides
#: argparse left over -> the exit status
Command = Callable[[argparse.Namespace, list[str]], int]


@dataclass(frozen=True, kw_only=True)
class TaskCLI:
    """The hooks of one task's commands (each ``None`` by default: the generic behaviour)."""

    add_train_flags: Callable[[argparse.ArgumentParser], None] | None = None
    """Add the task's flags to ``TASK train`` (``--data``, ...). Default: none."""

    train_flags: Callable[[argparse.Namespace], dict[str, Any]] | None = None
    """The config values of those flags, ``{dotted key: value}``; a ``None`` value is a
    flag not given. They override the preset or config file and are overridden by
    ``--section.key``. Default: none."""

    before_train: Callable[[argparse.Namespace, Any], None] | None = None
    """Called with the arguments and the built config just before training (to say which
    data it reads, say). Default: nothing."""

    add_evaluate_flags: Callable[[argparse.ArgumentParser], None] | None = None
    """Add the task's flags to ``TASK evaluate``. Default: none."""

    evaluate_options: Callable[[argparse.Namespace], dict[str, Any]] | None = None
    """The keyword arguments of those flags for the task's scoring (``run.evaluate``); the
    task-agnostic ``lstmkit evaluate`` has no such flags and passes none. Default: none."""

    print_evaluation: Callable[[dict[str, Any]], None] | None = None
    """Print the scores of ``evaluate``. Default: the scores as indented JSON."""

    add_predict_flags: Callable[[argparse.ArgumentParser], None] | None = None
    """Add the task's flags to ``TASK predict``. Default: none."""

    predict: Command | None = None
    """Run ``TASK predict`` instead of the generic one (a task whose predictions are files,
    not lines). Default: the generic predict, one output line per input."""

    add_commands: Callable[[argparse._SubParsersAction], None] | None = None
    """Add the task's own commands beside train/evaluate/predict (``lm generate``,
    ``sentiment gates``, ...) to the task's subparsers. Default: none."""
