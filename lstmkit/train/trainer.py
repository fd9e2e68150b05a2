"""The training loop: fit, evaluate and predict for any task, read top to bottom.

A task supplies the model, the batches and one function::

    step_fn(model, batch, state) -> StepOutput(loss, size, metrics, state)

``loss`` is the batch's mean loss (a scalar tensor), ``size`` what it averages over (epoch
means are weighted by it), ``metrics`` batch means of the task's metrics, and ``state``
anything to carry into the next batch: a stateful sequence model (truncated BPTT) returns
its final hidden state and receives it, detached, with the next batch; ``None`` at the start
of every epoch and of every evaluation.

Data is any re-iterable of batches (a DataLoader). If it, or its sampler, has
``set_epoch(epoch)`` it is called before each epoch; exact resume needs the order of batches
to depend only on the epoch (see :func:`lstmkit.train.distributed.loader`); under DDP each
process reads its share of every global batch (:class:`lstmkit.train.distributed.ShardedBatches`).
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from lstmkit.train import distributed
from lstmkit.train.callbacks import Callback, ModelCheckpoint
from lstmkit.train.checkpoint import (
    METRICS_FILE,
    STATE_DIR,
    load_trainer_state,
    save_trainer_state,
    seed_everything,
    set_rng_state,
    write_json,
)
from lstmkit.train.config import TrainConfig, to_dict
from lstmkit.train.ema import EMA_FILE, WeightAverage
from lstmkit.train.logging import CSVLogger, TensorBoardLogger, WandbLogger, tensorboard_available
from lstmkit.train.optim import build_optimizer, build_schedulers
from lstmkit.train.precision import check_precision, resolve_precision


class StepOutput(NamedTuple):
    """What a task's ``step_fn`` returns for one batch (see the module docstring)."""

    loss: Tensor
    size: int = 1
    metrics: dict[str, float] = {}
    state: Any = None


StepFn = Callable[[nn.Module, Any, Any], StepOutput]


@dataclass
class History:
    """Keras-like history: ``history["val_loss"]`` is the list of per-epoch values.

    ``epochs`` covers the whole run (resumed runs included); ``steps`` the steps of this
    ``fit`` call (``train_log.csv`` has every step of the run).
    """

    epochs: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)

    def __getitem__(self, key: str) -> list[Any]:
        return [row[key] for row in self.epochs if key in row]


def detach(state: Any) -> Any:
    """Detach a (nested tuple of) tensor(s): truncated BPTT stops gradients here."""
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach(s) for s in state)
    return state


def global_grad_norm(params: Sequence[Tensor]) -> Tensor:
    """The 2-norm of all gradients together, as ``clip_grad_norm_`` computes it."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def _set_epoch(data: Any, epoch: int) -> None:
    for obj in (data, getattr(data, "sampler", None), getattr(data, "batch_sampler", None)):
        if hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
            return


class _Epoch:
    """Running sums of one epoch: weighted means, clipping and gradient-norm statistics."""

    def __init__(self, saved: dict[str, Any] | None = None) -> None:
        saved = saved or {}
        self.sums: dict[str, float] = saved.get("sums", {})
        self.size: float = saved.get("size", 0.0)
        self.norms: list[float] = saved.get("norms", [])
        self.clipped: int = saved.get("clipped", 0)
        self.skipped: int = saved.get("skipped", 0)

    def add(self, values: dict[str, float], size: int) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value * size
        self.size += size

    def means(self, device: torch.device) -> dict[str, float]:
        keys = sorted(self.sums)
        totals = distributed.all_reduce_sum([self.sums[k] for k in keys] + [self.size], device)
        return {k: v / max(totals[-1], 1e-12) for k, v in zip(keys, totals[:-1])}

    def state(self) -> dict[str, Any]:
        return dict(
            sums=self.sums,
            size=self.size,
            norms=self.norms,
            clipped=self.clipped,
            skipped=self.skipped,
        )


class _Budget:
    """Training time against ``max_minutes``, counting the time of earlier (resumed) calls;
    ``fraction`` drives a time-based schedule."""

    def __init__(self, clock: Callable[[], float], max_minutes: float | None) -> None:
        self.clock, self.seconds = clock, None if max_minutes is None else 60.0 * max_minutes
        self.before, self.start = 0.0, clock()

    def restart(self) -> None:
        self.start = self.clock()

    def elapsed(self) -> float:
        return self.before + self.clock() - self.start

    def fraction(self) -> float:
        return 0.0 if self.seconds is None else min(1.0, self.elapsed() / self.seconds)

    def spent_up(self) -> bool:
        return self.seconds is not None and self.elapsed() > self.seconds


@dataclass
class _Run:
    """The state of one ``fit`` call that its phases (restore, epochs) share."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedulers: dict[str, Any]
    params: list[Tensor]
    device: torch.device
    steps_per_epoch: int | None
    train_model: nn.Module | None = None  # the model, or its DDP wrapper
    callbacks: list[Callback] = field(default_factory=list)
    history: History = field(default_factory=History)
    step_in_epoch: int = 0
    epoch_sums: dict[str, Any] | None = None
    carry: Any = None
    saved_rng: tuple | None = None
    start: float = 0.0
    budget: _Budget | None = None
    ema: WeightAverage | None = None  # train.ema's average of the weights


class Trainer:
    """Fits a model with a task's ``step_fn``; see the module docstring for the contract.

    Args:
        config: a :class:`TrainConfig`.
        step_fn: ``(model, batch, state) -> StepOutput``.
        predict_fn: ``(model, batch) -> Tensor`` for :meth:`predict`. Default: ``None``
        callbacks: extra :class:`Callback` objects (a CSV logger is always added when
            ``out_dir`` is set, TensorBoard when installed, W&B when configured).
        out_dir: the model directory to write; ``None`` writes nothing.
        run_config: the whole configuration (model, task, train sections) the loggers record
            as the run's (W&B). Default: only the train section. The model directory's
            ``config.json`` is its owner's to write (:class:`lstmkit.tasks.base.ModelDir`).
    """

    def __init__(
        self,
        config: TrainConfig,
        step_fn: StepFn,
        *,
        predict_fn: Callable[[nn.Module, Any], Tensor] | None = None,
        callbacks: Sequence[Callback] = (),
        out_dir: str | Path | None = None,
        run_config: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.clock = clock
        self.step_fn = step_fn
        self.predict_fn = predict_fn
        self.callbacks = list(callbacks)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.run_config = run_config or {"train": to_dict(config)}
        self.dist = distributed.info()
        self.is_main = self.dist.is_main
        self.model: nn.Module | None = None
        self.stop_training = False
        self.resumed = False
        self.global_step = 0
        self.epoch = 0  # epochs completed
        self._nonfinite_run = 0  # consecutive steps with non-finite gradients
        self.precision: str | None = None  # fp32 or bf16, train.precision resolved on a device

    # -- public API -------------------------------------------------------------------------

    def fit(
        self,
        model: nn.Module,
        train_data: Iterable,
        val_data: Iterable | None = None,
        *,
        param_groups: list[dict] | None = None,
        resume: bool = False,
    ) -> History:
        """Train ``model``; returns the :class:`History`. ``resume`` continues exactly from
        ``out_dir/trainer_state`` (weights, optimizer, schedule, RNG, data position)."""
        cfg = self.config
        seed_everything(cfg.seed)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True)
        device = next(model.parameters()).device
        check_precision(cfg.precision, device)
        if cfg.precision == "auto" and self.is_main:
            print(f"precision auto: {self._precision(device)} on this {device.type.upper()}")
        steps_per_epoch = len(train_data) if hasattr(train_data, "__len__") else None
        horizon = steps_per_epoch * cfg.epochs if steps_per_epoch is not None else cfg.max_steps
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = build_optimizer(cfg, param_groups if param_groups is not None else params)
        budget = _Budget(self.clock, cfg.max_minutes)
        schedulers = build_schedulers(cfg, optimizer, horizon, budget.fraction)
        run = _Run(model, optimizer, schedulers, params, device, steps_per_epoch, budget=budget)
        if cfg.ema is not None:
            run.ema = WeightAverage(model, cfg.ema)
        self.global_step, self.epoch, self._nonfinite_run, self.resumed = 0, 0, 0, False
        if resume:
            self._restore(run)
        self.model = model
        run.train_model = model
        if self.dist.world_size > 1:
            run.train_model = nn.parallel.DistributedDataParallel(model)
        run.callbacks = self._all_callbacks()
        if self.out_dir is not None and self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        for callback in run.callbacks:
            callback.on_train_begin(self)

        run.start = time.monotonic()
        run.budget.restart()
        stop_reason = None
        if cfg.max_steps is not None and self.global_step >= cfg.max_steps:
            stop_reason = f"max_steps={cfg.max_steps}"
        self.stop_training = False
        while self.epoch < cfg.epochs and stop_reason is None:
            sums, stop_reason = self._run_epoch(run, train_data)
            if stop_reason is not None and (
                steps_per_epoch is None or run.step_in_epoch < steps_per_epoch
            ):
                # stopped inside the epoch: save where we are, without an epoch summary
                self._save_state(run, sums)
                if cfg.schedule_by == "time" and run.budget.spent_up():
                    self._end_partial_epoch(run, sums, val_data)
                break
            self._end_epoch(run, sums, val_data)
            if self.stop_training:
                stop_reason = "callback"

        if run.ema is not None:  # the model ends with the averaged weights (as Keras's use_ema)
            run.ema.apply(model)
        final = dict(run.history.epochs[-1]) if run.history.epochs else {}
        final.update(global_step=self.global_step, stopped_by=stop_reason or "epochs")
        for callback in run.callbacks:
            callback.on_train_end(self, final)
        if self.out_dir is not None and self.is_main:
            write_json(
                self.out_dir / METRICS_FILE,
                {**final, "clip_norm": cfg.clip_norm, "history": run.history.epochs},
            )
        return run.history

    def _restore(self, run: _Run) -> None:
        """Load ``out_dir/trainer_state`` into the run; the RNG states are applied later, at
        the point of the data stream where they were saved."""
        if self.out_dir is None:
            raise ValueError("resume needs an out_dir holding trainer_state/")
        progress, run.carry, rng, rng_tensors = load_trainer_state(
            self.out_dir, run.model, run.optimizer, run.schedulers, run.device
        )
        self.global_step, self.epoch = progress["global_step"], progress["epoch"]
        self._nonfinite_run = progress["nonfinite_run"]
        run.step_in_epoch, run.epoch_sums = progress["step_in_epoch"], progress["epoch_sums"]
        run.history = History(epochs=progress["history"])
        run.budget.before = progress.get("elapsed", 0.0)  # training time of earlier calls
        if run.ema is not None:
            ema_file = self.out_dir / STATE_DIR / EMA_FILE
            if not ema_file.is_file():
                raise ValueError(
                    f"cannot resume with train.ema: {ema_file.parent} has no weight average "
                    "(the run was trained without train.ema)"
                )
            run.ema.load(ema_file)
        for callback, state in zip(self.callbacks, progress["callbacks"]):
            callback.load_state_dict(state)
        run.saved_rng = (rng, rng_tensors)
        self.resumed = True

    def _run_epoch(self, run: _Run, train_data: Iterable) -> tuple[_Epoch, str | None]:
        """The optimizer steps of one epoch (from where a resumed run was); returns the
        epoch's sums and why training must stop (``None``: it goes on)."""
        cfg, epoch = self.config, self.epoch
        if run.saved_rng is not None and run.step_in_epoch == 0:  # saved between epochs
            set_rng_state(*run.saved_rng)
            run.saved_rng = None
        _set_epoch(train_data, epoch)
        batches = iter(train_data)
        for _ in range(run.step_in_epoch):  # fast-forward to where the saved run was
            next(batches)
        if run.saved_rng is not None:  # saved mid-epoch, after these batches
            set_rng_state(*run.saved_rng)
            run.saved_rng = None
        else:
            run.carry = None
        sums = _Epoch(run.epoch_sums)
        run.epoch_sums = None
        for callback in run.callbacks:
            callback.on_epoch_begin(self, epoch)
        bar = tqdm(
            total=run.steps_per_epoch,
            initial=run.step_in_epoch,
            unit="step",
            leave=False,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            file=sys.stdout,
            dynamic_ncols=True,
            disable=not (cfg.progress and self.is_main and sys.stdout.isatty()),
        )
        run.model.train()
        stop_reason = None
        for batch in batches:
            logs, run.carry = self._train_step(run, batch)
            self.global_step += 1
            run.step_in_epoch += 1
            logs = {"step": self.global_step, "epoch": epoch + 1, **logs}
            sums.add({"loss": logs["loss"], **logs["metrics"]}, logs["size"])
            sums.norms.append(logs["grad_norm"])
            sums.clipped += logs["clipped"]
            sums.skipped += logs["skipped"]
            row = {k: v for k, v in logs.items() if k not in ("metrics", "size")}
            row = {**row, **logs["metrics"]}
            run.history.steps.append(row)
            bar.update()
            bar.set_postfix(
                loss=f"{row['loss']:.4g}",
                lr=f"{row['lr']:.2e}",
                **{k: f"{v:.4g}" for k, v in logs["metrics"].items()},
            )
            for callback in run.callbacks:
                callback.on_step_end(self, row)
            if cfg.max_steps is not None and self.global_step >= cfg.max_steps:
                stop_reason = f"max_steps={cfg.max_steps}"
            elif run.budget.spent_up():
                stop_reason = f"max_minutes={cfg.max_minutes}"
            if stop_reason is not None:
                break
            if cfg.checkpoint_every and self.global_step % cfg.checkpoint_every == 0:
                self._save_state(run, sums)
        bar.close()
        return sums, stop_reason

    def _end_epoch(self, run: _Run, sums: _Epoch, val_data: Iterable | None) -> None:
        """Validation, the plateau schedule, the callbacks, the summary line and the state."""
        logs = self._validate(run, sums, val_data)
        if self.is_main:
            tqdm.write(_summary(logs, self.config.epochs), file=sys.stdout)
        self.epoch += 1
        run.step_in_epoch = 0
        self._save_state(run, _Epoch())

    def _end_partial_epoch(self, run: _Run, sums: _Epoch, val_data: Iterable | None) -> None:
        """A time-based schedule ended at the deadline inside an epoch: its final weights
        are validated as a last, partial epoch, so that a checkpoint can keep them. The
        trainer state was saved before, so a resumed run does not see this epoch."""
        if val_data is None or run.step_in_epoch == 0:
            return
        logs = self._validate(run, sums, val_data)
        if self.is_main:
            steps = f"{run.step_in_epoch}" + (
                f" of {run.steps_per_epoch}" if run.steps_per_epoch is not None else ""
            )
            tqdm.write(
                _summary(logs, self.config.epochs) + f" (partial: {steps} steps, deadline)",
                file=sys.stdout,
            )

    def _validate(self, run: _Run, sums: _Epoch, val_data: Iterable | None) -> dict[str, Any]:
        """The epoch's logs with validation scores, after the plateau schedule and the
        callbacks have seen them."""
        logs = self._epoch_logs(self.epoch, sums, run.optimizer, run.device, run.start)
        # with train.ema, validation and the callbacks (checkpoints) see the averaged weights
        averaged = run.ema.applied(run.model) if run.ema is not None else contextlib.nullcontext()
        with averaged:
            if val_data is not None:
                scores = self.evaluate(run.model, val_data)
                logs.update({f"val_{k}": v for k, v in scores.items()})
            if run.schedulers["plateau"] is not None:
                run.schedulers["plateau"].step(self._monitored(logs))
            run.history.epochs.append(logs)
            for callback in run.callbacks:
                callback.on_epoch_end(self, logs)
        return logs

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: Iterable) -> dict[str, float]:
        """Mean loss and metrics over ``data`` (all processes together), in eval mode."""
        was_training = model.training
        model.eval()
        sums = _Epoch()
        device = next(model.parameters()).device
        state = None
        for batch in data:
            with self._autocast(device):
                out = self.step_fn(model, batch, state)
            state = out.state
            sums.add({"loss": float(out.loss), **out.metrics}, out.size)
        model.train(was_training)
        return sums.means(device)

    @torch.no_grad()
    def predict(self, model: nn.Module, data: Iterable) -> list[Tensor]:
        """``predict_fn(model, batch)`` for every batch, in eval mode."""
        if self.predict_fn is None:
            raise ValueError("predict needs a predict_fn (give one to the Trainer)")
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        outputs = []
        for batch in data:
            with self._autocast(device):
                outputs.append(self.predict_fn(model, batch))
        model.train(was_training)
        return outputs

    # -- one optimizer step --------------------------------------------------------------------

    def _train_step(self, run: _Run, batch: Any) -> tuple[dict[str, Any], Any]:
        cfg = self.config
        optimizer, schedulers, params = run.optimizer, run.schedulers, run.params
        anomaly = (
            torch.autograd.detect_anomaly() if cfg.detect_anomaly else contextlib.nullcontext()
        )
        with anomaly:
            with self._autocast(run.device):
                out = self.step_fn(run.train_model, batch, run.carry)
            optimizer.zero_grad(set_to_none=True)
            loss = out.loss
            if self.dist.world_size > 1:
                # DDP averages gradients over processes; weighting each process's mean by its
                # share of the global batch makes that the global batch's mean, also when the
                # shares differ in size
                total = distributed.all_reduce_sum([float(out.size)], run.device)[0]
                loss = loss * (out.size * self.dist.world_size / total)
            loss.backward()
        norm = float(global_grad_norm(params))  # before any clipping
        skipped = not math.isfinite(norm)
        clipped = False
        lr = optimizer.param_groups[-1]["lr"]
        if skipped:
            self._nonfinite_run += 1
            if self._nonfinite_run >= cfg.max_nonfinite_steps:
                raise RuntimeError(
                    f"training stopped at step {self.global_step + 1}: {self._nonfinite_run} "
                    "consecutive steps had non-finite gradients "
                    f"(loss {float(out.loss.detach())}); "
                    "lower the learning rate, clip harder or set detect_anomaly"
                )
            optimizer.zero_grad(set_to_none=True)
        else:
            self._nonfinite_run = 0
            if cfg.clip_value is not None:
                torch.nn.utils.clip_grad_value_(params, cfg.clip_value)
            if cfg.clip_norm is not None:
                current = norm if cfg.clip_value is None else float(global_grad_norm(params))
                if current > cfg.clip_norm:  # same coefficient as clip_grad_norm_
                    clipped = True
                    coef = cfg.clip_norm / (current + 1e-6)
                    for p in params:
                        if p.grad is not None:
                            p.grad.mul_(coef)
            optimizer.step()
            if run.ema is not None:
                run.ema.update(run.model)
        if schedulers["step"] is not None:
            schedulers["step"].step()
        logs = {
            "loss": float(out.loss.detach()),
            "lr": lr,
            "grad_norm": norm,
            "clipped": int(clipped),
            "skipped": int(skipped),
        }
        return {**logs, "metrics": dict(out.metrics), "size": out.size}, detach(out.state)

    def _autocast(self, device: torch.device):
        return torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=self._precision(device) == "bf16"
        )

    def _precision(self, device: torch.device) -> str:
        if self.precision is None:  # evaluate() without fit()
            self.precision = resolve_precision(self.config.precision, device)
        return self.precision

    # -- bookkeeping ---------------------------------------------------------------------------

    def _all_callbacks(self) -> list[Callback]:
        loggers: list[Callback] = []
        if self.out_dir is not None and self.is_main:
            loggers.append(CSVLogger(self.out_dir))
            if self.config.tensorboard and tensorboard_available():
                loggers.append(TensorBoardLogger(self.out_dir))
            if self.config.wandb:
                loggers.append(
                    WandbLogger(self.out_dir, self.config.wandb_project, self.run_config)
                )
        weights: list[Callback] = []
        if self.out_dir is not None and not any(
            isinstance(c, ModelCheckpoint) for c in self.callbacks
        ):
            weights.append(ModelCheckpoint(monitor=None))  # the last weights
        return loggers + self.callbacks + weights

    def _monitored(self, logs: dict[str, Any]) -> float:
        if self.config.monitor not in logs:
            raise ValueError(
                f"schedule 'plateau' monitors {self.config.monitor!r}, which the epoch logs "
                f"do not have ({', '.join(sorted(logs))}); give validation data or set monitor"
            )
        return float(logs[self.config.monitor])

    def _epoch_logs(self, epoch, sums: _Epoch, optimizer, device, start) -> dict[str, Any]:
        logs: dict[str, Any] = {"epoch": epoch + 1, **sums.means(device)}
        norms = np.asarray(sums.norms if sums.norms else [math.nan])
        finite = norms[np.isfinite(norms)]
        steps = max(len(sums.norms), 1)
        logs.update(
            lr=optimizer.param_groups[-1]["lr"],
            clip_rate=sums.clipped / steps,
            nonfinite_steps=sums.skipped,
            grad_norm_p50=float(np.percentile(finite, 50)) if finite.size else math.nan,
            grad_norm_p90=float(np.percentile(finite, 90)) if finite.size else math.nan,
            grad_norm_max=float(finite.max()) if finite.size else math.nan,
            seconds=round(time.monotonic() - start, 2),
        )
        return logs

    def _save_state(self, run: _Run, sums: _Epoch) -> None:
        if self.out_dir is None:
            return
        if self.is_main:
            progress = {
                "global_step": self.global_step,
                "epoch": self.epoch,
                "step_in_epoch": run.step_in_epoch,
                "nonfinite_run": self._nonfinite_run,
                "epoch_sums": sums.state(),
                "history": run.history.epochs,
                "callbacks": [c.state_dict() for c in self.callbacks],
                "elapsed": run.budget.elapsed(),
            }
            extra = {EMA_FILE: run.ema.save} if run.ema is not None else {}
            state = (run.model, run.optimizer, run.schedulers, progress, run.carry)
            save_trainer_state(self.out_dir, *state, extra)
        distributed.barrier()


def _summary(logs: dict[str, Any], epochs: int) -> str:
    skip = {"epoch", "lr", "clip_rate", "nonfinite_steps", "seconds"}
    parts = [f"{k} {v:.4g}" for k, v in logs.items() if k not in skip and not k.startswith("grad_")]
    return (
        f"epoch {logs['epoch']}/{epochs}: "
        + ", ".join(parts)
        + f", lr {logs['lr']:.3g}, clipped {logs['clip_rate']:.0%}"
        + f", grad-norm p50 {logs['grad_norm_p50']:.3g} p90 {logs['grad_norm_p90']:.3g}"
        + (
            f", {logs['nonfinite_steps']} non-finite steps skipped"
            if logs["nonfinite_steps"]
            else ""
        )
        + f", {logs['seconds']:.1f}s"
    )
