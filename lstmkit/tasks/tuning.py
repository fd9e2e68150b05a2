"""Hyperparameter search for any task: the objective :func:`lstmkit.train.tuning.tune` calls
for each trial, and a check of a search space against the task's config.

Kept here so that :mod:`lstmkit.train` stays task-agnostic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lstmkit.tasks import run
from lstmkit.train.checkpoint import METRICS_FILE, read_json
from lstmkit.train.config import from_dict
from lstmkit.train.tuning import PruningCallback, Report, SearchSpace, with_params


def check_space(task: Any, space: SearchSpace, base_config: dict[str, Any]) -> None:
    """Build the config at every bound and choice of every param, so that a misspelt key or
    an invalid value is an error now rather than in a trial minutes into the search."""
    from_dict(task.config_class, base_config)
    for key, spec in space.params.items():
        for value in spec.extremes():
            from_dict(task.config_class, with_params(base_config, {key: value}))


def run_trial(
    task: Any, config: dict[str, Any], trial_dir: Path, report: Report, *, metric: str
) -> float:
    """Train one trial in ``trial_dir``, reporting ``metric`` after every epoch (so that the
    pruner can stop it), and return the metric of the last epoch."""
    run.train(
        task,
        from_dict(task.config_class, config),
        trial_dir,
        overwrite=True,
        callbacks=[PruningCallback(report, metric)],
    )
    final = read_json(Path(trial_dir) / METRICS_FILE)
    if metric not in final:
        raise ValueError(
            f"{metric!r} is not in the last epoch's logs of {trial_dir} "
            f"(they have: {', '.join(sorted(k for k in final if k != 'history'))})"
        )
    return float(final[metric])
