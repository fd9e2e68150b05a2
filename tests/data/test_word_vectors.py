"""word2vec embedding tables: row i is token id i, the scale of nn.Embedding, and vectors that
carry the co-occurrence structure of the texts."""

from __future__ import annotations

import random

import pytest
import torch

from lstmkit.data.tokenizer import Tokenizer
from lstmkit.data.word_vectors import Word2VecConfig, word2vec_embeddings

GOOD = ["great", "superb", "wonderful", "moving", "brilliant"]
BAD = ["awful", "boring", "dull", "terrible", "wooden"]


def corpus(n: int = 400, seed: int = 0) -> list[str]:
    """Texts that each use the words of one group only (and 'rare' once in the corpus)."""
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(GOOD if k % 2 else BAD) for _ in range(12)) for k in range(n)]
    return texts + ["rare"]


ONE_THREAD = Word2VecConfig(epochs=10, window=3, workers=1)


@pytest.fixture(scope="module")
def table():
    texts = corpus()
    tok = Tokenizer.train(texts, "word", vocab_size=100, min_frequency=1)
    vectors, learned = word2vec_embeddings(tok, texts, 16, ONE_THREAD, seed=0)
    return tok, vectors, learned


def test_one_row_per_token_id_at_the_scale_of_nn_embedding(table):
    tok, vectors, learned = table
    assert vectors.shape == (tok.vocab_size, 16) and vectors.dtype == torch.float32
    assert learned == 10  # the ten words; 'rare' (once) is under min_count 2, pad and unk unseen
    assert torch.equal(vectors[tok.pad_id], torch.zeros(16))
    rows = torch.tensor([tok.encode(w)[0] for w in GOOD + BAD])
    assert abs(float(vectors[rows].std()) - 1.0) < 1e-5  # learned rows scaled to std 1
    # a token word2vec never learned keeps the seeded N(0, 1) row
    expected = torch.randn(tok.vocab_size, 16, generator=torch.Generator().manual_seed(0))
    rare = tok.encode("rare")[0]
    assert torch.equal(vectors[rare], expected[rare])


def test_words_of_one_context_are_closer_than_words_across(table):
    tok, vectors, _ = table
    unit = torch.nn.functional.normalize(vectors, dim=-1)

    def mean_cos(a: list[str], b: list[str]) -> float:
        ia = [tok.encode(w)[0] for w in a]
        ib = [tok.encode(w)[0] for w in b]
        sims = unit[ia] @ unit[ib].T
        if a is b:  # leave out each word's similarity to itself
            return float((sims.sum() - sims.diag().sum()) / (len(a) * (len(a) - 1)))
        return float(sims.mean())

    within = (mean_cos(GOOD, GOOD) + mean_cos(BAD, BAD)) / 2
    across = mean_cos(GOOD, BAD)
    assert within > across + 0.3, (within, across)


def test_one_thread_is_reproducible_and_the_seed_matters(table):
    tok, vectors, _ = table
    again, _ = word2vec_embeddings(tok, corpus(), 16, ONE_THREAD, seed=0)
    other, _ = word2vec_embeddings(tok, corpus(), 16, ONE_THREAD, seed=1)
    assert torch.equal(again, vectors)
    assert not torch.allclose(other, vectors)


def test_errors():
    tok = Tokenizer.train(corpus(10), "word", vocab_size=50, min_frequency=1)
    with pytest.raises(ValueError, match="word2vec needs texts"):
        word2vec_embeddings(tok, [], 8)
    with pytest.raises(ValueError, match="word2vec.epochs must be positive"):
        Word2VecConfig(epochs=0)
    with pytest.raises(ValueError, match="word2vec.workers must be >= 0"):
        Word2VecConfig(workers=-1)
