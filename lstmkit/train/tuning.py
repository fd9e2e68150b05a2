"""Hyperparameter search with Optuna: a YAML search space, a resumable study, readable results.

A search space names the metric to optimise (an epoch log key such as ``val_solved``), its
direction, and the parameters to sample, as dotted config keys::

    metric: val_solved
    direction: maximize
    params:
      train.lr: {type: float, low: 1.0e-3, high: 3.0e-2, log: true}
      model.hidden_size: {type: int, low: 16, high: 64, step: 16}
      model.cell: {type: categorical, choices: [lstm, gru]}
    base:                      # optional: config values every trial uses
      train: {epochs: 4}

:func:`tune` samples each trial's parameters into a copy of the config dict and calls a
task's objective, which trains and returns the metric (reporting it after every epoch through
:class:`PruningCallback`, so that a trial worse than the median of earlier ones at the same
epoch is stopped). The study lives in ``storage_dir/study.db`` (SQLite), so running the same
search again resumes it. After every trial ``trials.csv`` lists all trials and ``best.yaml``
holds the best config as a preset to train with.

This module knows no task: a task supplies the objective (see
:mod:`lstmkit.tasks.tuning`).
"""

from __future__ import annotations

import copy
import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, Trial, TrialState

from lstmkit.train.callbacks import Callback
from lstmkit.train.config import from_dict, load_yaml

STUDY_FILE = "study.db"
TRIALS_FILE = "trials.csv"
BEST_FILE = "best.yaml"
PARAM_TYPES = ("float", "int", "categorical")
DIRECTIONS = ("maximize", "minimize")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

Report = Callable[[int, float], None]
"""``report(epoch, value)``: hands an epoch's metric to the search; raises
``optuna.TrialPruned`` when the trial should stop."""

Objective = Callable[[dict[str, Any], Path, Report], float]
"""``objective(config_dict, trial_dir, report)``: trains one trial and returns its metric."""


@dataclass
class ParamSpec:
    """One searched value: a ``float`` or ``int`` in ``[low, high]`` (optionally on a ``log``
    scale, or on a grid of ``step``), or one of the ``choices`` of a ``categorical``."""

    type: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: list[Any] | None = None

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise ValueError(f"type must be one of {', '.join(PARAM_TYPES)}; got {self.type!r}")
        if self.type == "categorical":
            self._check_categorical()
        else:
            self._check_range()

    def _check_categorical(self) -> None:
        given = [k for k in ("low", "high", "step") if getattr(self, k) is not None]
        if self.log:
            given.append("log")
        if given:
            raise ValueError(f"a categorical parameter takes choices, not {', '.join(given)}")
        if not self.choices:
            raise ValueError("a categorical parameter needs a non-empty list of choices")
        for choice in self.choices:
            if choice is not None and not isinstance(choice, (bool, int, float, str)):
                raise ValueError(
                    f"choices must be numbers, strings, booleans or null (what Optuna can "
                    f"store), got {choice!r}"
                )

    def _check_range(self) -> None:
        if self.choices is not None:
            raise ValueError(f"choices do not apply to a {self.type} parameter (use categorical)")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter needs low and high")
        if self.type == "int":
            for name in ("low", "high", "step"):
                value = getattr(self, name)
                if value is not None and not float(value).is_integer():
                    raise ValueError(f"{name} of an int parameter must be whole, got {value!r}")
                if value is not None:
                    setattr(self, name, int(value))
        if not self.low < self.high:
            raise ValueError(f"low must be below high, got low={self.low!r}, high={self.high!r}")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step must be positive, got {self.step!r}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale parameter needs low > 0, got {self.low!r}")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined (Optuna samples one or the other)")

    def suggest(self, trial: Trial, name: str) -> Any:
        """Sample this parameter for ``trial`` under ``name`` (its dotted config key)."""
        if self.type == "categorical":
            return trial.suggest_categorical(name, self.choices)
        if self.type == "int":
            return trial.suggest_int(name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def extremes(self) -> list[Any]:
        """The values that bound the space: ``low`` and ``high``, or every choice. A task can
        check them against its config before spending time on trials."""
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]


@dataclass
class SearchSpace:
    """What to search (see the module docstring); validated when built.

    Args:
        metric: the epoch log key to optimise, e.g. ``val_solved`` or ``val_loss``.
        direction: ``maximize`` or ``minimize``.
        params: dotted config key (``section.key``) -> :class:`ParamSpec` (or its dict).
        base: config sections every trial uses (below ``--config`` and overrides).
            Default: empty
        prune_after_trials: complete trials needed before any trial is pruned (Optuna's
            ``n_startup_trials``). Default: 2
        prune_from_epoch: the first epoch at which a trial can be pruned (Optuna's
            ``n_warmup_steps``; epochs count from 1). Default: 2
        task: the registered task the space searches. Default: the name it is tuned as
        command: the ``lstmkit`` command that trains the best config. Default: ``TASK train``
    """

    metric: str
    direction: str
    params: dict[str, ParamSpec]
    base: dict[str, Any] = field(default_factory=dict)
    prune_after_trials: int = 2
    prune_from_epoch: int = 2
    task: str | None = None
    command: str | None = None

    def __post_init__(self) -> None:
        if not self.metric:
            raise ValueError("metric must name an epoch log key, e.g. val_loss")
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"direction must be one of {', '.join(DIRECTIONS)}; got {self.direction!r}"
            )
        if not isinstance(self.params, dict) or not self.params:
            raise ValueError("params must map at least one dotted config key to its range")
        self.params = {key: _param(key, spec) for key, spec in self.params.items()}
        if not isinstance(self.base, dict):
            raise ValueError(f"base must be a mapping of config sections, got {self.base!r}")
        if self.prune_after_trials < 0:
            raise ValueError(f"prune_after_trials must be >= 0, got {self.prune_after_trials}")
        if self.prune_from_epoch < 1:
            raise ValueError(f"prune_from_epoch must be >= 1, got {self.prune_from_epoch}")


def _param(key: str, spec: Any) -> ParamSpec:
    if not isinstance(key, str) or not all(key.split(".")):
        raise ValueError(f"params: {key!r} is not a dotted config key like train.lr")
    if isinstance(spec, ParamSpec):
        return spec
    if not isinstance(spec, dict):
        raise ValueError(f"params.{key} must be a mapping like {{type: float, ...}}, got {spec!r}")
    if "type" not in spec:
        raise ValueError(f"params.{key} needs a type ({', '.join(PARAM_TYPES)})")
    try:
        return from_dict(ParamSpec, spec)
    except ValueError as e:
        raise ValueError(f"params.{key}: {e}") from None


def load_space(source: str | Path | dict[str, Any]) -> SearchSpace:
    """A :class:`SearchSpace` from a YAML file or a dict; errors name the offending key."""
    data = load_yaml(source) if isinstance(source, (str, Path)) else dict(source)
    missing = [k for k in ("metric", "direction", "params") if k not in data]
    if missing:
        raise ValueError(f"the search space needs {', '.join(missing)}")
    return from_dict(SearchSpace, data)


def with_params(config: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``config`` with each dotted key of ``params`` set in its section."""
    result = copy.deepcopy(config)
    for dotted, value in params.items():
        *sections, name = dotted.split(".")
        node = result
        for section in sections:
            node = node.setdefault(section, {})
            if not isinstance(node, dict):
                raise ValueError(f"cannot set {dotted}: {section} is not a config section")
        node[name] = value
    return result


class PruningCallback(Callback):
    """Report ``monitor`` to the search after every epoch, so that a trial the pruner judges
    hopeless stops early: ``report`` raises ``optuna.TrialPruned``, which ends ``fit``."""

    def __init__(self, report: Report, monitor: str) -> None:
        self.report = report
        self.monitor = monitor

    def on_epoch_end(self, trainer, logs: dict[str, Any]) -> None:
        if self.monitor not in logs:
            raise ValueError(
                f"the searched metric {self.monitor!r} is not in the epoch logs "
                f"(they have: {', '.join(sorted(logs))})"
            )
        self.report(int(logs["epoch"]), float(logs[self.monitor]))


def trial_dir(storage_dir: str | Path, number: int) -> Path:
    """Where trial ``number`` trains (a model directory)."""
    return Path(storage_dir) / f"trial-{number:04d}"


def tune(
    space: SearchSpace,
    objective_fn: Objective,
    n_trials: int,
    storage_dir: str | Path,
    study_name: str,
    base_config: dict[str, Any],
    *,
    seed: int = 0,
    storage: str | None = None,
    run_command: str | None = None,
) -> optuna.Study:
    """Search ``space`` until the study holds ``n_trials`` finished (complete or pruned)
    trials; returns the study.

    Each trial trains in ``storage_dir/trial-NNNN`` with ``base_config`` plus its sampled
    params. The study is kept in ``storage`` (an Optuna storage URL; default SQLite at
    ``storage_dir/study.db``) and loaded when it exists, so an interrupted or extended
    search runs only the missing trials. ``seed`` seeds the TPE sampler; ``run_command``
    goes into ``best.yaml``'s header as the way to train with it.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be positive, got {n_trials}")
    storage_dir = Path(storage_dir)
    storage_dir.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(storage_dir / STUDY_FILE).resolve()}"
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=space.prune_after_trials, n_warmup_steps=space.prune_from_epoch
    )
    study = optuna.create_study(
        storage=url,
        study_name=study_name,
        direction=space.direction,
        pruner=pruner,
        load_if_exists=True,
    )
    _check_same_search(study, space, storage_dir)
    # A resumed search continues the seed sequence: reseeding with ``seed`` alone would make
    # its first new trials repeat the params of the first trials (TPE starts at random).
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    remaining = n_trials - len(study.get_trials(deepcopy=False, states=FINISHED))

    def objective(trial: Trial) -> float:
        params = {key: spec.suggest(trial, key) for key, spec in space.params.items()}

        def report(epoch: int, value: float) -> None:
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"{space.metric} {value:.4g} at epoch {epoch}")

        config = with_params(base_config, params)
        return objective_fn(config, trial_dir(storage_dir, trial.number), report)

    def write(study: optuna.Study, trial: FrozenTrial | None = None) -> None:
        write_results(study, space, storage_dir, base_config, run_command)

    try:
        if remaining > 0:
            study.optimize(objective, n_trials=remaining, callbacks=[write])
    finally:  # also after a failed or interrupted trial: the files show what happened
        write(study)
    return study


def _check_same_search(study: optuna.Study, space: SearchSpace, storage_dir: Path) -> None:
    """A resumed study must optimise the same metric in the same direction."""
    metric = study.user_attrs.get("metric")
    direction = study.direction.name.lower()
    if metric is None:
        study.set_user_attr("metric", space.metric)
    elif (metric, direction) != (space.metric, space.direction):
        raise ValueError(
            f"{storage_dir} holds a study that {direction}s {metric}, not one that "
            f"{space.direction}s {space.metric}; choose another output directory"
        )


def write_results(
    study: optuna.Study,
    space: SearchSpace,
    storage_dir: str | Path,
    base_config: dict[str, Any],
    run_command: str | None = None,
) -> None:
    """Write ``trials.csv`` (every trial) and, once a trial completed, ``best.yaml``."""
    storage_dir = Path(storage_dir)
    trials = study.get_trials(deepcopy=False)
    keys = list(space.params)
    keys += sorted({k for t in trials for k in t.params if k not in keys})  # older spaces
    with (storage_dir / TRIALS_FILE).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["number", "state", "value", "last_epoch", "seconds", *keys])
        for t in trials:
            seconds = ""
            if t.datetime_start and t.datetime_complete:
                seconds = round((t.datetime_complete - t.datetime_start).total_seconds(), 2)
            writer.writerow(
                [
                    t.number,
                    t.state.name,
                    "" if t.value is None else t.value,
                    "" if t.last_step is None else t.last_step,
                    seconds,
                    *(t.params.get(k, "") for k in keys),
                ]
            )
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        return
    best = study.best_trial
    pruned = sum(t.state == TrialState.PRUNED for t in trials)
    header = (
        f"# Best of {len(complete)} complete trials ({pruned} pruned) of study "
        f"{study.study_name}: {space.metric} = {best.value:.6g} ({space.direction})\n"
        f"# by trial {best.number}, trained in {trial_dir(storage_dir, best.number)}\n"
        f"# how to run: {run_command or 'give this file as --config to the task command'}\n"
    )
    body = yaml.safe_dump(with_params(base_config, best.params), sort_keys=False)
    (storage_dir / BEST_FILE).write_text(header + body, encoding="utf-8")
