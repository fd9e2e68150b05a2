"""The Large Movie Review Dataset v1.0 (IMDB sentiment).

Maas, Daly, Pham, Huang, Ng and Potts, "Learning Word Vectors for Sentiment Analysis",
ACL 2011. 50,000 labelled movie reviews (25,000 train, 25,000 test, each half positive with
rating >= 7 and half negative with rating <= 4) and 50,000 unlabelled ones (``unsup``). The
archive ``aclImdb_v1.tar.gz`` unpacks to::

    aclImdb/train/{pos,neg,unsup}/<id>_<rating>.txt
    aclImdb/test/{pos,neg}/<id>_<rating>.txt

:func:`load_imdb` reads one split from that folder, from a folder holding it, or straight from
a ``.tar.gz`` archive (streamed once, nothing extracted to disk), and cleans each text with
:func:`clean_text`. Usage::

    data = load_imdb("aclImdb_v1.tar.gz", "train")     # None: download to the cache
    train, val = movie_split(data.reviews, val_size=2500, seed=0)  # no movie on both sides

The test split is for final evaluation only: tune on a validation split carved out of train.
"""

from __future__ import annotations

import dataclasses
import gzip
import html
import itertools
import logging
import random
import re
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sklearn.model_selection import train_test_split

from lstmkit.data.download import cache_dir, download

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
# The archive's known SHA-256, the digest other loaders (e.g. Julia's MLDatasets.jl) check.
IMDB_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
IMDB_ARCHIVE = "aclImdb_v1.tar.gz"

# The folders under aclImdb/ that make up each split, and the label of each folder.
SPLITS = {
    "train": ("train/pos", "train/neg"),
    "test": ("test/pos", "test/neg"),
    "unsup": ("train/unsup",),
}
SPLIT_BY = ("movie", "random")  # how a validation split is drawn (split_reviews)
_LABELS = {"pos": 1, "neg": 0, "unsup": None}
_FILE_NAME = re.compile(r"(\d+)_(\d+)\.txt")
_URLS = re.compile(r"urls_(pos|neg|unsup)\.txt")
_TITLE = re.compile(r"/title/(tt\d+)")
_LINE_BREAK = re.compile(r"<br\s*/?\s*>", re.IGNORECASE)
_CORRUPT = (EOFError, tarfile.TarError, zlib.error, gzip.BadGzipFile)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Review:
    """One review.

    Args:
        text: the cleaned text (see :func:`clean_text`).
        label: 1 positive, 0 negative, ``None`` unlabelled (``unsup``).
        rating: the star rating 1-10 from the file name, ``None`` for unlabelled reviews.
        id: the number before the rating in the file name (unique within a folder).
        path: the file's path inside the data set, e.g. ``aclImdb/train/pos/0_9.txt``.
        movie: the IMDb title the review is of (``tt0453418``), from the split's
            ``urls_{pos,neg,unsup}.txt`` (line n: review n); ``None`` without those files.
    """

    text: str
    label: int | None
    rating: int | None
    id: int
    path: str
    movie: str | None = None


@dataclass(frozen=True)
class ImdbSplit:
    """The reviews of one split, and the paths of the empty ones that were skipped.

    Indexing, iteration and ``len`` act on :attr:`reviews`.
    """

    reviews: list[Review]
    skipped: list[str]

    def __len__(self) -> int:
        return len(self.reviews)

    def __iter__(self) -> Iterator[Review]:
        return iter(self.reviews)

    def __getitem__(self, index: int) -> Review:
        return self.reviews[index]


def clean_text(s: str) -> str:
    """Turn the HTML line breaks into spaces, unescape entities and collapse whitespace.

    >>> clean_text("Great.<br /><br />Cast &amp; crew  shine.")
    'Great. Cast & crew shine.'
    """
    return " ".join(html.unescape(_LINE_BREAK.sub(" ", s)).split())


def load_imdb(source: str | Path | None, split: str) -> ImdbSplit:
    """Read one split of the IMDB data set, sorted by (label, id).

    Args:
        source: an ``aclImdb/`` folder, a folder that holds ``aclImdb/``, or a ``.tar.gz``
            archive of it (any name; it may hold only some splits). ``None`` reads
            ``cache_dir()/aclImdb_v1.tar.gz``, downloading it first if it is missing.
        split: ``"train"`` or ``"test"`` (``pos`` and ``neg``), or ``"unsup"``
            (``train/unsup``).

    Returns:
        An :class:`ImdbSplit`; reviews that are empty after cleaning are left out and their
        paths listed in ``skipped`` (and logged as a warning).

    Raises:
        FileNotFoundError: ``source`` does not exist or lacks the split.
        ValueError: a file is not UTF-8 or not named ``<id>_<rating>.txt``, or the archive is
            truncated or corrupt.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown IMDB split {split!r}; expected one of {sorted(SPLITS)}")
    if source is None:
        path = cache_dir() / IMDB_ARCHIVE
        if not path.is_file():
            download(IMDB_URL, path, IMDB_SHA256)
    else:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"IMDB source not found: {path}")
    files = _archive_files(path, split) if path.is_file() else _folder_files(path, split)
    reviews, skipped, urls = [], [], {}
    for name, data in files:
        if _URLS.fullmatch(name.rsplit("/", 1)[-1]):
            urls[name] = data
            continue
        review = _review(name, data, path)
        if review is None:
            skipped.append(name)
        else:
            reviews.append(review)
    reviews = _with_movies(reviews, urls)
    reviews.sort(key=lambda r: (-1 if r.label is None else r.label, r.id, r.path))
    skipped.sort()
    if skipped:
        more = ", ..." if len(skipped) > 3 else ""
        logger.warning(
            "skipped %d empty reviews in %s: %s%s", len(skipped), path, ", ".join(skipped[:3]), more
        )
    return ImdbSplit(reviews, skipped)


def train_val_split(
    reviews: Sequence[Review], val_size: int = 2500, seed: int = 0
) -> tuple[list[Review], list[Review]]:
    """Split labelled reviews into train and validation, stratified by label.

    The validation part has the label proportions of ``reviews`` (equal numbers of positive
    and negative reviews from a balanced input when ``val_size`` is even). The two parts are
    disjoint, together hold every review, and depend only on (``reviews``, ``val_size``,
    ``seed``).

    Args:
        reviews: labelled reviews, e.g. ``load_imdb(..., "train").reviews``.
        val_size: the number of validation reviews. Default: 2500
        seed: seeds the split. Default: 0

    Returns:
        ``(train, val)`` lists.
    """
    reviews = list(reviews)
    _check_sizes(reviews, val_size)
    labels = [review.label for review in reviews]
    train, val = train_test_split(reviews, test_size=val_size, random_state=seed, stratify=labels)
    return train, val


def _with_movies(reviews: list[Review], urls: dict[str, bytes]) -> list[Review]:
    """The reviews with the movie their folder's urls file names (line n: review id n)."""
    titles: dict[str, list[str | None]] = {}
    for name, data in urls.items():
        folder = name.rsplit("/", 1)[0] + "/" + _URLS.fullmatch(name.rsplit("/", 1)[1]).group(1)
        lines = data.decode("utf-8", "replace").splitlines()
        titles[folder] = [m.group(1) if (m := _TITLE.search(line)) else None for line in lines]
    out = []
    for r in reviews:
        folder = titles.get(r.path.rsplit("/", 1)[0])
        movie = folder[r.id] if folder is not None and r.id < len(folder) else None
        out.append(dataclasses.replace(r, movie=movie) if movie else r)
    return out


def movie_split(
    reviews: Sequence[Review], val_size: int = 2500, seed: int = 0
) -> tuple[list[Review], list[Review]]:
    """Split labelled reviews into train and validation by movie: every review of a movie is
    on one side (IMDB's test set holds other movies than its train set; a split that puts a
    movie on both sides rewards memorising it). Movies are drawn in a seeded random order
    and taken while they fit the label counts a stratified split of ``val_size`` would have;
    the validation part holds ``val_size`` reviews or, when no remaining movie fits, a few
    fewer.

    Raises:
        ValueError: a review has no movie (the split's ``urls_*.txt`` files are missing).
    """
    reviews = list(reviews)
    unknown = [r.path for r in reviews if r.movie is None]
    if unknown:
        raise ValueError(
            f"the movie-grouped validation split needs the urls_pos.txt/urls_neg.txt files of "
            f"aclImdb/train/ (no movie for {len(unknown)} reviews, e.g. {unknown[0]}); "
            "use data.split: random for a random split"
        )
    _check_sizes(reviews, val_size)
    by_movie: dict[str, list[Review]] = {}
    for r in reviews:
        by_movie.setdefault(r.movie, []).append(r)
    positives = sum(r.label == 1 for r in reviews)
    want_pos = round(val_size * positives / len(reviews))
    want = {1: want_pos, 0: val_size - want_pos}
    movies = sorted(by_movie)
    random.Random(seed).shuffle(movies)
    taken, counts = set(), {0: 0, 1: 0}
    for movie in movies:
        add = {k: sum(r.label == k for r in by_movie[movie]) for k in (0, 1)}
        if all(counts[k] + add[k] <= want[k] for k in (0, 1)):
            taken.add(movie)
            counts = {k: counts[k] + add[k] for k in (0, 1)}
            if counts == want:
                break
    train = [r for r in reviews if r.movie not in taken]
    val = [r for r in reviews if r.movie in taken]
    return train, val


def split_reviews(
    reviews: Sequence[Review], val_size: int, seed: int, by: str = "movie"
) -> tuple[list[Review], list[Review]]:
    """:func:`movie_split` (``by="movie"``) or :func:`train_val_split` (``"random"``)."""
    if by == "movie":
        return movie_split(reviews, val_size, seed)
    if by == "random":
        return train_val_split(reviews, val_size, seed)
    raise ValueError(f"the validation split is by 'movie' or 'random', got {by!r}")


def _check_sizes(reviews: list[Review], val_size: int) -> None:
    if None in (r.label for r in reviews):
        raise ValueError("a validation split needs labelled reviews; unsup reviews have no label")
    if len(reviews) < 2:
        raise ValueError(
            f"need at least 2 labelled reviews to hold some out, found {len(reviews)} "
            "(empty reviews are skipped)"
        )
    if not 0 < val_size < len(reviews):
        raise ValueError(f"val_size must be in [1, {len(reviews) - 1}], got {val_size}")


def _review(name: str, data: bytes, source: Path) -> Review | None:
    """Parse one file (``name`` as in ``aclImdb/train/pos/0_9.txt``); ``None`` if empty."""
    match = _FILE_NAME.fullmatch(name.rsplit("/", 1)[-1])
    if match is None:
        raise ValueError(f"{name} in {source}: review files must be named <id>_<rating>.txt")
    try:
        text = clean_text(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name} in {source} is not UTF-8: {exc}") from exc
    if not text:
        return None
    # Unlabelled reviews carry rating 0 in their names: they have no rating.
    rating = int(match.group(2)) or None
    label = _LABELS[name.split("/")[2]]
    return Review(text, label, rating, int(match.group(1)), name)


def _missing(split: str, present: set[str], source: Path, kind: str) -> FileNotFoundError:
    """The error for a split whose folders are not all in ``present``."""
    folders = SPLITS[split]
    top = folders[0].split("/")[0]
    absent = top if top not in present else next(f for f in folders if f not in present)
    holds = ", ".join(s for s in ("train", "test") if s in present)
    what = f"holds: {holds}" if holds else "holds no aclImdb/train or aclImdb/test"
    return FileNotFoundError(f"aclImdb/{absent} not found in {source} (the {kind} {what})")


def _folder_files(path: Path, split: str) -> Iterator[tuple[str, bytes]]:
    """The review files of ``split`` under the folder ``path``, as (name, bytes)."""
    root = path / "aclImdb" if (path / "aclImdb").is_dir() else path
    present = {d.relative_to(root).as_posix() for d in root.glob("*/*") if d.is_dir()}
    present |= {d.name for d in root.iterdir() if d.is_dir()}
    if not all(folder in present for folder in SPLITS[split]):
        raise _missing(split, present, path, "folder")
    urls = [
        (f"aclImdb/{folder.split('/')[0]}/{file.name}", file.read_bytes())
        for folder in SPLITS[split]
        for file in [root / folder.split("/")[0] / f"urls_{folder.split('/')[1]}.txt"]
        if file.is_file()
    ]
    reviews = (
        (f"aclImdb/{folder}/{file.name}", file.read_bytes())
        for folder in SPLITS[split]
        for file in sorted((root / folder).iterdir())
        # Hidden files (e.g. macOS' ._ and .DS_Store) are no reviews.
        if file.is_file() and not file.name.startswith(".")
    )
    return itertools.chain(urls, reviews)


def _archive_files(path: Path, split: str) -> Iterator[tuple[str, bytes]]:
    """The review files of ``split`` in the archive ``path``, as (name, bytes).

    Streams the archive once; raises :class:`FileNotFoundError` at the end if a folder of
    the split never appeared.
    """
    wanted = set(SPLITS[split])
    present: set[str] = set()
    try:
        with tarfile.open(path, mode="r:gz") as archive:
            for member in archive:
                parts = member.name.removeprefix("./").split("/")
                if parts[0] != "aclImdb" or len(parts) < 2:
                    continue
                present.add(parts[1])
                if len(parts) < 3:
                    continue
                match = _URLS.fullmatch(parts[2])
                if match and f"{parts[1]}/{match.group(1)}" in wanted and member.isfile():
                    yield "/".join(parts), archive.extractfile(member).read()
                    continue
                folder = f"{parts[1]}/{parts[2]}"
                present.add(folder)
                if (
                    folder in wanted
                    and len(parts) == 4
                    and member.isfile()
                    and not parts[3].startswith(".")
                ):
                    yield "/".join(parts), archive.extractfile(member).read()
    except _CORRUPT as exc:
        raise ValueError(f"truncated or corrupt archive {path}: {exc}") from exc
    if not wanted <= present:
        raise _missing(split, present, path, "archive")
