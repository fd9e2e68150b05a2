"""What every task command shares: train flags, config assembly, reading inputs, writing
JSON. Nothing here imports torch, so ``lstmkit --help`` stays fast."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

PRESETS = Path(__file__).resolve().parents[1] / "presets"


def preset_path(name: str) -> Path:
    """The bundled preset ``name`` (``lstmkit/presets/NAME.yaml``)."""
    path = PRESETS / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))
        raise FileNotFoundError(f"no preset named {name!r}; bundled presets: {known}")
    return path


def add_train_arguments(parser: argparse.ArgumentParser, default_out: str) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--preset", metavar="NAME", help="a bundled preset (lstmkit/presets)")
    source.add_argument("--config", metavar="FILE", help="a YAML config file")
    parser.add_argument(
        "--out", default=default_out, help=f"model directory (default {default_out})"
    )
    parser.add_argument("--seed", type=int, help="random seed (train.seed)")
    parser.add_argument(
        "--max-steps", type=int, help="stop after this many steps (train.max_steps)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue exactly from --out's trainer_state/"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a trained model already in --out"
    )
    parser.add_argument("--device", help="auto (default: CUDA when present), cpu, cuda, cuda:N")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def config_from_args(
    args: argparse.Namespace,
    overrides: list[str],
    extra: dict[str, Any],
    defaults: dict[str, Any] | None = None,
) -> dict:
    """``defaults`` < preset/config file < explicit flags (``extra``, ``--seed``, ...) <
    ``--section.key``. Keys are dotted (``data.path``) or top-level (``target``)."""
    from lstmkit.train.config import apply_overrides, load_yaml

    if args.preset:
        data = load_yaml(preset_path(args.preset))
    else:
        data = load_yaml(args.config) if args.config else {}
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for dotted, value in (defaults or {}).items():
        section, _, key = dotted.rpartition(".")
        target = data.setdefault(section, {}) if section else data
        target.setdefault(key, value)
    for dotted, value in extra.items():
        if value is not None:
            section, _, key = dotted.rpartition(".")
            (data.setdefault(section, {}) if section else data)[key] = value
    train = data.setdefault("train", {})
    if args.seed is not None:
        train["seed"] = args.seed
    if args.max_steps is not None:
        train["max_steps"] = args.max_steps
    if args.no_progress:
        train["progress"] = False
    return apply_overrides(data, overrides)


def read_lines(path: str | None) -> list[str]:
    """The non-empty lines of a UTF-8 file (``path``) or of standard input."""
    where = path or "standard input"
    try:
        raw = Path(path).read_bytes() if path else sys.stdin.buffer.read()
    except IsADirectoryError:
        raise ValueError(f"--file {path} is a directory, not a text file") from None
    except FileNotFoundError:
        raise FileNotFoundError(f"--file {path}: no such file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{where} is not UTF-8 text (byte {e.start})") from None
    return [line.rstrip("\r") for line in text.split("\n") if line.strip()]


def write_json(path: str | None, data: Any) -> None:
    """Write ``data`` to ``path`` (a ``--json FILE`` flag) as JSON, if given; NaN and
    infinity are refused rather than written as non-standard JSON."""
    if path:
        from lstmkit.train.checkpoint import write_json as write_atomic

        try:
            json.dumps(data, allow_nan=False)
        except ValueError:
            raise ValueError(
                f"the numbers hold NaN or infinity (non-finite weights?); {path} not written"
            ) from None
        write_atomic(path, data)
