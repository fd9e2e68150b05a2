"""``lstmkit`` command line: a thin argparse layer over plain functions."""

from __future__ import annotations

import argparse
import json
import sys

from lstmkit import __version__


def _demo(args: argparse.Namespace) -> int:
    from lstmkit.tasks.demo import run_demo

    result = run_demo(
        T=args.T,
        hidden_size=args.hidden_size,
        max_seconds=args.max_seconds,
        max_steps=args.max_steps,
        seed=args.seed,
        progress=not args.no_progress,
    )
    print(
        f"LSTM solved {result['solved_fraction']:.1%} of {result['test_sequences']} fresh "
        f"adding-problem sequences (T={result['T']}, error < 0.04) after "
        f"{result['train_sequences']:,} training sequences in {result['seconds']} s"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lstmkit",
        description="The LSTM as real software: cells from their gate equations, training, tasks.",
    )
    parser.add_argument("--version", action="version", version=f"lstmkit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="train a small LSTM on the 1997 adding problem and print how much it solved",
        description="Train lstmkit.nn.LSTM on the adding problem of Hochreiter & Schmidhuber "
        "(1997) until a held-out batch is solved or the time budget ends; report the solved "
        "fraction of 2,000 fresh test sequences.",
    )
    demo.add_argument("--T", type=int, default=30, help="minimal sequence length (default 30)")
    demo.add_argument("--hidden-size", type=int, default=32, help="LSTM units (default 32)")
    demo.add_argument("--max-seconds", type=float, default=60.0, help="time budget (default 60)")
    demo.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
