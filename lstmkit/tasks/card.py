"""Model cards: the ``README.md`` every model directory gets (Mitchell et al. 2019).

A card is written from what the directory holds (``config.json``, ``results.json``, the
weights' header) plus what the task declares of itself (its ``card``, a
:class:`~lstmkit.tasks.base.TaskCard`: its data, their citation, what the model is for and
where it fails). It has the Hub's YAML header, so a folder pushed with
:mod:`lstmkit.tasks.hub` shows it as the model page. A task that declares no card gets a
generic one with the same sections.

:func:`lstmkit.tasks.run.train` writes the card after ``results.json``, with the command
that made the model when its caller gives one (the CLI gives its command line).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from lstmkit.tasks import TASKS, get_task
from lstmkit.tasks.base import CONFIG_FILE, LSTM_CITATION, ModelDir, TaskCard

CARD_FILE = "README.md"


def _generic(task: str) -> TaskCard:
    return TaskCard(
        f"{task} model",
        None,
        "The data named in the config (see config.json).",
        LSTM_CITATION,
        f"The {task} task it was trained for, on data like its training data.",
        "Evaluated only on its validation data (results.json); behaviour on other data is "
        "unmeasured.",
        (),
    )


def _parameters(model_dir: Path) -> int | None:
    from safetensors import safe_open

    path = model_dir / "model.safetensors"
    if not path.is_file():
        return None
    with safe_open(str(path), "pt") as f:
        total = 0
        for name in f.keys():  # noqa: SIM118 (a safe_open has no __iter__)
            count = 1
            for n in f.get_slice(name).get_shape():
                count *= n
            total += count
    return total


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def model_card(model_dir: str | Path, command: list[str] | str | None = None) -> str:
    """The card (Markdown with the Hub's YAML header) of ``model_dir``."""
    model_dir = Path(model_dir)
    raw = json.loads((model_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    task = raw["task"]
    results = ModelDir(model_dir).results()
    card = getattr(get_task(task), "card", None) if task in TASKS else None
    card = card or _generic(task)
    scalars = {
        k: v for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    shown = [k for k in card.headline if k in scalars]
    shown += [k for k in scalars if k not in shown]
    if isinstance(command, list):
        command = shlex.join(command)
    made_by = command or (
        f"`lstmkit.tasks.run.train` from Python with the config in config.json (the CLI "
        f"equivalent: `lstmkit {task} train --config CONFIG.yaml --out {model_dir.name}`)"
    )
    header = ["---", "library_name: lstmkit", f"tags: [lstm, lstmkit, {task}]"]
    if card.pipeline_tag:
        header.append(f"pipeline_tag: {card.pipeline_tag}")
    if card.datasets:
        header.append(f"datasets: [{', '.join(card.datasets)}]")
    header.append("---")
    params = _parameters(model_dir)
    model = raw.get("config", {}).get("model", {})
    arch = ", ".join(f"{k}={v}" for k, v in model.items() if v not in (None, False, 0, 0.0))
    lines = [
        *header,
        "",
        f"# {model_dir.name}: an lstmkit {card.title}",
        "",
        f"An LSTM {card.title} trained with lstmkit {raw.get('lstmkit', '?')} (task `{task}`).",
        "",
        "## Model",
        "",
        f"- Architecture (config.json's `model` section): {arch or 'the defaults'}",
        f"- Parameters: {params:,}" if params is not None else "- Parameters: unknown",
        "- Weights: `model.safetensors` (no pickled code); everything needed to rebuild the "
        "model is in `config.json`.",
        "",
        "## Data",
        "",
        card.data,
        "",
        "## Metrics",
        "",
    ]
    if shown:
        split = results.get("split", "validation")
        lines += [
            f"Scores of the kept weights on the {split} data (`results.json`):",
            "",
            "| metric | value |",
            "|---|---|",
        ]
        lines += [f"| {k} | {_number(scalars[k])} |" for k in shown]
    else:
        lines.append("No `results.json`: the model has not been scored.")
    lines += [
        "",
        "## How it was made",
        "",
        f"```\n{made_by}\n```" if command else made_by,
        "",
        "## How to use",
        "",
        "```python",
        "import lstmkit",
        "",
        f'model = lstmkit.load("{model_dir.name}")',
        "model.predict([...])  # one JSON-able dict per input",
        "```",
        "",
        f"or `lstmkit predict --model {model_dir.name} INPUT`, or serve it: "
        f"`lstmkit serve --model {model_dir.name}`.",
        "",
        "## Intended use",
        "",
        card.intended_use,
        "",
        "## Limits",
        "",
        card.limits,
        "",
        "## Citation",
        "",
        "```bibtex",
        card.citation,
        "```",
        "",
    ]
    if card.citation != LSTM_CITATION:
        lines += ["The LSTM:", "", "```bibtex", LSTM_CITATION, "```", ""]
    return "\n".join(lines)


def write_card(model_dir: str | Path, command: list[str] | str | None = None) -> Path:
    """Write ``model_dir/README.md`` (``command``: what made the model, when known)."""
    path = Path(model_dir) / CARD_FILE
    path.write_text(model_card(model_dir, command), encoding="utf-8")
    return path
