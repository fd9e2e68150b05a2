"""``lm generate``'s prompt escapes keep non-ASCII text, and a tiny temperature samples the
greedy continuation instead of overflowing to NaN."""

import torch

from lstmkit.cli.lm import unescape
from lstmkit.data.tokenizer import Tokenizer
from lstmkit.models import LanguageModel, LMModelConfig
from lstmkit.tasks.lm.generate import generate


def test_escapes_keep_non_ascii():
    assert unescape("a\u00d7b\\nc\u2192\\t") == "a\u00d7b\nc\u2192\t"


def test_a_tiny_temperature_is_greedy():
    tok = Tokenizer.train(["abcabcabd"], "char")
    torch.manual_seed(0)
    model = LanguageModel(tok.vocab_size, LMModelConfig(8, 8, 1))
    greedy = "".join(generate(model, tok, "ab", 12, temperature=0))
    tiny = "".join(generate(model, tok, "ab", 12, temperature=1e-45, seed=3))
    assert tiny == greedy and len(greedy) == 12
