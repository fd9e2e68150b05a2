"""``lstmkit sentiment``: the generic train/evaluate/predict (:mod:`lstmkit.cli.tasks`) with
IMDB's ``--data``, and ``sentiment gates``."""

from __future__ import annotations

import argparse
from typing import Any

from lstmkit.cli.hooks import TaskCLI


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="aclImdb folder or archive (data.path; default: the sample)")


def train_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {"data.path": args.data}


def before_train(args: argparse.Namespace, config: Any) -> None:
    if config.data.path is None:
        print(
            "training on the 6,000-review IMDB sample bundled with lstmkit; give --data PATH "
            "for the full data set"
        )


def print_evaluation(result: dict[str, Any]) -> None:
    from lstmkit.tasks.sentiment.task import format_report

    print(f"{result['split']} split of {result['data']}: {result['n']} reviews")
    print(format_report(result))


def _gates(args: argparse.Namespace, overrides: list[str]) -> int:
    from lstmkit.tasks.sentiment.task import TASK
    from lstmkit.viz.heatmap import gate_heatmap

    if overrides:
        raise ValueError(f"sentiment gates takes no overrides, got {' '.join(overrides)}")
    rnn, x, tokens = TASK.load(args.model).gate_inputs(args.text)
    out = args.out or f"{args.model}/gates"
    title = f"gates of {args.model} (layer {args.layer}, direction {args.direction})"
    for path in gate_heatmap(rnn, x, tokens, out, args.layer, args.direction, title=title):
        print(path)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gates", help="gate heat-map (PNG + HTML) of the LSTM over a text's tokens")
    p.add_argument("--model", required=True, help="a model directory from sentiment train")
    p.add_argument("text", help="the text (a review) to read")
    p.add_argument("--out", help="output path prefix (default MODEL/gates): .png and .html")
    p.add_argument("--layer", type=int, default=0, help="LSTM layer (default 0)")
    p.add_argument("--direction", type=int, default=0, help="0 forward, 1 reverse (default 0)")
    p.set_defaults(func=_gates)


CLI = TaskCLI(
    add_train_flags=add_train_flags,
    train_flags=train_flags,
    before_train=before_train,
    print_evaluation=print_evaluation,
    add_commands=add_commands,
)
