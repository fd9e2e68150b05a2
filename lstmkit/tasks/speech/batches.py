"""Speech examples to batches: utterances (:class:`Item`), their log-mel features with the
training augmentation (:class:`Featurizer`), and re-iterable batches made on the fly
(:class:`SpeechBatches`).

Augmentation (training only; each example's draws seeded by (seed, epoch, batch, position),
so a resumed run sees the same data): a crop of the ends, speed perturbation (resampling by
a factor, which moves pitch and tempo together), white noise at an SNR drawn from a range,
a tempo change of the features (their frames stretched in time, the spectrum kept), and
SpecAugment time and frequency masks (Park et al. 2019) on the normalised features.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from lstmkit.data.audio import FeatureConfig, FeatureExtractor, normalize, trim_silence
from lstmkit.data.fsdd import Recording, connected_utterance

if TYPE_CHECKING:
    from lstmkit.tasks.speech.task import SpeechDataConfig


@dataclass
class AugmentConfig:
    """Training augmentation (off in validation and scoring).

    Args:
        speeds: speed factors drawn uniformly per example (1.0: unchanged). Default:
            (0.9, 1.0, 1.1)
        crop: up to this fraction of an example's samples is cut off, split at random
            between its start and end (recordings trimmed tighter than the training ones).
            Default: 0.0
        noise_prob: probability of adding white noise to an example. Default: 0.5
        noise_snr_db: the range its signal-to-noise ratio is drawn from. Default: (10, 40)
        trim_db: [low, high]: each example's silence is trimmed (as ``features.trim_db``
            does) at a threshold drawn from this range instead of the feature setting's, so
            the model sees words with their quiet ends (a final "t") kept and cut.
            Default: (0, 0), the feature setting
        tempo: [low, high]: the features' frames are stretched in time by a factor drawn
            log-uniformly from this range (0.7: 30% faster, fewer frames), the spectrum
            unchanged, unlike ``speeds`` (a speaker who says a word quickly keeps its
            pitch). Default: (1.0, 1.0), off
        time_masks, time_mask_frames: SpecAugment time masks per example and their largest
            width in frames. Default: 2, 10
        time_mask_fraction: no time mask is wider than this fraction of its utterance (a
            short "eight" loses its final burst to a 100 ms mask). Default: 0.2
        freq_masks, freq_mask_bands: frequency masks and their largest width in mel bands.
            Default: 2, 8
    """

    speeds: tuple[float, ...] = (0.9, 1.0, 1.1)
    crop: float = 0.0
    noise_prob: float = 0.5
    noise_snr_db: tuple[float, float] = (10.0, 40.0)
    trim_db: tuple[float, float] = (0.0, 0.0)
    tempo: tuple[float, float] = (1.0, 1.0)
    time_masks: int = 2
    time_mask_frames: int = 10
    time_mask_fraction: float = 0.2
    freq_masks: int = 2
    freq_mask_bands: int = 8

    def __post_init__(self) -> None:
        if not self.speeds or any(not 0.5 <= s <= 2 for s in self.speeds):
            raise ValueError(f"augment.speeds must be factors in [0.5, 2], got {self.speeds}")
        if not 0 <= self.crop < 1:
            raise ValueError(f"augment.crop must be in [0, 1), got {self.crop}")
        if not 0 <= self.noise_prob <= 1:
            raise ValueError(f"augment.noise_prob must be in [0, 1], got {self.noise_prob}")
        if len(self.noise_snr_db) != 2 or self.noise_snr_db[0] > self.noise_snr_db[1]:
            raise ValueError(
                f"augment.noise_snr_db must be [low, high], got {list(self.noise_snr_db)}"
            )
        if len(self.trim_db) != 2 or not 0 <= self.trim_db[0] <= self.trim_db[1]:
            raise ValueError(
                f"augment.trim_db must be [low, high] with 0 <= low <= high, got "
                f"{list(self.trim_db)}"
            )
        if len(self.tempo) != 2 or not 0.5 <= self.tempo[0] <= self.tempo[1] <= 2:
            raise ValueError(
                f"augment.tempo must be [low, high] within [0.5, 2], got {list(self.tempo)}"
            )
        if not 0 < self.time_mask_fraction <= 1:
            raise ValueError(
                f"augment.time_mask_fraction must be in (0, 1], got {self.time_mask_fraction}"
            )
        for name in ("time_masks", "time_mask_frames", "freq_masks", "freq_mask_bands"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment.{name} must be >= 0, got {getattr(self, name)}")


class Item(NamedTuple):
    """One utterance: ``audio`` (S,), its digit ``labels``, ``speaker`` and ``name``."""

    audio: np.ndarray
    labels: tuple[int, ...]
    speaker: str
    name: str


class Batch(NamedTuple):
    """``feats`` (T, N, n_mels) zero-padded, ``lengths`` (N,) frames, ``targets``: (N,)
    classes (isolated) or all utterances' labels concatenated (CTC), ``target_lengths`` (N,)."""

    feats: Tensor
    lengths: Tensor
    targets: Tensor
    target_lengths: Tensor


class MemberBatches(NamedTuple):
    """One training step of an ensemble whose members read their own data: ``batches[k]``
    is member k's :class:`Batch`."""

    batches: tuple[Batch, ...]


def isolated_items(recordings: list[Recording]) -> list[Item]:
    return [Item(r.audio, (r.digit,), r.speaker, r.name) for r in recordings]


def connected_item(
    recordings: list[Recording], data: SpeechDataConfig, rate: int, rng: np.random.Generator
) -> Item:
    u = connected_utterance(
        recordings, rng, data.min_digits, data.max_digits, data.gap_ms, data.noise_dbfs, rate
    )
    return Item(u.audio, u.digits, u.speaker, "+".join(n.removesuffix(".wav") for n in u.names))


def connected_items(
    recordings: list[Recording], data: SpeechDataConfig, rate: int, n: int, key: tuple[int, ...]
) -> list[Item]:
    """The ``n`` connected utterances of ``key`` (the k-th from ``rng([*key, k])``)."""
    return [
        connected_item(recordings, data, rate, np.random.default_rng([*key, k])) for k in range(n)
    ]


class Featurizer:
    """Items -> a :class:`Batch`, augmented when given an :class:`AugmentConfig` and a
    generator."""

    def __init__(self, features: FeatureConfig, stats: Tensor | None, ctc: bool) -> None:
        self.extractor = FeatureExtractor(features)
        self.config, self.stats, self.ctc = features, stats, ctc

    def features(self, audio: np.ndarray) -> Tensor:
        return self.extractor(audio, self.stats)

    def augmented(self, audio: np.ndarray, aug: AugmentConfig, rng: np.random.Generator) -> Tensor:
        from scipy.signal import resample_poly

        if aug.trim_db[1] > 0:  # before the noise, as transcription trims
            ex = self.extractor
            audio = trim_silence(audio, rng.uniform(*aug.trim_db), ex.win, ex.hop)
        else:
            audio = self.extractor.trim(audio)
        if aug.crop > 0:
            cut = int(rng.uniform(0, aug.crop) * audio.size)
            start = int(rng.integers(cut + 1))
            audio = audio[start : audio.size - (cut - start)]
        speed = aug.speeds[int(rng.integers(len(aug.speeds)))]
        if speed != 1.0:  # played faster: fewer samples at the same rate
            ratio = Fraction(1 / speed).limit_denominator(50)
            audio = resample_poly(audio, ratio.numerator, ratio.denominator).astype(np.float32)
        if rng.random() < aug.noise_prob:
            power = float(np.mean(audio.astype(np.float64) ** 2)) + 1e-12
            snr = rng.uniform(*aug.noise_snr_db)
            noise = rng.standard_normal(audio.size) * np.sqrt(power / 10 ** (snr / 10))
            audio = (audio + noise).astype(np.float32)
        feats = normalize(self.extractor.frames(audio), self.config.normalize, self.stats)
        low, high = aug.tempo
        if low != high:
            feats = stretch(feats, math.exp(rng.uniform(math.log(low), math.log(high))))
        t, f = feats.shape
        widest = min(aug.time_mask_frames, int(aug.time_mask_fraction * t))
        for _ in range(aug.time_masks):
            width = int(rng.integers(widest + 1))
            if 0 < width < t:
                start = int(rng.integers(t - width + 1))
                feats[start : start + width] = 0.0
        for _ in range(aug.freq_masks):
            width = int(rng.integers(aug.freq_mask_bands + 1))
            # over all of a frame's values: with two views (normalize a+b) a mask mostly hides
            # bands of one view and leaves them in the other; masking the same bands in both
            # scored lower (RESULTS.md)
            if 0 < width < f:
                start = int(rng.integers(f - width + 1))
                feats[:, start : start + width] = 0.0
        return feats

    def batch(
        self,
        items: list[Item],
        aug: AugmentConfig | None = None,
        rngs: list[np.random.Generator] | None = None,
    ) -> Batch:
        feats = (
            [self.augmented(it.audio, aug, rng) for it, rng in zip(items, rngs)]
            if aug
            else [self.features(it.audio) for it in items]
        )
        return collate(feats, [it.labels for it in items], self.ctc)


def stretch(feats: Tensor, factor: float) -> Tensor:
    """(T, F) frames -> (round(T * factor), F) (at least 1) by linear interpolation in time:
    the first and last frames are kept and each band's trajectory is resampled."""
    steps = max(1, round(feats.shape[0] * factor))
    if steps == feats.shape[0]:
        return feats
    out = nn.functional.interpolate(feats.T[None], size=steps, mode="linear", align_corners=True)
    return out[0].T.contiguous()


def collate(feats: list[Tensor], labels: list[tuple[int, ...]], ctc: bool) -> Batch:
    lengths = torch.tensor([f.shape[0] for f in feats])
    padded = nn.utils.rnn.pad_sequence(feats)  # (T, N, F)
    if ctc:  # CTC classes: blank 0, digit d is d + 1
        targets = torch.tensor([d + 1 for row in labels for d in row], dtype=torch.long)
    else:
        targets = torch.tensor([row[0] for row in labels], dtype=torch.long)
    return Batch(padded, lengths, targets, torch.tensor([len(row) for row in labels]))


class SpeechBatches:
    """Re-iterable training or evaluation batches, made on the fly.

    ``source(epoch)`` gives the epoch's items (a fixed list, or fresh connected utterances);
    training batches are shuffled and grouped by length (sorted within windows of 16
    batches), and every example is augmented with a generator seeded by (seed, epoch,
    position): the same batches whenever epoch ``e`` runs, resumed or not.
    """

    def __init__(
        self,
        source: Callable[[int], list[Item]],
        featurizer: Featurizer,
        batch_size: int,
        seed: int,
        augment: AugmentConfig | None = None,
        shuffle: bool = False,
    ) -> None:
        self.source, self.featurizer, self.batch_size = source, featurizer, batch_size
        self.seed, self.augment, self.shuffle = seed, augment, shuffle
        self.epoch = 0
        self._cache: tuple[int, list[Item]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def items(self) -> list[Item]:
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self.source(self.epoch))
        return self._cache[1]

    def order(self, items: list[Item]) -> list[list[int]]:
        n = len(items)
        if not self.shuffle:
            return [
                list(range(i, min(i + self.batch_size, n))) for i in range(0, n, self.batch_size)
            ]
        rng = np.random.default_rng([self.seed, self.epoch, 7])
        perm = rng.permutation(n).tolist()
        window = self.batch_size * 16
        batches = []
        for start in range(0, n, window):
            chunk = sorted(perm[start : start + window], key=lambda i: items[i].audio.size)
            batches += [
                chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)
            ]
        return [batches[k] for k in rng.permutation(len(batches))]

    def __len__(self) -> int:
        # order() cuts windows of 16 whole batches, so only the last batch can be short
        return math.ceil(len(self.items()) / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        items = self.items()
        for b, indices in enumerate(self.order(items)):
            chosen = [items[i] for i in indices]
            if self.augment is None:
                yield self.featurizer.batch(chosen)
            else:
                rngs = [
                    np.random.default_rng([self.seed, self.epoch, b, j]) for j in range(len(chosen))
                ]
                yield self.featurizer.batch(chosen, self.augment, rngs)


class PerMemberBatches:
    """The training batches of an ensemble whose members read their own data: member k's
    come from a :class:`SpeechBatches` seeded ``seed + k`` (its own shuffle and augmentation,
    so member 0 sees what a run seeded ``seed`` would), zipped into :class:`MemberBatches`.
    The members see the same examples each epoch, in their own order."""

    def __init__(
        self,
        members: int,
        source: Callable[[int], list[Item]],
        featurizer: Featurizer,
        batch_size: int,
        seed: int,
        augment: AugmentConfig | None,
    ) -> None:
        self.streams = [
            SpeechBatches(source, featurizer, batch_size, seed + k, augment, shuffle=True)
            for k in range(members)
        ]

    def set_epoch(self, epoch: int) -> None:
        for stream in self.streams:
            stream.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.streams[0])

    def __iter__(self) -> Iterator[MemberBatches]:
        for batches in zip(*self.streams, strict=True):
            yield MemberBatches(batches)
