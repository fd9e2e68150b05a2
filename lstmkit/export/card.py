"""Model cards: the ``README.md`` every model directory gets (Mitchell et al. 2019).

A card is written from what the directory holds (``config.json``, ``results.json``, the
weights' header) plus what lstmkit knows of each task (its data, their citation, what the
model is for and where it fails). It has the Hub's YAML header, so a folder pushed with
:mod:`lstmkit.export.hub` shows it as the model page. A task not described here (one added
later) gets a generic card with the same sections.

``lstmkit.tasks.run.train`` writes the card after ``results.json``; the command that made
the model is the ``lstmkit`` command line when training ran from it (:data:`COMMAND`, set by
:func:`lstmkit.cli.main.main`).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CARD_FILE = "README.md"
COMMAND: list[str] | None = None  # the lstmkit command line of this process, when any

LSTM_CITATION = """@article{hochreiter1997lstm,
  title = {Long Short-Term Memory},
  author = {Hochreiter, Sepp and Schmidhuber, J{\\"u}rgen},
  journal = {Neural Computation}, volume = {9}, number = {8}, pages = {1735--1780},
  year = {1997}
}"""


@dataclass(frozen=True)
class TaskCard:
    """What lstmkit knows of a task for its cards."""

    title: str
    pipeline_tag: str | None
    data: str
    citation: str
    intended_use: str
    limits: str
    headline: tuple[str, ...]  # the results.json numbers to show first
    datasets: tuple[str, ...] = ()


CARDS: dict[str, TaskCard] = {
    "sentiment": TaskCard(
        "sentiment classifier for movie reviews",
        "text-classification",
        "The Large Movie Review Dataset v1.0 (IMDB; 50,000 labelled reviews, or the 6,000-review "
        "sample bundled with lstmkit): validation reviews held out by movie from the training "
        "split.",
        """@inproceedings{maas2011imdb,
  title = {Learning Word Vectors for Sentiment Analysis},
  author = {Maas, Andrew L. and Daly, Raymond E. and Pham, Peter T. and Huang, Dan and
            Ng, Andrew Y. and Potts, Christopher},
  booktitle = {ACL}, year = {2011}
}""",
        "Classifying English movie reviews as positive or negative; a baseline and a teaching "
        "model for LSTM classifiers.",
        "Trained on English IMDB movie reviews only: other domains, languages, sarcasm and "
        "mixed reviews are read less reliably; reviews longer than data.max_len tokens keep "
        "their head and tail only. Not for decisions about people.",
        ("accuracy", "f1", "roc_auc", "n"),
        ("imdb",),
    ),
    "lm": TaskCard(
        "language model",
        "text-generation",
        "The text named in the config (e.g. Tiny Shakespeare, 1 MB of Shakespeare's plays); "
        "the last data.val_fraction of it held out for validation.",
        """@misc{karpathy2015charrnn,
  title = {char-rnn}, author = {Karpathy, Andrej}, year = {2015},
  howpublished = {\\url{https://github.com/karpathy/char-rnn}}
}""",
        "Generating text in the style of its training text, scoring text (nats and bits per "
        "character), and pretraining encoders (ULMFiT).",
        "Generates fluent-looking but unreliable text: nothing it writes is checked for truth, "
        "and it reproduces its training text's style and biases.",
        ("bits_per_char", "nats_per_char", "perplexity", "tokens"),
    ),
    "lab": TaskCard(
        "long-time-lag experiment",
        None,
        "Synthetic sequences (the adding, temporal-order and copy problems of Hochreiter & "
        "Schmidhuber 1997 and Arjovsky et al. 2016), generated fresh from a seed; the test "
        "sequences from an unseen seed.",
        LSTM_CITATION,
        "Studying how recurrent models learn long time lags (gradients, gates, chrono "
        "initialisation).",
        "Solves its synthetic problem at the trained length T only; it is not a model of any "
        "real data.",
        ("solved_fraction", "accuracy", "T", "test_sequences"),
    ),
    "forecast": TaskCard(
        "time-series forecaster",
        "time-series-forecasting",
        "The M4 competition's series of one frequency (or the 40-series hourly sample bundled "
        "with lstmkit); the last horizon of every series held out for validation.",
        """@article{makridakis2020m4,
  title = {The M4 Competition: 100,000 time series and 61 forecasting methods},
  author = {Makridakis, Spyros and Spiliotis, Evangelos and Assimakopoulos, Vassilios},
  journal = {International Journal of Forecasting}, volume = {36}, number = {1},
  pages = {54--74}, year = {2020}
}""",
        "Point and quantile forecasts of series like the ones it was trained on, scored as "
        "M4 did (sMAPE, MASE, OWA).",
        "Forecasts only its trained horizon and frequency; series unlike M4's (structural "
        "breaks, other seasonalities, very short histories padded on the left) are forecast "
        "less well; intervals are learned quantiles, not guarantees.",
        ("owa", "smape", "mase", "n"),
        ("m4",),
    ),
    "speech": TaskCard(
        "spoken-digit recogniser",
        "automatic-speech-recognition",
        "The Free Spoken Digit Dataset (recordings 10-49 of each speaker and digit for "
        "training, 5-9 for validation, 0-4 the official test split), isolated or connected "
        "into digit strings.",
        """@misc{jackson2018fsdd,
  title = {Free Spoken Digit Dataset}, author = {Jackson, Zohar and others}, year = {2018},
  howpublished = {\\url{https://github.com/Jakobovski/free-spoken-digit-dataset}}
}""",
        "Recognising English spoken digits 0-9 in clean 8 kHz recordings.",
        "Knows ten words and a handful of speakers: other speakers, accents, noise and any "
        "other word are transcribed unreliably. Not for identifying people.",
        ("accuracy", "wer", "cer", "n"),
        ("fsdd",),
    ),
}


def _generic(task: str) -> TaskCard:
    return TaskCard(
        f"{task} model", None, "The data named in the config (see config.json).", LSTM_CITATION,
        f"The {task} task it was trained for, on data like its training data.",
        "Evaluated only on its validation data (results.json); behaviour on other data is "
        "unmeasured.", (),
    )  # fmt: skip


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
    raw = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    task = raw["task"]
    results_file = model_dir / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    card = CARDS.get(task) or _generic(task)
    scalars = {k: v for k, v in results.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}  # fmt: skip
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
        lines += [f"Scores of the kept weights on the {split} data (`results.json`):", "",
                  "| metric | value |", "|---|---|"]  # fmt: skip
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
    """Write ``model_dir/README.md``; ``command`` defaults to this process's lstmkit command
    line (:data:`COMMAND`)."""
    path = Path(model_dir) / CARD_FILE
    path.write_text(model_card(model_dir, command if command is not None else COMMAND),
                    encoding="utf-8")  # fmt: skip
    return path
