"""The language model lives in :mod:`lstmkit.models` (sentiment fine-tunes it too)."""

from lstmkit.models.language_model import LanguageModel, LMModelConfig, State, run_layers

__all__ = ["LMModelConfig", "LanguageModel", "State", "run_layers"]
