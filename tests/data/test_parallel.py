"""Parallel text: the reader's errors and counts, the Multi30k layout, and subword
vocabularies whose decoding gives back the training text exactly."""

from __future__ import annotations

import gzip

import pytest

from lstmkit.data.parallel import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    Subwords,
    find_split,
    normalize,
    read_lines,
    read_parallel,
)
from lstmkit.tasks.translate.task import SAMPLE


def write(path, text: str, gz: bool = False) -> str:
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return str(path)


def test_plain_and_gzip_read_the_same(tmp_path):
    text = "Ein Hund.\nZwei  Katzen \r\n\nDrei Vögel\n"
    plain = read_lines(write(tmp_path / "a.de", text))
    zipped = read_lines(write(tmp_path / "a.de.gz", text, gz=True))
    assert plain == zipped == ["Ein Hund.", "Zwei Katzen", "", "Drei Vögel"]
    assert read_lines(tmp_path / "a.de", raw=True) == [
        "Ein Hund.",
        "Zwei  Katzen ",
        "",
        "Drei Vögel",
    ]
    # no newline at the end: the last line still counts; an empty file has no lines
    assert read_lines(write(tmp_path / "b", "x\ny")) == ["x", "y"]
    assert read_lines(write(tmp_path / "c", "")) == []


def test_normalize_is_nfc():
    decomposed = "Mädchen".replace("ä", "a\u0308")
    assert decomposed != "Mädchen" and normalize(f"  {decomposed}\t ") == "Mädchen"


def test_mismatched_line_counts_name_both(tmp_path):
    src = write(tmp_path / "s.de", "a\nb\nc\n")
    tgt = write(tmp_path / "t.en", "a\nb\n")
    with pytest.raises(ValueError, match=r"s\.de has 3 lines, .*t\.en has 2"):
        read_parallel(src, tgt)


def test_undecodable_bytes_name_file_and_line(tmp_path):
    path = tmp_path / "bad.de"
    path.write_bytes(b"gut\nschlecht \xff\xfe\n")
    with pytest.raises(ValueError, match=r"bad\.de, line 2: not UTF-8"):
        read_lines(path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_lines(tmp_path / "missing.de")


def test_empty_lines_are_kept_and_counted(tmp_path):
    pairs = read_parallel(write(tmp_path / "s", "a\n\nc\n"), write(tmp_path / "t", "x\ny\n\n"))
    assert pairs.source == ["a", "", "c"] and pairs.target == ["x", "y", ""]
    assert pairs.empty == 2 and len(pairs) == 3


def test_find_split_in_the_multi30k_layout(tmp_path):
    write(tmp_path / "train.de.gz", "a\n", gz=True)
    write(tmp_path / "test_2016_flickr.en", "b\n")
    assert find_split(tmp_path, "train", "de").name == "train.de.gz"
    assert find_split(tmp_path, "test", "en").name == "test_2016_flickr.en"
    with pytest.raises(FileNotFoundError, match=r"no val\.fr\.gz or val\.fr .*train\.de\.gz"):
        find_split(tmp_path, "val", "fr")


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_subwords_round_trip_the_training_text(kind):
    lines = read_lines(SAMPLE / "train.de.gz")
    vocab = Subwords.train(lines, kind, 1000)
    assert [vocab.hf.token_to_id(t) for t in ("<pad>", "<unk>", "<s>", "</s>")] == [
        PAD_ID,
        UNK_ID,
        BOS_ID,
        EOS_ID,
    ]
    ids = vocab.encode_batch(lines)
    assert all(i >= 4 for row in ids for i in row)  # nothing reserved, nothing unknown
    assert [vocab.decode(row) for row in ids] == lines
    assert sum(map(len, ids)) < sum(len(line.split()) for line in lines) * 2


def test_subwords_save_load(tmp_path):
    vocab = Subwords.train(["ein Hund läuft", "ein Mann läuft"], "bpe", 40)
    loaded = Subwords.load(vocab.save(tmp_path / "vocab.json"))
    assert (
        loaded.encode("ein Mann") == vocab.encode("ein Mann")
        and loaded.vocab_size == vocab.vocab_size
    )
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not a readable tokenizer"):
        Subwords.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="subword kind must be one of bpe, unigram"):
        Subwords.train(["x"], "word")
