"""Parallel text for translation: line-aligned files and subword vocabularies.

* :func:`read_lines` / :func:`read_parallel`: UTF-8 text files, plain or gzip, one sentence
  a line; the two sides must have the same number of lines (an error names both counts),
  undecodable bytes are an error naming the file and line, and every line is Unicode-NFC
  normalised with its outer whitespace stripped (:func:`normalize`). Empty lines are kept
  (an empty source translates to an empty target) and counted.
* :func:`find_split`: the Multi30k task-1 layout (``train.de.gz``, ``val.en``,
  ``test_2016_flickr.fr.gz``, ...) in a folder.
* :class:`Subwords`: a BPE or Unigram vocabulary (HF ``tokenizers``) with the reserved ids
  ``<pad>`` 0, ``<unk>`` 1, ``<s>`` 2, ``</s>`` 3, whose :meth:`Subwords.decode` gives back
  the normalised training text exactly (SentencePiece's ``Metaspace`` marks the spaces).
"""

from __future__ import annotations

import gzip
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

from lstmkit.data.tokenizer import read_hf

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIALS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)
KINDS = ("bpe", "unigram")
SPLIT_NAMES = {"train": "train", "val": "val", "test": "test_2016_flickr"}


def normalize(line: str) -> str:
    """NFC with the outer whitespace (and a trailing ``\\r``) stripped; inner runs of
    whitespace become one space (the references are scored the same way)."""
    return " ".join(unicodedata.normalize("NFC", line).split())


def read_lines(path: str | Path, raw: bool = False) -> list[str]:
    """The lines of a UTF-8 text file, plain or gzip (by its magic bytes): normalised
    (:func:`normalize`), or with ``raw`` as they are (less a ``\\r`` before the newline)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    with opener(path, "rb") as f:
        try:
            data = f.read()
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: not a readable gzip file ({e})") from None
    return split_lines(data, str(path), raw)


def split_lines(data: bytes, where: str, raw: bool = False) -> list[str]:
    """The lines of UTF-8 ``data`` (from ``where``, named in errors), as :func:`read_lines`."""
    lines = []
    for n, line in enumerate(data.split(b"\n"), 1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(
                f"{where}, line {n}: not UTF-8 text ({e.reason} at byte {e.start})"
            ) from None
        lines.append(text.removesuffix("\r") if raw else normalize(text))
    if data.endswith(b"\n") or not data:
        lines.pop()  # the newline ending the last line (or the empty data's one "line")
    return lines


@dataclass
class Parallel:
    """Aligned ``source`` and ``target`` sentences read from ``paths``; ``empty``: the
    number of pairs whose source or target is empty."""

    source: list[str]
    target: list[str]
    paths: tuple[str, str]

    @property
    def empty(self) -> int:
        return sum(1 for s, t in zip(self.source, self.target) if not s or not t)

    def __len__(self) -> int:
        return len(self.source)


def read_parallel(src: str | Path, tgt: str | Path) -> Parallel:
    """Two line-aligned files as a :class:`Parallel`; different line counts are an error."""
    source, target = read_lines(src), read_lines(tgt)
    if len(source) != len(target):
        raise ValueError(
            f"the parallel files differ in length: {src} has {len(source)} "
            f"lines, {tgt} has {len(target)}"
        )
    if not source:
        raise ValueError(f"{src} and {tgt} hold no sentences")
    return Parallel(source, target, (str(src), str(tgt)))


def find_split(folder: str | Path, split: str, lang: str) -> Path:
    """The file of ``split`` (``train``, ``val``, ``test``: Multi30k's ``test_2016_flickr``,
    or any file stem) in ``lang`` in ``folder``: ``{stem}.{lang}.gz`` or ``{stem}.{lang}``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such data folder: {folder}")
    stem = SPLIT_NAMES.get(split, split)
    for name in (f"{stem}.{lang}.gz", f"{stem}.{lang}"):
        if (folder / name).is_file():
            return folder / name
    have = sorted(p.name for p in folder.iterdir() if p.is_file())
    raise FileNotFoundError(
        f"{folder} has no {stem}.{lang}.gz or {stem}.{lang} (it holds "
        f"{', '.join(have[:12]) or 'no files'})"
    )


class Subwords:
    """A subword vocabulary: ``encode`` a sentence to ids, ``decode`` ids back to text.

    Example::

        >>> sw = Subwords.train(["ein Hund läuft", "ein Mann läuft"], "bpe", 40)
        >>> sw.decode(sw.encode("ein Hund läuft"))
        'ein Hund läuft'
        >>> sw.vocab_size > 4, sw.encode("") == []
        (True, True)
    """

    def __init__(self, hf: HFTokenizer) -> None:
        for i, tok in enumerate(SPECIALS):
            if hf.token_to_id(tok) != i:
                raise ValueError(f"a translation vocabulary needs {tok} at id {i}")
        self.hf = hf

    @classmethod
    def train(cls, texts: Iterable[str], kind: str = "bpe", vocab_size: int = 8000) -> Subwords:
        """Learn a ``kind`` (``bpe`` or ``unigram``) vocabulary of about ``vocab_size``
        tokens from ``texts`` (every character seen stays in the vocabulary)."""
        if kind == "bpe":
            hf = HFTokenizer(models.BPE(unk_token=UNK))
            trainer = trainers.BpeTrainer(
                vocab_size=vocab_size, special_tokens=list(SPECIALS), min_frequency=2
            )
        elif kind == "unigram":
            hf = HFTokenizer(models.Unigram())
            trainer = trainers.UnigramTrainer(
                vocab_size=vocab_size, unk_token=UNK, special_tokens=list(SPECIALS)
            )
        else:
            raise ValueError(f"subword kind must be one of {', '.join(KINDS)}; got {kind!r}")
        hf.normalizer = normalizers.NFC()
        hf.pre_tokenizer = pre_tokenizers.Metaspace()
        hf.decoder = decoders.Metaspace()
        hf.train_from_iterator((t for t in texts if t), trainer)
        if hf.get_vocab_size() <= len(SPECIALS):
            raise ValueError("cannot learn a vocabulary from empty text")
        return cls(hf)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids if text else []

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; the reserved tokens are left out."""
        return self.hf.decode([int(i) for i in ids if i >= len(SPECIALS)])

    def tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.hf.id_to_token(int(i)) for i in ids]

    def save(self, path: str | Path) -> Path:
        self.hf.save(str(path))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Subwords:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no vocabulary file {path}")
        return cls(read_hf(path))
