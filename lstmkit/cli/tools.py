"""``lstmkit tune`` and ``lstmkit plot-log``: tools around training runs."""

from __future__ import annotations

import argparse
import functools
from collections import Counter
from pathlib import Path
from typing import Any

from lstmkit.cli.common import PRESETS
from lstmkit.tasks import TASKS


def load_yaml(path: str) -> dict[str, Any]:
    from lstmkit.train.config import load_yaml as load

    return load(path)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    from lstmkit.train.config import apply_overrides as apply

    return apply(data, overrides)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` on top, section by section (a preset over the space's base)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = _merge(merged[key], value)
        merged[key] = value
    return merged


def bundled_spaces() -> list[str]:
    """The names of the bundled search spaces (``lstmkit/presets/tune-NAME.yaml``); a space
    names the task it searches when its name is not the task's."""
    return sorted(p.stem.removeprefix("tune-") for p in PRESETS.glob("tune-*.yaml"))


def _tune(args: argparse.Namespace, overrides: list[str]) -> int:
    # imported here: optuna and torch take seconds to import, which --help should not pay
    from lstmkit.tasks import get_task
    from lstmkit.tasks.tuning import check_space, run_trial
    from lstmkit.train.tuning import BEST_FILE, STUDY_FILE, TRIALS_FILE, load_space, trial_dir, tune

    default_space = PRESETS / f"tune-{args.task}.yaml"
    if args.space is None and not default_space.is_file():
        raise ValueError(f"no bundled search space for {args.task}; give --space FILE")
    # the bundled space of this name says which task and command it stands for, also when
    # --space gives the ranges
    named = load_space(default_space) if default_space.is_file() else None
    space = load_space(args.space) if args.space else named
    task = get_task(space.task or (named and named.task) or args.task)
    command = space.command or (named and named.command) or f"{task.name} train"
    base = _merge(space.base, load_yaml(args.config) if args.config else {})
    base = apply_overrides(base, overrides)
    check_space(task, space, base)
    out = Path(args.out or f"runs/tune-{args.task}")
    run_command = f"lstmkit {command} --config {out / BEST_FILE}"
    study = tune(
        space,
        functools.partial(run_trial, task, metric=space.metric),
        args.trials,
        out,
        f"tune-{args.task}",
        base,
        seed=args.seed,
        run_command=run_command,
    )
    states = Counter(t.state.name.lower() for t in study.trials)
    counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    print(f"{len(study.trials)} trials in {out / STUDY_FILE} ({counts}); all: {out / TRIALS_FILE}")
    if not states["complete"]:
        print("no trial completed, so there is no best config")
        return 1
    best = study.best_trial
    print(
        f"best {space.metric}: {best.value:.4g} ({space.direction}), trial {best.number} "
        f"in {trial_dir(out, best.number)}"
    )
    for key, value in best.params.items():
        print(f"  {key} = {value:.4g}" if isinstance(value, float) else f"  {key} = {value}")
    print(f"best config: {out / BEST_FILE}\n  train with it: {run_command}")
    return 0


def _plot_log(args: argparse.Namespace, overrides: list[str]) -> int:
    from lstmkit.train.plot import plot_log

    if overrides:
        raise ValueError(f"plot-log takes no config overrides, got {' '.join(overrides)}")
    for path in plot_log(args.dir, args.out, args.smoothing):
        print(path)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    tune = commands.add_parser(
        "tune",
        help="search hyperparameters with Optuna (resumable; writes best.yaml)",
        description="Search a task's hyperparameters with Optuna (TPE sampler, median pruning "
        "after each epoch). The study is kept in OUT/study.db: running again with more --trials "
        "runs only the missing ones. Writes OUT/trials.csv and OUT/best.yaml, a preset to train "
        "with. Base config values can be overridden as --section.key VALUE.",
    )
    tune.add_argument(
        "task",
        choices=sorted({*bundled_spaces(), *TASKS}),
        help="the task to tune (lab-adding: the lab task with the bundled adding-problem space)",
    )
    tune.add_argument(
        "--space",
        metavar="FILE",
        help="search-space YAML (metric, direction, params, base); default: the task's preset "
        "lstmkit/presets/tune-TASK.yaml",
    )
    tune.add_argument(
        "--trials", type=int, required=True, help="finished trials the study should hold"
    )
    tune.add_argument("--out", metavar="DIR", help="study directory (default runs/tune-TASK)")
    tune.add_argument("--seed", type=int, default=0, help="seed of the sampler (default 0)")
    tune.add_argument("--config", metavar="FILE", help="a YAML preset over the space's base config")
    tune.set_defaults(func=_tune)

    plot = commands.add_parser(
        "plot-log",
        help="plot a model directory's training logs as PNG files",
        description="Plot train_log.csv and epoch_log.csv of a model directory: loss, each "
        "metric (train vs val), gradient norm (clipped steps marked) and learning rate.",
    )
    plot.add_argument("dir", metavar="DIR", help="a model directory")
    plot.add_argument("--out", metavar="DIR", help="where to write the PNGs (default DIR/plots)")
    plot.add_argument(
        "--smoothing", type=float, default=0.9, help="weight of the moving average (default 0.9)"
    )
    plot.set_defaults(func=_plot_log)
