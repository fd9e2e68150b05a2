"""The IMDB loader reads folders and archives alike, cleans texts and names what is malformed."""

from __future__ import annotations

import logging
import tarfile
import time
from pathlib import Path

import pytest

from lstmkit.data.imdb import Review, clean_text, load_imdb, train_val_split

SHARED_TRAIN = Path(__file__).resolve().parents[3] / "shared/data/imdb/aclImdb_v1_train.tar.gz"

FILES = {
    "README": "Large Movie Review Dataset v1.0",
    "imdb.vocab": "the\nand\n",
    "train/urls_pos.txt": "http://www.imdb.com/title/tt0453418/usercomments\n",
    "train/pos/0_9.txt": "A <br />great &amp; fun film.",
    "train/pos/10_7.txt": "Good.<br /><br />Really   good.",
    "train/pos/2_10.txt": "Caf\u00e9 &quot;noir&quot;<BR/>at its best",
    "train/neg/0_3.txt": "Dull\tand\nlong.",
    "train/neg/1_1.txt": "Bad &lt;3",
    "train/unsup/0_0.txt": "No rating here.",
    "train/unsup/1_0.txt": "Nor\u00a0here.",
}


def make_tree(root: Path, files: dict[str, str | bytes] = FILES) -> Path:
    """Write ``files`` under ``root/aclImdb`` and return that folder."""
    for name, content in files.items():
        path = root / "aclImdb" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root / "aclImdb"


def make_archive(folder: Path, path: Path) -> Path:
    """``folder`` (an ``aclImdb`` folder) as a gzipped tar archive at ``path``."""
    with tarfile.open(path, "w:gz") as archive:
        archive.add(folder, arcname="aclImdb")
    return path


def make_source(tmp_path: Path, kind: str, files: dict[str, str | bytes] = FILES) -> Path:
    folder = make_tree(tmp_path / "tree", files)
    if kind == "archive":
        return make_archive(folder, tmp_path / "aclImdb_v1_train.tar.gz")
    return folder


def test_labels_ratings_ids_and_cleaned_texts(tmp_path):
    data = load_imdb(make_tree(tmp_path), "train")
    assert [(r.label, r.rating, r.id, r.text) for r in data] == [
        (0, 3, 0, "Dull and long."),
        (0, 1, 1, "Bad <3"),
        (1, 9, 0, "A great & fun film."),
        (1, 10, 2, 'Caf\u00e9 "noir" at its best'),
        (1, 7, 10, "Good. Really good."),
    ]
    assert data[0].path == "aclImdb/train/neg/0_3.txt"
    assert data[4].path == "aclImdb/train/pos/10_7.txt"
    assert len(data) == 5 and data.skipped == []


def test_unsup_has_no_labels_or_ratings(tmp_path):
    data = load_imdb(make_tree(tmp_path), "unsup")
    assert data.reviews == [
        Review("No rating here.", None, None, 0, "aclImdb/train/unsup/0_0.txt"),
        Review("Nor here.", None, None, 1, "aclImdb/train/unsup/1_0.txt"),
    ]


def test_folder_parent_folder_and_archive_give_the_same_reviews(tmp_path):
    folder = make_tree(tmp_path)
    archive = make_archive(folder, tmp_path / "any-name.tar.gz")
    for split in ("train", "unsup"):
        expected = load_imdb(folder, split).reviews
        assert load_imdb(tmp_path, split).reviews == expected
        assert load_imdb(str(archive), split).reviews == expected


def test_clean_text():
    assert clean_text("a<br />b<br/>c<br>d<BR >e") == "a b c d e"
    assert clean_text("  x &amp;&#39;y&#x27;\n\n z&nbsp;") == "x &'y' z"
    assert clean_text("<br /><br />") == ""


@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_missing_split_names_what_the_source_holds(tmp_path, kind):
    source = make_source(tmp_path, kind)
    with pytest.raises(FileNotFoundError) as info:
        load_imdb(source, "test")
    assert str(info.value) == f"aclImdb/test not found in {source} (the {kind} holds: train)"


def test_missing_label_folder_is_named(tmp_path):
    files = {k: v for k, v in FILES.items() if not k.startswith("train/neg/")}
    source = make_source(tmp_path, "archive", files)
    with pytest.raises(FileNotFoundError, match="aclImdb/train/neg not found in"):
        load_imdb(source, "train")
    assert len(load_imdb(source, "unsup")) == 2


def test_wrong_path_and_split(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"IMDB source not found: {tmp_path / 'nope'}"):
        load_imdb(tmp_path / "nope", "train")
    with pytest.raises(ValueError, match="unknown IMDB split 'val'"):
        load_imdb(tmp_path, "val")
    with pytest.raises(FileNotFoundError) as info:
        load_imdb(tmp_path, "train")
    assert str(info.value) == (
        f"aclImdb/train not found in {tmp_path} (the folder holds no aclImdb/train or aclImdb/test)"
    )


@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_undecodable_file_is_named(tmp_path, kind):
    source = make_source(tmp_path, kind, {**FILES, "train/neg/5_2.txt": b"caf\xe9 latin-1"})
    with pytest.raises(ValueError, match=r"aclImdb/train/neg/5_2.txt in .* is not UTF-8"):
        load_imdb(source, "train")


@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_bad_file_name_is_named(tmp_path, kind):
    source = make_source(tmp_path, kind, {**FILES, "train/pos/great.txt": "Great."})
    with pytest.raises(ValueError, match=r"aclImdb/train/pos/great.txt in .*<id>_<rating>.txt"):
        load_imdb(source, "train")


@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_empty_reviews_are_skipped_counted_and_logged(tmp_path, kind, caplog):
    files = {**FILES, "train/pos/3_8.txt": "<br /><br /> \n", "train/neg/4_2.txt": ""}
    source = make_source(tmp_path, kind, files)
    with caplog.at_level(logging.WARNING, logger="lstmkit.data.imdb"):
        data = load_imdb(source, "train")
    assert len(data) == 5
    assert data.skipped == ["aclImdb/train/neg/4_2.txt", "aclImdb/train/pos/3_8.txt"]
    assert caplog.messages == [
        f"skipped 2 empty reviews in {source}: aclImdb/train/neg/4_2.txt, aclImdb/train/pos/3_8.txt"
    ]


def test_truncated_or_corrupt_archive(tmp_path):
    archive = make_source(tmp_path, "archive")
    truncated = tmp_path / "truncated.tar.gz"
    data = archive.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"truncated or corrupt archive {truncated}: "):
        load_imdb(truncated, "train")
    not_gzip = tmp_path / "notes.tar.gz"
    not_gzip.write_text("not an archive")
    with pytest.raises(ValueError, match=f"truncated or corrupt archive {not_gzip}: "):
        load_imdb(not_gzip, "train")


def reviews(n_pos: int, n_neg: int) -> list[Review]:
    return [
        Review(f"text {i}", label, 8 if label else 2, i, f"{label}/{i}")
        for label, n in ((1, n_pos), (0, n_neg))
        for i in range(n)
    ]


def test_train_val_split_is_stratified_disjoint_and_complete():
    data = reviews(100, 100)
    train, val = train_val_split(data, val_size=20, seed=0)
    assert len(train) == 180 and len(val) == 20
    assert sum(r.label for r in val) == 10 and sum(r.label for r in train) == 90
    paths = [r.path for r in train + val]
    assert len(set(paths)) == 200 and set(paths) == {r.path for r in data}
    # Unbalanced input: the validation part keeps the 3:1 proportion.
    train, val = train_val_split(reviews(150, 50), val_size=40, seed=0)
    assert sum(r.label for r in val) == 30 and len(train) == 160


def test_train_val_split_depends_only_on_the_seed():
    data = reviews(100, 100)
    train, val = train_val_split(data, val_size=20, seed=5)
    assert train_val_split(data, val_size=20, seed=5) == (train, val)
    other = train_val_split(data, val_size=20, seed=6)[1]
    assert {r.path for r in other} != {r.path for r in val}


def test_train_val_split_errors(tmp_path):
    with pytest.raises(ValueError, match="needs labelled reviews"):
        train_val_split(load_imdb(make_tree(tmp_path), "unsup"), val_size=1)
    with pytest.raises(ValueError, match=r"val_size must be in \[1, 199\], got 200"):
        train_val_split(reviews(100, 100), val_size=200)


def test_shared_training_archive():
    if not SHARED_TRAIN.is_file():
        pytest.skip(f"{SHARED_TRAIN} is not there")
    start = time.perf_counter()
    data = load_imdb(SHARED_TRAIN, "train")
    seconds = time.perf_counter() - start
    assert sum(r.label == 1 for r in data) == 12500
    assert sum(r.label == 0 for r in data) == 12500
    assert data.skipped == []
    assert data[0].path == "aclImdb/train/neg/0_3.txt" and data[0].rating == 3
    assert {r.rating for r in data if r.label == 1} == {7, 8, 9, 10}
    assert {r.rating for r in data if r.label == 0} == {1, 2, 3, 4}
    assert not any("<br" in r.text for r in data)
    assert seconds < 30  # streamed once: about 3 s on one core
