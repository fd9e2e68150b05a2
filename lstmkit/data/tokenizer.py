"""Tokenizers built on HF ``tokenizers`` and saved as ``tokenizer.json``.

Three kinds, all trained on the training text only:

* ``char``: one token per Unicode character (a ``WordLevel`` model over the characters
  seen, with ``<unk>`` for any other), the classic char-rnn vocabulary.
* ``bpe``: byte-pair encoding (Sennrich et al. 2016) over whitespace-marked words (the
  ``Metaspace`` scheme of SentencePiece, so spaces and newlines survive decoding).
* ``word``: a word-level vocabulary of the most frequent words (lower-cased, punctuation
  split off), the usual choice for a classifier trained from scratch.

``<pad>`` is id 0 and ``<unk>`` id 1 in every kind, so padded batches and unknown tokens
mean the same thing across models.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

PAD, UNK = "<pad>", "<unk>"
KINDS = ("char", "bpe", "word")
TOKENIZER_FILE = "tokenizer.json"


class Tokenizer:
    """A trained tokenizer: ``encode`` text to ids, ``decode`` ids to text, ``save``/``load``.

    Build one with :meth:`train` (or :meth:`load` a ``tokenizer.json``).

    Example::

        >>> tok = Tokenizer.train(["to be or not to be"], "char")
        >>> tok.encode("to be")
        [8, 6, 2, 3, 4]
        >>> tok.decode(tok.encode("not to be"))
        'not to be'
        >>> tok.vocab_size, tok.pad_id, tok.unk_id
        (9, 0, 1)
    """

    def __init__(self, hf: HFTokenizer, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"tokenizer kind must be one of {', '.join(KINDS)}; got {kind!r}")
        self.hf, self.kind = hf, kind
        self.pad_id, self.unk_id = hf.token_to_id(PAD), hf.token_to_id(UNK)

    @classmethod
    def train(
        cls, texts: Iterable[str], kind: str, vocab_size: int = 8000, min_frequency: int = 2
    ) -> Tokenizer:
        """Learn a ``kind`` vocabulary from ``texts``; ``vocab_size`` and ``min_frequency``
        bound ``bpe`` and ``word`` (``char`` keeps every character seen)."""
        if kind == "char":
            chars = Counter()
            for text in texts:
                chars.update(text)
            if not chars:
                raise ValueError("cannot train a tokenizer on empty text")
            vocab = {PAD: 0, UNK: 1}
            for ch in sorted(chars):
                vocab[ch] = len(vocab)
            hf = HFTokenizer(models.WordLevel(vocab, unk_token=UNK))
            hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
            hf.decoder = decoders.Fuse()
            return cls(hf, kind)
        if kind == "bpe":
            hf = HFTokenizer(models.BPE(unk_token=UNK))
            hf.pre_tokenizer = pre_tokenizers.Metaspace()
            hf.decoder = decoders.Metaspace()
            trainer = trainers.BpeTrainer(
                vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD, UNK]
            )
        elif kind == "word":
            hf = HFTokenizer(models.WordLevel(unk_token=UNK))
            hf.normalizer = normalizers.Lowercase()
            hf.pre_tokenizer = pre_tokenizers.Whitespace()
            hf.decoder = decoders.WordPiece(prefix="##")  # joins words with single spaces
            trainer = trainers.WordLevelTrainer(
                vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD, UNK]
            )
        else:
            raise ValueError(f"tokenizer kind must be one of {', '.join(KINDS)}; got {kind!r}")
        hf.train_from_iterator(texts, trainer)
        if hf.get_vocab_size() <= 2:
            raise ValueError("cannot train a tokenizer on empty text")
        return cls(hf, kind)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(texts)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=self.kind != "char")

    def unknown(self, text: str) -> list[str]:
        """The characters of ``text`` a ``char`` tokenizer does not know (else ``[]``)."""
        if self.kind != "char":
            return []
        vocab = self.hf.get_vocab()
        return sorted({ch for ch in text if ch not in vocab})

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / TOKENIZER_FILE
        self.hf.save(str(path))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Tokenizer:
        path = Path(directory)
        path = path / TOKENIZER_FILE if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"no {TOKENIZER_FILE} at {path}")
        hf = read_hf(path)
        model = hf.model
        if isinstance(model, models.BPE):
            kind = "bpe"
        elif isinstance(hf.normalizer, normalizers.Lowercase):
            kind = "word"
        else:
            kind = "char"
        return cls(hf, kind)


def read_hf(path: str | Path) -> HFTokenizer:
    """An HF ``tokenizers`` file, or a ValueError naming it (the library raises a bare
    Exception for a malformed file)."""
    try:
        return HFTokenizer.from_file(str(path))
    except Exception as e:
        raise ValueError(f"{path}: not a readable tokenizer ({e})") from None
