"""Tiny trained model directories for the serving and export tests (a few optimizer steps
each: the tests check plumbing and numbers against the same model, not accuracy).

They train through :func:`lstmkit.tasks.run.train` (what ``lstmkit TASK train`` runs), with
``train.max_steps`` small."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from lstmkit.tasks import get_task, run
from lstmkit.train.config import from_dict

CAT = "the cat sat on the mat.\n" * 12
QUIET = {"progress": False, "tensorboard": False, "seed": 0, "epochs": 1}


def _train(task: str, config: dict[str, Any], out: Path) -> Path:
    t = get_task(task)
    with contextlib.redirect_stdout(io.StringIO()):
        run.train(t, from_dict(t.config_class, config), out, device="cpu")
    return out


def train_sentiment(out: Path, **model: Any) -> Path:
    config = {
        "data": {"max_len": 64, "batch_size": 16, "val_size": 100, "vocab_size": 2000},
        "model": {"embed_size": 16, "hidden_size": 8, **model},
        "train": {**QUIET, "max_steps": 3},
    }
    return _train("sentiment", config, out)


def train_lm(root: Path, **model: Any) -> Path:
    data = root / "cat.txt"
    data.write_text(CAT)
    config = {
        "data": {"path": str(data), "batch_size": 2, "bptt": 8, "eval_batch_size": 1},
        "model": {"embed_size": 8, "hidden_size": 16, "num_layers": 2, **model},
        "train": {**QUIET, "max_steps": 5},
    }
    return _train("lm", config, root / "lm")


_TRAINED: dict[str, Path] = {}  # one training per test session for tests/serve and tests/export


def trained_once(tmp_path_factory: Any) -> dict[str, Path]:
    """The tiny sentiment ("imdb") and lm ("chars") directories, trained on first use."""
    if not _TRAINED:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        root = tmp_path_factory.mktemp("served")
        _TRAINED.update(imdb=train_sentiment(root / "imdb"), chars=train_lm(root))
        torch.set_num_threads(threads)
    return dict(_TRAINED)
