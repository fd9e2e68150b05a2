"""Train and evaluate any task: the plumbing every task shares, written once.

:func:`train` owns the device, the processes (``torch.distributed`` under torchrun), the
trainer, the model directory and ``results.json``; :func:`evaluate` and :func:`load` read a
model directory back. A task supplies only what is its own (see :mod:`lstmkit.tasks.base`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lstmkit.tasks import get_task
from lstmkit.tasks.base import (
    Built,
    ModelDir,
    ModelDirError,
    Predictor,
    RunContext,
    model_dir_config,
    read_model_dir,
)
from lstmkit.tasks.card import write_card
from lstmkit.train import Callback, Trainer, distributed, to_dict
from lstmkit.train.checkpoint import METRICS_FILE, MODEL_FILE, STATE_DIR, load_weights
from lstmkit.train.precision import check_precision

DEVICES = ("auto", "cpu", "cuda")


def choose_device(name: str | None = None) -> torch.device:
    """``auto``/``None``: CUDA when present (this process's GPU under torchrun), else CPU."""
    name = name or "auto"
    if name not in DEVICES and not name.startswith("cuda:"):
        raise ValueError(f"device must be one of {', '.join(DEVICES)} or cuda:N; got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA device")
    if name == "cuda":
        return torch.device("cuda", distributed.info().local_rank)
    return torch.device(name)


def _differences(stored: dict[str, Any], given: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(stored) | set(given)):
        a, b = stored.get(key), given.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} {a!r} there, {b!r} now")
    return out


def check_out_dir(task: Any, config: Any, out_dir: Path, resume: bool, overwrite: bool) -> None:
    """Before any data is read: ``resume`` needs a model directory of this task and model;
    a finished model directory is only replaced with ``overwrite``."""
    if resume:
        stored = read_model_dir(out_dir, task.name)
        if not (out_dir / STATE_DIR).is_dir():
            raise ModelDirError(f"cannot resume: {out_dir} has no {STATE_DIR}/ to continue from")
        diff = _differences(stored["config"].get("model", {}), to_dict(config).get("model", {}))
        if diff:
            raise ModelDirError(
                f"cannot resume {out_dir}: it was trained with another model config "
                f"({'; '.join(f'model.{d}' for d in diff[:3])})"
            )
    elif (out_dir / MODEL_FILE).exists() and not overwrite:
        raise ModelDirError(
            f"{out_dir} already holds a trained model; give --resume to continue it, "
            "--overwrite to replace it, or another --out"
        )


def _fit(task, config, built: Built, out_dir, resume, run_config, extra) -> Trainer:
    """One fit, or the built stages one after the other; the trainer of the last."""
    callbacks = [*task.callbacks(config), *extra]
    stages = built.stages or [None]
    trainer = None
    for k, stage in enumerate(stages):
        last = k == len(stages) - 1
        train_config, groups, stage_dir = config.train, built.param_groups, out_dir
        if stage is not None:
            for p in built.model.parameters():
                p.requires_grad_(False)
            for module in stage.trainable:
                module.requires_grad_(True)
            if stage.epochs is not None:
                train_config = dataclasses.replace(config.train, epochs=stage.epochs)
            groups = stage.param_groups
            stage_dir = out_dir if last else out_dir / "stages" / stage.name
            if not last and (stage_dir / METRICS_FILE).is_file():  # finished before a resume
                load_weights(built.model, stage_dir / MODEL_FILE)
                continue
        trainer = Trainer(
            train_config,
            task.step_fn(config),
            callbacks=callbacks if last else [],
            out_dir=stage_dir,
            run_config=run_config,
        )
        has_state = (stage_dir / STATE_DIR).is_dir()
        trainer.fit(
            built.model,
            built.train_data,
            built.val_data,
            param_groups=groups,
            resume=resume and has_state,
        )
    return trainer


def train(
    task: Any,
    config: Any,
    out_dir: str | Path,
    resume: bool = False,
    *,
    device: str | None = None,
    overwrite: bool = False,
    callbacks: Sequence[Callback] = (),
    command: list[str] | str | None = None,
) -> dict[str, Any]:
    """Train ``task`` (a task object or its registered name) with ``config``; write the model
    directory ``out_dir`` and its ``results.json`` (the task's scores of the kept weights,
    the steps and the wall time). ``callbacks`` are added to the task's own (e.g. a pruning
    callback during tuning); ``command`` is what the model card says made the model (the
    CLI passes its command line). Returns the results."""
    start = time.monotonic()
    task = get_task(task) if isinstance(task, str) else task
    out_dir = Path(out_dir)
    check_out_dir(task, config, out_dir, resume, overwrite)
    dist = distributed.setup()
    if dist.world_size > 1 and not getattr(task, "shards", True):
        raise ValueError(f"the {task.name} task trains in one process (no torchrun)")
    run = RunContext(out_dir, resume, choose_device(device), dist.rank, dist.world_size)
    check_precision(config.train.precision, run.device)  # before any data is read
    created = dist.is_main and not out_dir.exists()
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    distributed.barrier()
    torch.manual_seed(config.train.seed)  # the same initial weights in every process
    try:
        built = task.build(config, run)
    except BaseException:
        if created and not any(out_dir.iterdir()):  # unreadable data leaves no empty out_dir
            out_dir.rmdir()
        raise
    built.model.to(run.device)
    run_config = model_dir_config(task.name, to_dict(config), built.artifacts)
    model_dir = ModelDir(out_dir)
    if dist.is_main:  # before the first step: an interrupted run can be resumed
        model_dir.write_config(run_config)
    trainer = _fit(task, config, built, out_dir, resume, run_config, list(callbacks))
    distributed.barrier()
    load_weights(built.model, out_dir / MODEL_FILE)  # the kept (best or last) weights
    built.model.eval()
    with torch.no_grad():
        scores = task.score(built.model, built.score_data)
    results = {
        "task": task.name,
        **scores,
        **built.facts,
        **{name: n * trainer.global_step for name, n in built.per_step.items()},
        "steps": trainer.global_step,
        "seconds": round(time.monotonic() - start, 1),
        "device": _device_name(run.device),
    }
    if dist.is_main:
        model_dir.write_results(results)
        write_card(model_dir.path, command)  # README.md: the model card
    return results


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def load(model_dir: str | Path, device: str | None = None) -> Predictor:
    """The :class:`Predictor` of any model directory (its task read from ``config.json``)."""
    task = get_task(read_model_dir(model_dir)["task"])
    return task.load(model_dir, choose_device(device))


def evaluate(
    model_dir: str | Path,
    data: str | None = None,
    split: str | None = None,
    *,
    task: Any = None,
    device: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """The task's scores of a saved model on ``split`` of ``data`` (each task states what
    its splits and its default data are). ``task`` (a name or object) checks the directory
    is of that task."""
    if isinstance(task, str):
        task = get_task(task)
    raw = read_model_dir(model_dir, None if task is None else task.name)
    task = task or get_task(raw["task"])
    predictor = task.load(model_dir, choose_device(device))
    scored = task.eval_data(predictor, data, split, **options)
    with torch.no_grad():
        scores = task.score(predictor.model, scored)
    return {"task": task.name, "model": str(model_dir), **scores}
