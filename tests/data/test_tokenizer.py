"""Tokenizers round-trip text, keep <pad>=0 and <unk>=1, save/load exactly; read_text's errors."""

from __future__ import annotations

import re

import pytest

from lstmkit.data.text import read_text
from lstmkit.data.tokenizer import Tokenizer

TEXT = "the cat sat on the mat.\nthe dog sat on the log.\n" * 5


@pytest.fixture(scope="module")
def toks() -> dict[str, Tokenizer]:
    return {
        "char": Tokenizer.train([TEXT], "char"),
        "bpe": Tokenizer.train([TEXT], "bpe", vocab_size=60, min_frequency=2),
        "word": Tokenizer.train([TEXT], "word", vocab_size=60, min_frequency=1),
    }


def test_char_ids_are_the_sorted_characters_after_pad_and_unk():
    tok = Tokenizer.train(["to be\nor not"], "char")
    assert tok.kind == "char"
    assert (tok.pad_id, tok.unk_id, tok.vocab_size) == (0, 1, 10)
    # sorted characters: "\n"=2 " "=3 b=4 e=5 n=6 o=7 r=8 t=9
    assert tok.encode("to be\nor not") == [9, 7, 3, 4, 5, 2, 7, 8, 3, 6, 7, 9]
    assert tok.encode_batch(["tot", "\n \n"]) == [[9, 7, 9], [2, 3, 2]]
    assert tok.decode([9, 7, 3, 4, 5, 2]) == "to be\n"


@pytest.mark.parametrize("text", ["to be\nor not", "  not\n\n  be ", "\n", " "])
def test_char_round_trip_keeps_every_space_and_newline(text):
    tok = Tokenizer.train(["to be\nor not"], "char")
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert tok.decode(ids) == text


def test_char_unknown_characters_become_unk_and_decode_as_its_name():
    tok = Tokenizer.train(["ab"], "char")  # a=2, b=3
    assert tok.encode("abzq") == [2, 3, 1, 1]
    assert tok.decode(tok.encode("abz")) == "ab<unk>"
    assert tok.unknown("abz\tzq") == ["\t", "q", "z"]
    assert tok.unknown("abba") == []


def test_bpe_round_trip(toks):
    tok = toks["bpe"]
    assert (tok.kind, tok.pad_id, tok.unk_id) == ("bpe", 0, 1)
    assert 2 < tok.vocab_size <= 60
    ids = tok.encode(TEXT)
    assert tok.decode(ids) == TEXT
    assert len(ids) < len(TEXT) / 2  # merges: far fewer tokens than characters
    new = "the dog sat on the cat.\nthe mat sat on the log."
    assert tok.decode(tok.encode(new)) == new
    assert tok.unknown("zebra!") == []


def test_word_round_trip_is_lower_cased_with_punctuation_split_off(toks):
    tok = toks["word"]
    assert (tok.kind, tok.pad_id, tok.unk_id) == ("word", 0, 1)
    vocab = tok.hf.get_vocab()
    assert set(vocab) == {"<pad>", "<unk>", "the", "cat", "sat", "on", "mat", "dog", "log", "."}
    ids = tok.encode("The cat sat.")
    assert ids == [vocab["the"], vocab["cat"], vocab["sat"], vocab["."]]
    assert tok.decode(ids) == "the cat sat."  # the decoder's cleanup re-attaches "."
    assert tok.decode(tok.encode("the dog sat on the log")) == "the dog sat on the log"
    assert tok.encode("the zebra") == [vocab["the"], 1]
    assert tok.decode(tok.encode("the zebra")) == "the"  # <unk> is skipped in decoding
    assert tok.unknown("zebra") == []


def test_word_vocab_size_keeps_the_most_frequent_words():
    tok = Tokenizer.train(["a a a a b b b c c d"], "word", vocab_size=4, min_frequency=1)
    assert sorted(tok.hf.get_vocab()) == ["<pad>", "<unk>", "a", "b"]
    assert tok.encode("a b c d") == [tok.hf.token_to_id("a"), tok.hf.token_to_id("b"), 1, 1]


@pytest.mark.parametrize("kind", ["char", "bpe", "word"])
def test_save_load_gives_identical_ids_and_kind(toks, tmp_path, kind):
    tok = toks[kind]
    path = tok.save(tmp_path)
    assert path == tmp_path / "tokenizer.json" and path.is_file()
    probe = "the cat sat on the log.\nthe mat? zebra"
    for loaded in (Tokenizer.load(tmp_path), Tokenizer.load(path)):
        assert loaded.kind == kind
        assert loaded.vocab_size == tok.vocab_size
        assert (loaded.pad_id, loaded.unk_id) == (0, 1)
        assert loaded.encode(probe) == tok.encode(probe)
        assert loaded.decode(tok.encode(probe)) == tok.decode(tok.encode(probe))
        assert loaded.unknown(probe) == tok.unknown(probe)
    assert toks["char"].unknown(probe) == ["?", "b", "r", "z"]


def test_load_without_a_tokenizer_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer.json at"):
        Tokenizer.load(tmp_path)


@pytest.mark.parametrize("kind", ["char", "bpe", "word"])
@pytest.mark.parametrize("texts", [[""], []])
def test_empty_text_is_an_error(kind, texts):
    with pytest.raises(ValueError, match="cannot train a tokenizer on empty text"):
        Tokenizer.train(texts, kind)


def test_bad_kind_is_an_error():
    msg = "tokenizer kind must be one of char, bpe, word; got 'wordpiece'"
    with pytest.raises(ValueError, match=re.escape(msg)):
        Tokenizer.train(["abc"], "wordpiece")
    with pytest.raises(ValueError, match=re.escape(msg)):
        Tokenizer(Tokenizer.train(["abc"], "char").hf, "wordpiece")


# -- read_text --------------------------------------------------------------------------------


def test_read_text_file(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("héllo\nwörld\n".encode())
    assert read_text(path) == "héllo\nwörld\n"
    assert read_text(str(path)) == "héllo\nwörld\n"


def test_read_text_folder_is_sorted_and_joined_by_newline(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("two")
    (tmp_path / "sub" / "c.txt").write_text("three\n")
    (tmp_path / "a.txt").write_text("one")
    (tmp_path / ".hidden").write_text("skipped")
    assert read_text(tmp_path) == "one\ntwo\nthree\n"


def test_read_text_missing_path_names_it(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match=re.escape(f"no such file or directory: {missing}")):
        read_text(missing)


def test_read_text_undecodable_bytes_name_the_file_and_offset(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"good text \xff more")
    msg = f"{bad} is not UTF-8 text: undecodable byte 0xff at offset 10"
    with pytest.raises(ValueError, match=re.escape(msg)):
        read_text(bad)
    (tmp_path / "a.txt").write_text("fine")
    with pytest.raises(ValueError, match=re.escape(msg)):  # inside a folder too
        read_text(tmp_path)


@pytest.mark.parametrize("content", ["", "  \n\t\n "])
def test_read_text_empty_or_whitespace_file(tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=re.escape(f"{path} holds no text")):
        read_text(path)


def test_read_text_empty_folder(tmp_path):
    with pytest.raises(ValueError, match=re.escape(f"no text files under {tmp_path}")):
        read_text(tmp_path)
