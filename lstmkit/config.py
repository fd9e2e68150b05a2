"""Typed, validated configuration: dataclasses from dicts, YAML presets and CLI overrides.

Every config is a dataclass validated in ``__post_init__`` (:func:`check_positive` and
:func:`check_fraction` name the section and the field of a bad value). :func:`from_dict`
builds one from plain data (YAML, JSON, CLI), converting strings to the field's type and
rejecting unknown keys; :func:`apply_overrides` turns ``--train.lr 3e-4`` style pairs into
nested dicts. Nothing here knows a particular config: training's is
:class:`lstmkit.train.TrainConfig`, the data loaders', the models' and the server's are
their own; all of them build on this module, which imports nothing of lstmkit.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

C = TypeVar("C")

MAX_NUMBER = 2**31 - 1  # no config value is larger; bigger ones are typos or attacks


def check_positive(config: Any, section: str, names: tuple[str, ...]) -> None:
    """Each of ``names`` of ``config`` must be > 0 (``section.name`` in the message)."""
    for name in names:
        value = getattr(config, name)
        if not value > 0:  # NaN fails too
            raise ValueError(f"{section}.{name} must be positive, got {value!r}")


def check_fraction(config: Any, section: str, names: tuple[str, ...]) -> None:
    """Each of ``names`` of ``config`` (a probability such as a dropout) must be in [0, 1)."""
    for name in names:
        value = getattr(config, name)
        if not 0 <= value < 1:
            raise ValueError(f"{section}.{name} must be in [0, 1), got {value!r}")


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Convert ``value`` (from YAML, JSON or the command line) to the type ``hint``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        is_none = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_none and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where)
            except (TypeError, ValueError) as e:
                errors.append(str(e))
        raise ValueError(errors[0] if errors else f"{where}: cannot use {value!r}")
    if origin is tuple:
        items = yaml.safe_load(value) if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ValueError(f"{where} must be a list, got {value!r}")
        args = typing.get_args(hint)
        return tuple(_convert(v, args[0], where) for v in items)
    if origin is dict or hint in (dict, Any):
        return value
    if origin is list:
        items = yaml.safe_load(value) if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ValueError(f"{where} must be a list, got {value!r}")
        return [_convert(v, typing.get_args(hint)[0], where) for v in items]
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else from_dict(hint, value, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(f"{where} must be true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ValueError(f"{where} must be a number, got {value!r}")
        if isinstance(value, str):
            try:
                value = float(value) if hint is float else int(value)
            except ValueError:
                raise ValueError(f"{where} must be {hint.__name__}, got {value!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number, got {value!r}")
        if abs(value) > MAX_NUMBER:
            raise ValueError(f"{where} must be at most {MAX_NUMBER:.0e} in size, got {value!r}")
        if hint is int and isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{where} must be an integer, got {value!r}")
            value = int(value)
        if not isinstance(value, (int, float)):
            raise ValueError(f"{where} must be {hint.__name__}, got {value!r}")
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[C], data: dict[str, Any] | None, where: str = "") -> C:
    """Build the dataclass ``cls`` from ``data``; unknown keys and bad values are errors."""
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"{where or cls.__name__} must be a mapping, got {data!r}")
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - set(names))
    prefix = f"{where}." if where else ""
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(prefix + k for k in unknown)} for {cls.__name__}; "
            f"known: {', '.join(names)}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k, v in data.items():
        factory = fields[k].default_factory
        if isinstance(v, dict) and dataclasses.is_dataclass(hints[k]) and callable(factory):
            # a section given in part keeps the defaults its parent chose for the rest
            data[k] = {**to_dict(factory()), **v}
    kwargs = {k: _convert(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass as plain JSON/YAML-friendly data (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(config))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML preset as a dict (an empty file is an empty dict)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: a config must be a mapping of sections, got {type(data).__name__}"
        )
    return data


def apply_overrides(data: dict[str, Any], pairs: list[str]) -> dict[str, Any]:
    """Apply ``["--train.lr", "3e-4", "--model.hidden_size=64", "--patience", "5"]`` to
    nested ``data`` (a key without a dot is a top-level one, such as ``patience``).

    Values stay strings here; :func:`from_dict` converts them to each field's type and
    names any key the config does not have.
    """
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    items = list(pairs)
    while items:
        key = items.pop(0)
        if not key.startswith("--") or len(key) == 2:
            raise ValueError(
                f"unrecognised argument {key!r}; overrides look like --section.key VALUE"
            )
        key = key[2:]
        if "=" in key:
            key, value = key.split("=", 1)
        elif items and not items[0].startswith("--"):
            value = items.pop(0)
        else:
            raise ValueError(f"override --{key} needs a value")
        *sections, name = key.split(".")
        node = data
        for depth, section in enumerate(sections):  # --model.encoder.layer_norm: two levels
            child = node.get(section, {})
            if not isinstance(child, dict):
                where = ".".join(sections[: depth + 1])
                raise ValueError(f"cannot override {key}: {where} is not a section")
            node[section] = dict(child)  # a copy: the caller's data stays as it was
            node = node[section]
        node[name] = value
    return data
