"""The movie-grouped validation split: no movie on both sides, the label balance kept,
reproducible by seed, from folders and archives alike, and a clear error without urls files."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from lstmkit.data.imdb import load_imdb, movie_split, split_reviews
from tests.data.test_imdb import make_source


def movie_files(n_movies: int = 40, seed: int = 0) -> dict[str, str]:
    """Reviews of ``n_movies`` movies, 1-6 per movie and label, with their urls files."""
    rng = random.Random(seed)
    files, urls = {}, {"pos": [], "neg": []}
    for movie in range(n_movies):
        for label, rating in (("pos", 8), ("neg", 2)):
            for _ in range(rng.randint(1, 6)):
                k = len(urls[label])
                urls[label].append(f"http://www.imdb.com/title/tt{1000 + movie:07d}/usercomments")
                files[f"train/{label}/{k}_{rating}.txt"] = f"review {k} of movie {movie}"
    for label, lines in urls.items():
        files[f"train/urls_{label}.txt"] = "\n".join(lines) + "\n"
    return files


@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_movies_are_read_from_the_urls_files(tmp_path, kind):
    reviews = load_imdb(make_source(tmp_path, kind, movie_files()), "train").reviews
    assert all(r.movie == f"tt{1000 + int(r.text.split()[-1]):07d}" for r in reviews)


@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_no_movie_on_both_sides_and_the_labels_balanced(tmp_path, kind):
    reviews = load_imdb(make_source(tmp_path, kind, movie_files()), "train").reviews
    train, val = movie_split(reviews, val_size=40, seed=3)
    assert not {r.movie for r in train} & {r.movie for r in val}
    assert len(train) + len(val) == len(reviews) and len(val) <= 40
    positives = sum(r.label for r in reviews) / len(reviews)
    assert abs(sum(r.label for r in val) - round(40 * positives)) <= 3
    assert len(val) >= 30  # movies here hold both labels: not every gap can be filled


def test_reproducible_by_seed(tmp_path):
    reviews = load_imdb(make_source(tmp_path, "folder", movie_files()), "train").reviews
    a, b, c = (movie_split(reviews, 30, seed)[1] for seed in (1, 1, 2))
    assert a == b and {r.path for r in a} != {r.path for r in c}


def test_random_split_stays_available(tmp_path):
    reviews = load_imdb(make_source(tmp_path, "folder", movie_files()), "train").reviews
    train, val = split_reviews(reviews, 30, 0, by="random")
    assert len(val) == 30 and {r.movie for r in train} & {r.movie for r in val}
    with pytest.raises(ValueError, match="by 'movie' or 'random', got 'film'"):
        split_reviews(reviews, 30, 0, by="film")


def test_missing_urls_files_are_an_error_only_for_the_grouped_split(tmp_path):
    files = {k: v for k, v in movie_files().items() if "urls" not in k}
    reviews = load_imdb(make_source(tmp_path, "archive", files), "train").reviews
    assert all(r.movie is None for r in reviews)
    with pytest.raises(ValueError, match="needs the urls_pos.txt/urls_neg.txt files"):
        movie_split(reviews, 10, 0)
    assert len(split_reviews(reviews, 10, 0, by="random")[1]) == 10


SHARED = Path(__file__).resolve().parents[3] / "shared/data/imdb/aclImdb_v1_train.tar.gz"


@pytest.mark.skipif(not SHARED.is_file(), reason="needs ../shared/data/imdb")
def test_the_real_training_split():
    reviews = load_imdb(SHARED, "train").reviews
    train, val = movie_split(reviews, 2500, seed=0)
    assert len(val) == 2500 and sum(r.label for r in val) == 1250
    assert not {r.movie for r in train} & {r.movie for r in val}
