"""``lstmkit lab ...`` and ``lstmkit demo``: the long-time-lag experiments."""

from __future__ import annotations

import argparse
from typing import Any

from lstmkit.cli.common import add_train_arguments
from lstmkit.cli.hooks import TaskCLI

PROBLEMS = {  # command: (data.problem, default T, help)
    "adding": ("adding", 30, "the adding problem (Hochreiter & Schmidhuber 1997, experiment 4)"),
    "temporal-order": ("temporal_order", 100, "temporal order, task 6a (1997): XX/XY/YX/YY"),
    "copy": ("copy", 100, "copy memory with delay T (Arjovsky et al. 2016)"),
}


def _variant_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The flags given (``lstmkit demo`` has none of them)."""
    flags = {
        "data.T": "T",
        "model.cell": "model",
        "model.hidden_size": "hidden_size",
        "model.zoneout": "zoneout",
        "model.recurrent_dropout": "recurrent_dropout",
        "model.weight_drop": "weight_drop",
        "model.chrono": "chrono",
        "train.max_minutes": "budget_minutes",
        "target": "target",
    }
    values = {key: getattr(args, name, None) for key, name in flags.items()}
    for name in ("layer_norm", "peephole", "coupled"):
        if getattr(args, name, False):
            values[f"model.{name}"] = True
    return values


def add_train_flags(sub: argparse.ArgumentParser, default_T: int | None = None) -> None:
    """The model's variant flags, shared by ``lab train`` and ``lab adding|...``."""
    default = f", default {default_T}" if default_T else ""
    sub.add_argument("--T", type=int, help=f"sequence length / delay (data.T{default})")
    sub.add_argument("--model", choices=["lstm", "gru", "rnn"], help="model.cell (default lstm)")
    sub.add_argument("--hidden-size", type=int, help="model.hidden_size (default 32)")
    for flag in ("layer-norm", "peephole", "coupled"):
        sub.add_argument(f"--{flag}", action="store_true", help=f"LSTM variant: {flag}")
    for flag in ("zoneout", "recurrent-dropout", "weight-drop"):
        sub.add_argument(f"--{flag}", type=float, help=f"LSTM variant probability: {flag}")
    sub.add_argument(
        "--chrono",
        type=int,
        metavar="T_MAX",
        help="LSTM chrono initialisation of the forget/input biases for "
        "dependencies up to T_MAX steps (model.chrono)",
    )
    sub.add_argument(
        "--target", type=float, help="stop once the validation metric reaches it (0.99)"
    )
    sub.add_argument("--budget-minutes", type=float, help="wall-time budget (train.max_minutes)")


def train_flags(args: argparse.Namespace) -> dict[str, Any]:
    return _variant_flags(args)


def _train_problem(args: argparse.Namespace, overrides: list[str]) -> int:
    from lstmkit.cli.tasks import train_task

    problem, default_T, _ = PROBLEMS[args.command_name]
    extra = {**_variant_flags(args), "data.problem": problem}
    train_task("lab", args, overrides, extra, defaults={"data.T": default_T})
    return 0


def _heatmap(args: argparse.Namespace, overrides: list[str]) -> int:
    from lstmkit.nn import LSTM
    from lstmkit.tasks.lab import task
    from lstmkit.viz.heatmap import gate_heatmap

    predictor = task.TASK.load(args.model)
    model, config = predictor.model, predictor.config
    if not isinstance(model.rnn, LSTM):
        raise ValueError(f"{args.model} holds a {config.model.cell} model; gates need an lstm")
    x, labels = task.example(config, args.seed)
    out = args.out or f"{args.model}/gates"
    title = f"{config.data.problem}, T={config.data.T}: gates of {args.model}"
    for path in gate_heatmap(model.rnn, x, labels, out, args.layer, title=title):
        print(path)
    return 0


def _vanishing(args: argparse.Namespace, overrides: list[str]) -> int:
    from lstmkit.tasks.lab import vanishing

    if overrides:
        raise ValueError(f"lab vanishing takes no config overrides, got {' '.join(overrides)}")
    results = vanishing.run(
        args.out,
        tuple(args.T),
        args.hidden_size,
        train_T=args.train_T,
        train_steps=args.train_steps,
        seed=args.seed,
        models=tuple(args.models),
    )
    T = max(args.T)
    lags = [lag for lag in (10, 100, T - 1) if lag < T]
    print(f"||dL/dh_t|| at {', '.join(map(str, lags))} steps back (T={T}), init -> trained:")
    for name, entry in results["models"].items():
        init, trained = entry["init"][T]["dh"][-1], entry["trained"][T]["dh"][-1]
        cells = ", ".join(f"{init[T - 1 - lag]:.1e} -> {trained[T - 1 - lag]:.1e}" for lag in lags)
        print(f"{name:>16}: {cells}")
    print(f"plot: {args.out}/vanishing.png, numbers: {args.out}/results.json, profiles.csv")
    return 0


def _exploding(args: argparse.Namespace, overrides: list[str]) -> int:
    from lstmkit.tasks.lab import exploding

    if overrides:
        raise ValueError(f"lab exploding takes no config overrides, got {' '.join(overrides)}")
    results = exploding.run(
        args.out, args.T, args.spectral_radius, args.hidden_size, args.lr, args.steps, args.seed
    )
    for name, r in results["runs"].items():
        print(
            f"{name:>15}: {r['nonfinite_steps']} non-finite steps, max gradient norm "
            f"{r['max_grad_norm']:.3g}, final loss {r['final_loss']:.4g}"
        )
    print(f"plot: {args.out}/exploding.png, numbers: {args.out}/results.json")
    return 0


def _demo(args: argparse.Namespace, overrides: list[str]) -> int:
    from lstmkit.cli.tasks import train_task

    train_task("lab", args, overrides, {"train.max_minutes": args.max_minutes})
    return 0


def _vanishing_models() -> tuple[str, ...]:
    return ("rnn", "gru", "lstm", "lstm-peephole", "lstm-layer_norm", "lstm-chrono")


def add_demo(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo",
        help="train a small LSTM on the 1997 adding problem (about a minute on 2 CPU cores)",
        description="Train lstmkit.nn.LSTM on the adding problem of Hochreiter & Schmidhuber "
        "(1997), T=30, until 99%% of a validation set is solved; report the solved fraction "
        "of 2,000 fresh test sequences. Same as 'lstmkit lab adding' with its defaults.",
    )
    add_train_arguments(demo, default_out="runs/demo")
    demo.add_argument("--max-minutes", type=float, default=3.0, help="time budget (default 3)")
    demo.set_defaults(func=_demo)


def add_commands(experiments: argparse._SubParsersAction) -> None:
    """The lab's own commands besides the generic train/evaluate/predict."""
    for command, (problem, default_T, description) in PROBLEMS.items():
        sub = experiments.add_parser(
            command,
            help=description,
            description=f"Train a recurrent model on {description}; writes a model directory "
            "and results.json. Any config value can be overridden as --section.key VALUE "
            "(e.g. --train.lr 3e-3).",
        )
        add_train_arguments(sub, default_out=f"runs/lab-{command}")
        add_train_flags(sub, default_T)
        sub.set_defaults(func=_train_problem, problem=problem, command_name=command)
    vanishing = experiments.add_parser(
        "vanishing",
        help="gradient-norm decay over time: Elman RNN vs GRU vs LSTMs, at init and trained",
        description="Measure ||dL/dh_t|| at every step for a loss at the last step, for each "
        "model at initialisation and after a short training on the adding problem; writes "
        "results.json, profiles.csv and vanishing.png (log scale).",
    )
    vanishing.add_argument(
        "--T",
        type=int,
        nargs="+",
        default=[10, 100, 1000],
        help="sequence lengths to measure (default 10 100 1000)",
    )
    vanishing.add_argument(
        "--models",
        nargs="+",
        default=list(_vanishing_models()),
        choices=list(_vanishing_models()),
        help="models to compare",
    )
    vanishing.add_argument("--hidden-size", type=int, default=32)
    vanishing.add_argument("--train-T", type=int, default=50, help="adding-problem T to train on")
    vanishing.add_argument("--train-steps", type=int, default=400)
    vanishing.add_argument("--seed", type=int, default=0)
    vanishing.add_argument("--out", default="runs/lab-vanishing")
    vanishing.set_defaults(func=_vanishing)

    exploding = experiments.add_parser(
        "exploding",
        help="an Elman RNN with exploding gradients trained without and with clipping",
        description="Scale an Elman RNN's recurrent matrix to a spectral radius > 1 and train it "
        "with SGD on the adding problem three times: no clipping, value clipping, norm "
        "clipping. Writes results.json, exploding.png and the three model directories.",
    )
    exploding.add_argument("--T", type=int, default=30, help="adding-problem T (default 30)")
    exploding.add_argument("--spectral-radius", type=float, default=3.0)
    exploding.add_argument("--hidden-size", type=int, default=32)
    exploding.add_argument("--lr", type=float, default=0.05, help="SGD learning rate")
    exploding.add_argument("--steps", type=int, default=300)
    exploding.add_argument("--seed", type=int, default=0)
    exploding.add_argument("--out", default="runs/lab-exploding")
    exploding.set_defaults(func=_exploding)

    heatmap = experiments.add_parser(
        "heatmap",
        help="gate heat-map (PNG and HTML) of a trained lab LSTM over a fresh sequence",
    )
    heatmap.add_argument("--model", required=True, metavar="DIR", help="a lab model directory")
    heatmap.add_argument("--layer", type=int, default=0)
    heatmap.add_argument("--seed", type=int, default=0, help="which fresh sequence to draw")
    heatmap.add_argument("--out", metavar="PATH", help="file stem (default DIR/gates)")
    heatmap.set_defaults(func=_heatmap)


CLI = TaskCLI(add_train_flags=add_train_flags, train_flags=train_flags, add_commands=add_commands)
