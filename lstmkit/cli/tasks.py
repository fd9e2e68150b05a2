"""``lstmkit TASK train|evaluate|predict`` for every registered task, and the task-agnostic
``lstmkit predict`` and ``lstmkit evaluate`` that read the task from a model directory.

A task's CLI module (``TaskEntry.cli``) may add to the generic commands with any of:
``DEFAULT_OUT``; ``add_train_flags(parser)`` and ``train_flags(args) -> {dotted key: value}``
(flags over the preset); ``add_evaluate_flags(parser)`` and ``evaluate_options(args)``;
``before_train(args, config)``; ``print_evaluation(result)``; ``add_predict_flags(parser)``
and ``predict(args, overrides) -> exit status`` (a task whose predictions are files, not
lines); ``add_commands(subparsers)`` for its own commands (``lm generate``, ``sentiment
gates``, ...).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from types import ModuleType
from typing import Any

from lstmkit.cli.common import add_train_arguments, config_from_args, read_lines, write_json
from lstmkit.tasks import TASKS, TaskEntry


def _hooks(name: str) -> ModuleType | None:
    cli = TASKS[name].cli
    return importlib.import_module(cli) if cli else None


def _hook(name: str, attr: str, default: Any = None) -> Any:
    return getattr(_hooks(name), attr, default)


def _no_overrides(command: str, overrides: list[str]) -> None:
    if overrides:
        raise ValueError(f"{command} takes no config overrides, got {' '.join(overrides)}")


def train_task(name: str, args: argparse.Namespace, overrides: list[str],
               extra: dict[str, Any] | None = None,
               defaults: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Build the config of a ``train`` command and run it; print the task's summary."""
    from lstmkit.tasks import get_task, run
    from lstmkit.train.config import from_dict

    task = get_task(name)
    flags = _hook(name, "train_flags", lambda args: {})(args)
    config = from_dict(
        task.config_class, config_from_args(args, overrides, {**flags, **(extra or {})}, defaults)
    )
    before = _hook(name, "before_train")
    if before is not None:
        before(args, config)
    results = run.train(task, config, args.out, resume=args.resume, device=args.device,
                        overwrite=args.overwrite, command=args.argv)  # fmt: skip
    print(task.summary(results))
    print(f"model directory: {args.out}")
    return results


def _train(args: argparse.Namespace, overrides: list[str]) -> int:
    train_task(args.task_name, args, overrides)
    return 0


def _evaluate(args: argparse.Namespace, overrides: list[str]) -> int:
    from lstmkit.tasks import run
    from lstmkit.tasks.base import read_model_dir

    _no_overrides("evaluate", overrides)
    name = args.task_name or read_model_dir(args.model)["task"]
    # the task's own flags exist only under `lstmkit TASK evaluate`; `lstmkit evaluate`
    # leaves them at the task's defaults
    options = _hook(name, "evaluate_options", lambda args: {})(args) if args.task_name else {}
    result = run.evaluate(args.model, args.data, args.split, task=name, device=args.device,
                          **options)  # fmt: skip
    _hook(name, "print_evaluation", lambda r: print(json.dumps(r, indent=2)))(result)
    write_json(args.json, result)
    return 0


def _predict(args: argparse.Namespace, overrides: list[str]) -> int:
    from lstmkit.tasks import get_task
    from lstmkit.tasks.base import read_model_dir

    _no_overrides("predict", overrides)
    raw = read_model_dir(args.model, args.task_name)
    predictor = get_task(raw["task"]).load(args.model, _device(args.device))
    texts = args.inputs or read_lines(args.file)
    inputs = [predictor.parse_input(t) for t in texts]
    outputs = predictor.predict(inputs)
    if args.json:
        print(json.dumps([{"input": i, **o} for i, o in zip(inputs, outputs)], indent=2,
                         allow_nan=False))  # fmt: skip
        return 0
    for item, output in zip(inputs, outputs):
        sys.stdout.write(predictor.format_output(item, output) + "\n")
    return 0


def _device(name: str | None):
    from lstmkit.tasks.run import choose_device

    return choose_device(name)


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="DIR", help="a model directory")
    p.add_argument("--data", help="the data to score (each task says what; default: the "
                   "data the model trained on, where the task has one)")  # fmt: skip
    p.add_argument("--split", choices=("val", "test"),
                   help="val: the run's held-out part; test: the test data (default: the "
                   "task's)")  # fmt: skip
    p.add_argument("--json", metavar="FILE", help="also write the scores to this file")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="DIR", help="a model directory")
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="inputs (texts, prompts, JSON sequences); else --file or stdin, a line "
                   "each")  # fmt: skip
    p.add_argument("--file", help="a UTF-8 file with one input a line")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")


def add_task_commands(commands: argparse._SubParsersAction, name: str, entry: TaskEntry) -> None:
    """``lstmkit NAME train|evaluate|predict`` plus the task's own commands."""
    hooks = _hooks(name)
    parser = commands.add_parser(name, help=entry.help)
    sub = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)

    default_out = getattr(hooks, "DEFAULT_OUT", None) or entry.default_out or f"runs/{name}"
    p = sub.add_parser("train", help=f"train a {name} model (a preset, a config, flags)")
    add_train_arguments(p, default_out)
    if hasattr(hooks, "add_train_flags"):
        hooks.add_train_flags(p)
    p.set_defaults(func=_train, task_name=name)

    p = sub.add_parser("evaluate", help="scores of a trained model directory")
    add_evaluate_arguments(p)
    if hasattr(hooks, "add_evaluate_flags"):
        hooks.add_evaluate_flags(p)
    p.set_defaults(func=_evaluate, task_name=name)

    p = sub.add_parser("predict", help="the model's outputs for inputs")
    add_predict_arguments(p)
    if hasattr(hooks, "add_predict_flags"):
        hooks.add_predict_flags(p)
    p.set_defaults(func=getattr(hooks, "predict", _predict), task_name=name)

    if hasattr(hooks, "add_commands"):
        hooks.add_commands(sub)


def add_commands(commands: argparse._SubParsersAction) -> None:
    for name, entry in TASKS.items():
        add_task_commands(commands, name, entry)
    p = commands.add_parser("predict", help="any model directory's outputs for inputs")
    add_predict_arguments(p)
    p.set_defaults(func=_predict, task_name=None)
    p = commands.add_parser("evaluate", help="any model directory's scores")
    add_evaluate_arguments(p)
    p.set_defaults(func=_evaluate, task_name=None)
