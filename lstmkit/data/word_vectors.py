"""Word vectors learned from unlabelled text (word2vec, Mikolov et al. 2013) to start an
embedding table from: the cheapest way for a classifier to use text it has no labels for.

:func:`word2vec_embeddings` trains gensim's ``Word2Vec`` on texts encoded by a
:class:`lstmkit.data.tokenizer.Tokenizer` (so every token is in the model's vocabulary, and
row ``i`` of the result is token id ``i``), then scales the table to the standard deviation
of ``torch.nn.Embedding``'s own initialisation (1), so dropout, weight decay and adversarial
perturbations sized for a fresh table still fit. Tokens word2vec never saw keep a random
row of that scale; the padding row is zero, as ``nn.Embedding(padding_idx=...)`` has it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lstmkit.config import check_positive
from lstmkit.data.tokenizer import Tokenizer


@dataclass
class Word2VecConfig:
    """gensim ``Word2Vec`` settings (its names; its defaults except ``epochs``).

    Args:
        epochs: passes over the texts. Default: 5
        window: context words on each side. Default: 5
        negative: negative samples per positive one. Default: 5
        skipgram: skip-gram (slower, better for rare words) instead of CBOW. Default: False
        min_count: tokens seen fewer times get no vector (a random row). Default: 2
        workers: training threads; 0 for ``torch.get_num_threads()``. With more than one the
            vectors differ from run to run (gensim's threads race). Default: 0
    """

    epochs: int = 5
    window: int = 5
    negative: int = 5
    skipgram: bool = False
    min_count: int = 2
    workers: int = 0

    def __post_init__(self) -> None:
        check_positive(self, "word2vec", ("epochs", "window", "negative", "min_count"))
        if self.workers < 0:
            raise ValueError(f"word2vec.workers must be >= 0, got {self.workers!r}")


def word2vec_embeddings(
    tokenizer: Tokenizer,
    texts: list[str],
    dim: int,
    config: Word2VecConfig | None = None,
    seed: int = 0,
) -> tuple[Tensor, int]:
    """An embedding table (V, dim) for ``tokenizer``'s ids learned from ``texts``, and how
    many of its rows word2vec learned (the others are random, the padding row zero)."""
    from gensim.models import Word2Vec  # imported here: only this path needs gensim

    config = config or Word2VecConfig()
    if not texts:
        raise ValueError("word2vec needs texts to learn from; got none")
    names = [str(i) for i in range(tokenizer.vocab_size)]  # one string object per id
    sentences = [[names[i] for i in row] for row in tokenizer.encode_batch(texts) if row]
    model = Word2Vec(
        sentences,
        vector_size=dim,
        window=config.window,
        min_count=config.min_count,
        sg=int(config.skipgram),
        negative=config.negative,
        epochs=config.epochs,
        seed=seed,
        workers=config.workers or torch.get_num_threads(),
    )
    learned = [int(k) for k in model.wv.index_to_key]
    vectors = torch.as_tensor(model.wv.vectors, dtype=torch.float32)
    vectors = vectors / vectors.std()  # nn.Embedding's N(0, 1) scale
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn(tokenizer.vocab_size, dim, generator=generator)
    table[torch.tensor(learned, dtype=torch.long)] = vectors
    table[tokenizer.pad_id] = 0.0
    return table, len(learned)
