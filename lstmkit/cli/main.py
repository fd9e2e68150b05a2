"""``lstmkit`` command line: a thin argparse layer over plain functions."""

from __future__ import annotations

import argparse
import sys

from lstmkit import __version__
from lstmkit.cli import lab, lm, sentiment, tools


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lstmkit",
        description="The LSTM as real software: cells from their gate equations, training, tasks.",
    )
    parser.add_argument("--version", action="version", version=f"lstmkit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    lab.add_commands(commands)
    lm.add_commands(commands)
    sentiment.add_commands(commands)
    tools.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, overrides = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if overrides and not all(o.startswith("--") and "." in o.split("=")[0] for o in overrides[::2]):
        parser.error(f"unrecognized arguments: {' '.join(overrides)}")
    try:
        return args.func(args, overrides)
    except (ValueError, FileNotFoundError) as e:
        print(f"lstmkit: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
