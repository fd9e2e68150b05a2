"""``lstmkit`` command line: a thin argparse layer over the task registry.

Every failure the user can fix is one line, ``lstmkit: error: ...``, and exit status 2;
``--debug`` (or ``LSTMKIT_DEBUG=1``) shows the traceback instead. Anything else is a bug
and surfaces as one. A warning is one line too, ``lstmkit: warning: ...`` (no source line).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from lstmkit.cli import deploy, lab, tasks, tools
from lstmkit.version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lstmkit",
        description="The LSTM as real software: cells from their gate equations, training, tasks.",
    )
    parser.add_argument("--version", action="version", version=f"lstmkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    lab.add_demo(commands)
    tasks.add_commands(commands)
    tools.add_commands(commands)
    deploy.add_commands(commands)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that a bad input, file or flag causes (not bugs)."""
    errors: list[type[BaseException]] = [ValueError, OSError]
    for module, name in (("yaml", "YAMLError"), ("safetensors", "SafetensorError")):
        error = getattr(sys.modules.get(module), name, None)
        if error is not None:
            errors.append(error)
    return tuple(errors)


def _overrides_well_formed(overrides: list[str], task: str | None = None) -> bool:
    """What argparse left over is ``--section.key VALUE`` or ``--section.key=VALUE`` pairs
    (a value may start with "-": ``--train.lr -1`` is an override, for the config to judge),
    or, after ``TASK train``, ``--key VALUE`` for a top-level key of the task's config
    (``--patience 5``); anything else is argparse's "unrecognized arguments"."""
    k = 0
    while k < len(overrides):
        key = overrides[k]
        name = key.split("=")[0][2:]
        if not key.startswith("--") or ("." not in name and name not in _top_level(task)):
            return False
        k += 1 if "=" in key else 2
    return True


def _top_level(task: str | None) -> set[str]:
    """The scalar top-level keys of ``task``'s config (its sections take ``--section.key``)."""
    if task is None:
        return set()
    import dataclasses
    import typing

    from lstmkit.tasks import get_task

    cls = get_task(task).config_class  # its field types: the config is built once, by train
    types = typing.get_type_hints(cls)
    return {f.name for f in dataclasses.fields(cls) if not dataclasses.is_dataclass(types[f.name])}


def format_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    """A warning as the command line shows it (``warnings.formatwarning`` while a command
    runs): ``lstmkit: warning: <message>``, one line, without Python's file, line number
    and source line."""
    return f"lstmkit: warning: {' '.join(str(message).split())}\n"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, overrides = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    train = args.func.__name__ == "_train"  # only train reads a config
    if not _overrides_well_formed(overrides, getattr(args, "task_name", None) if train else None):
        parser.error(f"unrecognized arguments: {' '.join(overrides)}")
    debug = args.debug or os.environ.get("LSTMKIT_DEBUG") == "1"
    args.argv = ["lstmkit", *(sys.argv[1:] if argv is None else argv)]  # for model cards
    previous = warnings.formatwarning
    warnings.formatwarning = format_warning  # every warning a command shows: one line
    try:
        return args.func(args, overrides)
    except KeyboardInterrupt:
        print("lstmkit: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as e:
        if debug:
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"lstmkit: error: {message}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = previous


if __name__ == "__main__":
    sys.exit(main())
