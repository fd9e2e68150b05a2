"""``lstmkit TASK train|evaluate|predict`` for every registered task, and the task-agnostic
``lstmkit predict`` and ``lstmkit evaluate`` that read the task from a model directory.

A task adds its own flags and commands through the :class:`~lstmkit.cli.hooks.TaskCLI` of
its CLI module (``TaskEntry.cli``); a task without one gets the generic commands alone. A
task's model directory defaults to ``runs/NAME``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

from lstmkit.cli.common import add_train_arguments, config_from_args, read_lines, write_json
from lstmkit.cli.hooks import TaskCLI
from lstmkit.tasks import TASKS, TaskEntry


def task_cli(name: str) -> TaskCLI:
    """The hooks of the task registered as ``name``: its ``TaskEntry.cli`` (a TaskCLI, or a
    module exposing one as ``CLI``), or none."""
    cli = TASKS[name].cli
    if isinstance(cli, str):
        cli = importlib.import_module(cli).CLI
    if cli is None:
        return TaskCLI()
    if not isinstance(cli, TaskCLI):
        raise TypeError(f"the CLI of task {name!r} must be a TaskCLI, got {type(cli).__name__}")
    return cli


def _no_overrides(command: str, overrides: list[str]) -> None:
    if overrides:
        raise ValueError(f"{command} takes no config overrides, got {' '.join(overrides)}")


def train_task(
    name: str,
    args: argparse.Namespace,
    overrides: list[str],
    extra: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the config of a ``train`` command and run it; print the task's summary."""
    from lstmkit.tasks import get_task, run
    from lstmkit.train.config import from_dict

    task, cli = get_task(name), task_cli(name)
    flags = cli.train_flags(args) if cli.train_flags else {}
    data = config_from_args(args, overrides, {**flags, **(extra or {})}, defaults)
    config = from_dict(task.config_class, data)
    if cli.before_train:
        cli.before_train(args, config)
    results = run.train(
        task,
        config,
        args.out,
        resume=args.resume,
        device=args.device,
        overwrite=args.overwrite,
        command=args.argv,
    )
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
    cli = task_cli(name)
    # the task's own flags exist only under `lstmkit TASK evaluate`; `lstmkit evaluate`
    # leaves them at the task's defaults
    options = cli.evaluate_options(args) if cli.evaluate_options and args.task_name else {}
    result = run.evaluate(
        args.model, args.data, args.split, task=name, device=args.device, **options
    )
    if cli.print_evaluation:
        cli.print_evaluation(result)
    else:
        print(json.dumps(result, indent=2))
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
        records = [{"input": i, **o} for i, o in zip(inputs, outputs)]
        print(json.dumps(records, indent=2, allow_nan=False))
        return 0
    for item, output in zip(inputs, outputs):
        sys.stdout.write(predictor.format_output(item, output) + "\n")
    return 0


def _device(name: str | None):
    from lstmkit.tasks.run import choose_device

    return choose_device(name)


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="DIR", help="a model directory")
    p.add_argument(
        "--data",
        help="the data to score (each task says what; default: the data the model trained "
        "on, where the task has one)",
    )
    p.add_argument(
        "--split",
        choices=("val", "test"),
        help="val: the run's held-out part; test: the test data (default: the task's)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the scores to this file")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="DIR", help="a model directory")
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="inputs (texts, prompts, JSON sequences); else --file or stdin, a line each",
    )
    p.add_argument("--file", help="a UTF-8 file with one input a line")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")


def add_task_commands(commands: argparse._SubParsersAction, name: str, entry: TaskEntry) -> None:
    """``lstmkit NAME train|evaluate|predict`` plus the task's own commands."""
    cli = task_cli(name)
    parser = commands.add_parser(name, help=entry.help)
    sub = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help=f"train a {name} model (a preset, a config, flags)")
    add_train_arguments(p, f"runs/{name}")
    if cli.add_train_flags:
        cli.add_train_flags(p)
    p.set_defaults(func=_train, task_name=name)

    p = sub.add_parser("evaluate", help="scores of a trained model directory")
    add_evaluate_arguments(p)
    if cli.add_evaluate_flags:
        cli.add_evaluate_flags(p)
    p.set_defaults(func=_evaluate, task_name=name)

    p = sub.add_parser("predict", help="the model's outputs for inputs")
    add_predict_arguments(p)
    if cli.add_predict_flags:
        cli.add_predict_flags(p)
    p.set_defaults(func=cli.predict or _predict, task_name=name)

    if cli.add_commands:
        cli.add_commands(sub)


def add_commands(commands: argparse._SubParsersAction) -> None:
    for name, entry in TASKS.items():
        add_task_commands(commands, name, entry)
    p = commands.add_parser("predict", help="any model directory's outputs for inputs")
    add_predict_arguments(p)
    p.set_defaults(func=_predict, task_name=None)
    p = commands.add_parser("evaluate", help="any model directory's scores")
    add_evaluate_arguments(p)
    p.set_defaults(func=_evaluate, task_name=None)
