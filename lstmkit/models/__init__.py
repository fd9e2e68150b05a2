"""Models shared by several tasks (a task never imports another task).

:class:`LanguageModel` is the AWD-LSTM language model that ``lm`` trains and that
``sentiment`` fine-tunes as its encoder (ULMFiT).
"""

from lstmkit.models.language_model import LanguageModel, LMModelConfig, run_layers

__all__ = ["LMModelConfig", "LanguageModel", "run_layers"]
