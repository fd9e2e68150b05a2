"""Arguments every ``train`` command shares, and how they become a config dict."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lstmkit.train.config import apply_overrides, load_yaml

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
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def config_from_args(args: argparse.Namespace, overrides: list[str], extra: dict[str, Any]) -> dict:
    """Preset/config file < explicit flags (``extra``, ``--seed``, ...) < ``--section.key``."""
    if args.preset:
        data = load_yaml(preset_path(args.preset))
    else:
        data = load_yaml(args.config) if args.config else {}
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for dotted, value in extra.items():
        if value is not None:
            section, key = dotted.split(".")
            data.setdefault(section, {})[key] = value
    train = data.setdefault("train", {})
    if args.seed is not None:
        train["seed"] = args.seed
    if args.max_steps is not None:
        train["max_steps"] = args.max_steps
    if args.no_progress:
        train["progress"] = False
    return apply_overrides(data, overrides)


def write_json(path: str | None, data: Any) -> None:
    """Write ``data`` to ``path`` (a ``--json FILE`` flag) as indented JSON, if given."""
    if path:
        with open(path, "w") as f:
            json.dump(data, f, indent=2)
