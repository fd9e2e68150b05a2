"""Hub-style ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` through
``huggingface_hub``'s :class:`~huggingface_hub.ModelHubMixin`.

:class:`LSTMKitModel` wraps any task's Predictor. ``save_pretrained(folder)`` writes what
loading needs and nothing of the training run: ``config.json``, ``model.safetensors``, the
artifact files (tokenizers, ...), ``results.json``, ``metrics.json`` and the model card
``README.md``; ``from_pretrained`` reads a local folder directly (offline: no network call
is made for a path that exists) or a Hub repository id through ``snapshot_download``;
``push_to_hub`` (the mixin's) uploads the saved folder. Weights are safetensors only, and
loading goes through the task's own checks, so nothing pickled is ever executed.

    >>> model = LSTMKitModel.from_pretrained("runs/imdb-cpu")  # doctest: +SKIP
    >>> model.save_pretrained("hub/imdb-cpu")  # doctest: +SKIP
    >>> LSTMKitModel.from_pretrained("hub/imdb-cpu").predict(["A fine film."])  # doctest: +SKIP
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from huggingface_hub import ModelHubMixin

from lstmkit.tasks.base import Predictor
from lstmkit.tasks.card import CARD_FILE, model_card

# written by training for itself (logs, exact-resume state), not needed to load a model
TRAINING_ONLY = {"train_log.csv", "epoch_log.csv"}


class LSTMKitModel(
    ModelHubMixin,
    library_name="lstmkit",
    tags=["lstm", "lstmkit"],
):
    """A trained lstmkit model (any task) with the Hub's save/load/push methods.

    Args:
        predictor: the task's :class:`~lstmkit.tasks.base.Predictor` (``lstmkit.load``).
    """

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    @property
    def task(self) -> str:
        return self.predictor.task

    def predict(self, inputs: list[Any]) -> list[dict[str, Any]]:
        return self.predictor.predict(inputs)

    def _save_pretrained(self, save_directory: Path) -> None:
        source = self.predictor.model_dir
        for path in sorted(source.iterdir()):
            if path.is_file() and path.name not in TRAINING_ONLY:
                shutil.copy2(path, save_directory / path.name)
        if not (save_directory / CARD_FILE).is_file():  # a directory from before model cards
            (save_directory / CARD_FILE).write_text(model_card(source), encoding="utf-8")

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        device: str | None = "cpu",
        **kwargs: Any,
    ) -> LSTMKitModel:
        from lstmkit.tasks import run

        folder = Path(model_id)
        if not folder.is_dir():  # a Hub repository id
            from huggingface_hub import snapshot_download

            folder = Path(
                snapshot_download(
                    repo_id=model_id,
                    revision=revision,
                    cache_dir=cache_dir,
                    force_download=force_download,
                    local_files_only=local_files_only,
                    token=token,
                    allow_patterns=["*.json", "*.safetensors", "*.md", "*.txt"],
                )
            )
        return cls(run.load(folder, device))


def save_pretrained_dir(model_dir: str | Path, out: str | Path) -> Path:
    """``lstmkit export --format hub``: the Hub folder of a model directory."""
    LSTMKitModel.from_pretrained(str(model_dir)).save_pretrained(out)
    return Path(out)
