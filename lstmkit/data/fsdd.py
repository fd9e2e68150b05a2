"""The Free Spoken Digit Dataset (FSDD): recordings, the split by index, connected digits.

FSDD (Zohar Jackson et al., https://github.com/Jakobovski/free-spoken-digit-dataset, CC BY-SA
4.0) holds 8 kHz mono WAV files named ``{digit}_{speaker}_{index}.wav``, 50 per digit and
speaker. Its official split is by index: indices 0-4 are the test set (withheld here: the
copy in ``../shared`` holds 5-49 only), so lstmkit validates on 5-9 and trains on 10-49
(:data:`SPLITS`). The speakers are the same on every side.

:func:`load_recordings` reads a ``recordings/`` folder (or the folder holding it, or a
``.tar.gz`` of such files, like the sample bundled with lstmkit). :func:`connected_utterance`
is the public generator of connected-digit utterances: 2-7 recordings of one speaker joined
by 100-400 ms of silence (seeded; optional low-level white noise, at one level or at one
drawn per utterance from several, "none" among them), returned with their digit labels and
each digit's segment, so anyone can build the same test conditions. The noise is drawn
last, so one seed gives the same utterance with and without it.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmkit.data.audio import read_wav

SPLITS = {"test": range(0, 5), "val": range(5, 10), "train": range(10, 50)}
NAME = re.compile(r"^(\d)_([A-Za-z][A-Za-z0-9]*)_(\d+)\.wav$")
SAMPLE = Path(__file__).resolve().parent / "samples" / "fsdd_sample.tar.gz"


@dataclass(frozen=True)
class Recording:
    """One FSDD file: ``name``, ``digit`` (0-9), ``speaker``, ``index`` and its ``audio``
    (S,) float32 at the rate it was loaded at."""

    name: str
    digit: int
    speaker: str
    index: int
    audio: np.ndarray


@dataclass(frozen=True)
class Connected:
    """A connected-digit utterance: ``audio`` (S,), ``digits``, ``segments`` ((start, end)
    sample of each digit's recording in ``audio``), the ``speaker`` and the source ``names``."""

    audio: np.ndarray
    digits: tuple[int, ...]
    segments: tuple[tuple[int, int], ...]
    speaker: str
    names: tuple[str, ...]
    noise_dbfs: float | None = None


NoiseLevels = float | Sequence[float | None] | None


def parse_name(name: str) -> tuple[int, str, int] | None:
    """``(digit, speaker, index)`` of an FSDD file name, ``None`` for any other name.

    >>> parse_name("7_jackson_32.wav"), parse_name("notes.txt")
    ((7, 'jackson', 32), None)
    """
    m = NAME.match(name)
    return (int(m.group(1)), m.group(2), int(m.group(3))) if m else None


def split_of(index: int) -> str:
    """``train``, ``val`` or ``test`` for a recording index (FSDD's split by index)."""
    for split, indices in SPLITS.items():
        if index in indices:
            return split
    raise ValueError(f"FSDD index {index} is outside 0-49")


def _folder(path: Path) -> Path:
    nested = path / "recordings"
    return nested if nested.is_dir() else path


def load_recordings(
    source: str | Path | None, split: str | None = None, rate: int = 8000
) -> list[Recording]:
    """The recordings of ``split`` (all with ``None``) in ``source`` (``None``: the bundled
    sample), sorted by name, resampled to ``rate``. Files not named like FSDD's are ignored;
    a source without any recordings of the split is an error naming it."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    path = Path(source) if source is not None else SAMPLE
    wanted = SPLITS[split] if split is not None else range(0, 10**9)
    found: list[Recording] = []
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")):
        try:
            with tarfile.open(path) as tar:
                for member in sorted(tar.getmembers(), key=lambda m: m.name):
                    parsed = parse_name(Path(member.name).name)
                    if member.isfile() and parsed and parsed[2] in wanted:
                        data = tar.extractfile(member).read()  # bytes only: nothing is written
                        audio = read_wav(f"{path}:{member.name}", rate, data=data)
                        found.append(Recording(Path(member.name).name, *parsed, audio))
        except (tarfile.TarError, EOFError, OSError) as e:
            raise ValueError(f"{path}: not a readable archive ({e})") from None
    elif path.is_dir():
        for file in sorted(_folder(path).glob("*.wav")):
            parsed = parse_name(file.name)
            if parsed and parsed[2] in wanted:
                found.append(Recording(file.name, *parsed, read_wav(file, rate)))
    elif not path.exists():
        raise FileNotFoundError(f"{path}: no such FSDD folder or archive")
    else:
        raise ValueError(f"{path} is neither a folder of FSDD recordings nor a .tar.gz of them")
    if not found:
        what = f"of the {split} split (indices {wanted.start}-{wanted.stop - 1}) " if split else ""
        hint = "; FSDD's official test split is withheld from this copy" if split == "test" else ""
        raise ValueError(
            f"{path} holds no FSDD recordings {what}({{digit}}_{{speaker}}_{{index}}.wav){hint}"
        )
    return found


def by_speaker(recordings: Sequence[Recording]) -> dict[str, list[Recording]]:
    out: dict[str, list[Recording]] = {}
    for r in recordings:
        out.setdefault(r.speaker, []).append(r)
    return out


def connected_utterance(
    recordings: Sequence[Recording],
    rng: np.random.Generator,
    min_digits: int = 2,
    max_digits: int = 7,
    gap_ms: tuple[float, float] = (100.0, 400.0),
    noise_dbfs: NoiseLevels = None,
    rate: int = 8000,
) -> Connected:
    """One utterance: a speaker drawn at random, ``min_digits``-``max_digits`` of their
    recordings (with replacement) joined by silences drawn uniformly from ``gap_ms``;
    ``noise_dbfs`` adds white noise of that RMS level (e.g. -50) to the whole utterance, and
    a list of levels (``None`` among them for none) one drawn uniformly per utterance, after
    everything else (the same ``rng`` gives the same digits and gaps whatever the level).
    ``Connected.noise_dbfs`` is the level added (``None``: none; the gaps are exact zeros).

    >>> rec = [Recording(f"{d}_a_10.wav", d, "a", 10, np.ones(100, np.float32)) for d in range(10)]
    >>> u = connected_utterance(rec, np.random.default_rng(0))
    >>> len(u.digits) == len(u.segments) and all(e - s == 100 for s, e in u.segments)
    True
    """
    if not 1 <= min_digits <= max_digits:
        raise ValueError(f"need 1 <= min_digits <= max_digits, got {min_digits}, {max_digits}")
    if not 0 <= gap_ms[0] <= gap_ms[1]:
        raise ValueError(f"gap_ms must be (low, high) with 0 <= low <= high, got {gap_ms}")
    levels = noise_levels(noise_dbfs)
    speakers = by_speaker(recordings)
    if not speakers:
        raise ValueError("no recordings to build connected utterances from")
    names = sorted(speakers)
    speaker = names[int(rng.integers(len(names)))]
    pool = speakers[speaker]
    n = int(rng.integers(min_digits, max_digits + 1))
    picks = [pool[int(k)] for k in rng.integers(len(pool), size=n)]
    gaps = rng.uniform(gap_ms[0], gap_ms[1], size=n - 1) * rate / 1000
    parts, segments, position = [], [], 0
    for k, rec in enumerate(picks):
        if k:
            gap = np.zeros(int(round(gaps[k - 1])), dtype=np.float32)
            parts.append(gap)
            position += gap.size
        parts.append(rec.audio)
        segments.append((position, position + rec.audio.size))
        position += rec.audio.size
    audio = np.concatenate(parts).astype(np.float32)
    dbfs = levels[int(rng.integers(len(levels)))] if len(levels) > 1 else levels[0]
    if dbfs is not None:
        level = 10 ** (dbfs / 20)
        audio = audio + rng.standard_normal(audio.size).astype(np.float32) * np.float32(level)
    return Connected(
        audio,
        tuple(r.digit for r in picks),
        tuple(segments),
        speaker,
        tuple(r.name for r in picks),
        dbfs,
    )


def noise_levels(noise_dbfs: NoiseLevels) -> list[float | None]:
    """``noise_dbfs`` as a list of levels (``None``: none); each must be below 0 dBFS.

    >>> noise_levels(-60), noise_levels(None), noise_levels([-60, None])
    ([-60.0], [None], [-60.0, None])
    """
    if noise_dbfs is None or isinstance(noise_dbfs, (int, float)):
        levels = [noise_dbfs]
    else:
        levels = list(noise_dbfs)
        if not levels:
            raise ValueError("noise_dbfs: an empty list of levels (give none for no noise)")
    out = []
    for v in levels:
        if v is not None and not (isinstance(v, (int, float)) and v < 0):
            raise ValueError(
                f"noise_dbfs levels must be negative (dB below full scale) or None, got {v!r}"
            )
        out.append(None if v is None else float(v))
    return out


def connected_utterances(
    recordings: Sequence[Recording], n: int, seed: int, **kwargs
) -> list[Connected]:
    """``n`` utterances of :func:`connected_utterance`; the k-th depends only on ``seed``
    and k (``np.random.default_rng([seed, k])``), so a longer list extends a shorter one."""
    return [
        connected_utterance(recordings, np.random.default_rng([seed, k]), **kwargs)
        for k in range(n)
    ]
