"""Audio in: WAV files to mono float samples at the model's rate, and log-mel features.

:func:`read_wav` reads a WAV file with ``soundfile`` (8-48 kHz, 8/16/24/32-bit PCM or float,
any number of channels, averaged to mono) and resamples it to the model's rate with a
polyphase filter (``scipy.signal.resample_poly``). Every bad input is a ``ValueError`` or
``OSError`` naming the file: missing, a directory, unreadable, not WAV, an unsupported
sample format (u-law, ADPCM, ...), a rate outside 8-48 kHz, zero length. Clipping is a
warning; all-silence is detected by :func:`is_silent` (a transcriber answers with an empty
transcript and a warning).

:func:`log_mel` turns samples into features (T, n_mels): Hann-windowed frames of
``window_ms`` every ``hop_ms`` (no centring, so a stream of chunks gives the same frames as
the whole file, see :class:`FrameStream`), the power spectrum of an ``n_fft``-point FFT,
an HTK-mel triangular filterbank, ``log(mel + 1e-6)`` or, with ``floor_dbfs`` set,
``log(max(mel, floor))`` where ``floor`` is each band's mean energy of white noise at that
level (:func:`noise_floor`); then :func:`normalize` (per utterance: zero mean and unit
variance per mel band over time; or global statistics). The settings are a
:class:`FeatureConfig`, stored in the model directory.

Why a floor: audio with gaps of digital silence (exact zeros, as in concatenated, padded or
VAD-trimmed files) gives ``log(1e-6)`` = -13.8 there, 4-6 nats below the frames of even a
-60 dBFS noise floor and below anything a microphone records, and per-utterance
normalisation then moves every other frame too. A floor at a fixed level treats zeros and
a noise floor under it alike; it is per frame and band, so a stream of chunks gives the
same frames as the whole signal.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lstmkit.config import check_positive

MIN_RATE, MAX_RATE = 8000, 48000
SUBTYPES = ("PCM_U8", "PCM_S8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")
WAV_FORMATS = ("WAV", "WAVEX")
SILENCE_PEAK = 1e-3  # -60 dBFS: below this nothing a microphone picks up is speech
CLIP_LEVEL = 0.999
CLIP_FRACTION = 0.01  # more samples than this at full scale: the recording is clipped
LOG_FLOOR = 1e-6
NORMALIZE = ("utterance", "gain", "global", "none")


@dataclass
class FeatureConfig:
    """Log-mel features.

    Args:
        sample_rate: every file is resampled to this rate (Hz). Default: 8000
        window_ms, hop_ms: frame length and shift. Default: 25, 10
        n_fft: FFT size (>= the window's samples). Default: 256
        n_mels: mel bands. Default: 40
        fmin, fmax: the filterbank's range in Hz (``fmax`` 0: half the rate). Default: 20, 0
        normalize: ``utterance`` (mean/variance per band over each utterance), ``gain``
            (one mean/variance over all of an utterance's bands and frames: its level
            removed, its spectral shape kept), ``global`` (the training set's statistics,
            stored with the model: what streaming needs) or ``none``; several joined by
            ``+`` (``utterance+global``) give each frame as that many views side by side,
            ``n_mels`` values each (:attr:`width`). Default: ``utterance``
        trim_db: cut the leading and trailing frames quieter than the loudest frame by more
            than this many dB (RMS per window) before anything else, in training and
            transcription alike: recordings trimmed tighter or looser than the training ones
            look the same (0: off; whole utterances only, not streaming). Default: 0
        floor_dbfs: floor each band's mel energy at the mean energy that white noise of
            this RMS level (dB below full scale, e.g. -60) has in that band, before the log:
            ``log(max(mel, floor))``. Digital silence (exact zeros) then gives exactly the
            floor's frames, and a noise floor below this level nearly the same, instead of
            ``log(1e-6)``, far below any recorded silence. A fixed level, per frame: it
            streams. In ``[-200, 0)``; ``None``: ``log(mel + 1e-6)`` (the features of models
            trained before this setting existed, which load and behave as they did).
            Default: ``None``
    """

    sample_rate: int = 8000
    window_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 256
    n_mels: int = 40
    fmin: float = 20.0
    fmax: float = 0.0
    normalize: str = "utterance"
    trim_db: float = 0.0
    floor_dbfs: float | None = None

    def __post_init__(self) -> None:
        check_positive(self, "features", ("sample_rate", "window_ms", "hop_ms", "n_fft", "n_mels"))
        if not MIN_RATE <= self.sample_rate <= MAX_RATE:
            raise ValueError(
                f"features.sample_rate must be in {MIN_RATE}-{MAX_RATE} Hz, got {self.sample_rate}"
            )
        if self.win_length > self.n_fft:
            raise ValueError(
                f"features.n_fft ({self.n_fft}) must be >= the window's {self.win_length} samples"
            )
        if self.hop_length < 1:
            raise ValueError(f"features.hop_ms {self.hop_ms} is under one sample")
        top = self.fmax or self.sample_rate / 2
        if not 0 <= self.fmin < top <= self.sample_rate / 2:
            raise ValueError(
                f"features: need 0 <= fmin < fmax <= sample_rate/2; got fmin {self.fmin}, "
                f"fmax {self.fmax}"
            )
        if self.trim_db < 0:
            raise ValueError(f"features.trim_db must be >= 0 (0: off), got {self.trim_db}")
        if self.floor_dbfs is not None and not -200 <= self.floor_dbfs < 0:
            raise ValueError(
                f"features.floor_dbfs must be in [-200, 0) dB below full scale, or "
                f"none; got {self.floor_dbfs}"
            )
        views = self.views
        if any(v not in NORMALIZE for v in views) or len(set(views)) < len(views):
            raise ValueError(
                f"features.normalize must be one of {', '.join(NORMALIZE)}, or several of them "
                f"joined by '+' (each once); got {self.normalize!r}"
            )

    @property
    def views(self) -> list[str]:
        """The normalisations of ``normalize``, one view of every frame each."""
        return self.normalize.split("+")

    @property
    def width(self) -> int:
        """Values per feature frame: ``n_mels`` for each view."""
        return self.n_mels * len(self.views)

    @property
    def needs_stats(self) -> bool:
        """Whether a view is normalised by the training set's statistics (``global``)."""
        return "global" in self.views

    @property
    def whole_utterance(self) -> bool:
        """Whether a view needs the whole utterance (``utterance``, ``gain``): no streaming."""
        return any(v in ("utterance", "gain") for v in self.views)

    @property
    def win_length(self) -> int:
        return round(self.sample_rate * self.window_ms / 1000)

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)


# -- reading ---------------------------------------------------------------------------------


def read_wav(path: str | Path, rate: int | None = None, data: bytes | None = None) -> np.ndarray:
    """The samples (S,) of a WAV file as mono float32 in [-1, 1], resampled to ``rate``.

    ``data`` reads those bytes instead of the file (``path`` then only names it in errors,
    e.g. a member of an archive).
    """
    import soundfile as sf

    name = str(path)
    if data is None:
        p = Path(path)
        if p.is_dir():
            raise ValueError(f"{name} is a directory, not a WAV file")
        if not p.is_file():
            raise FileNotFoundError(f"{name}: no such file")
        try:
            data = p.read_bytes()
        except OSError as e:
            raise OSError(f"{name}: cannot read ({e.strerror or e})") from None
    if not data:
        raise ValueError(f"{name} is empty (0 bytes), not a WAV file")
    try:
        info = sf.info(io.BytesIO(data))
    except (RuntimeError, sf.LibsndfileError, TypeError) as e:
        raise ValueError(f"{name} is not a readable WAV file ({_short(e)})") from None
    if info.format not in WAV_FORMATS:
        raise ValueError(f"{name} is a {info.format} file, not WAV")
    if info.subtype not in SUBTYPES:
        raise ValueError(
            f"{name}: unsupported sample format {info.subtype} ({info.subtype_info}); "
            "WAV files must hold PCM (8-32 bit) or float samples"
        )
    if not MIN_RATE <= info.samplerate <= MAX_RATE:
        raise ValueError(
            f"{name}: sample rate {info.samplerate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz"
        )
    try:
        samples, file_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise ValueError(f"{name}: cannot decode the audio ({_short(e)})") from None
    if samples.shape[0] == 0:
        raise ValueError(f"{name} holds no audio (zero length)")
    audio = samples.mean(axis=1)
    if not np.isfinite(audio).all():
        raise ValueError(f"{name} holds NaN or infinite samples")
    if np.mean(np.abs(audio) >= CLIP_LEVEL) > CLIP_FRACTION:
        warnings.warn(
            f"{name} is clipped (over {CLIP_FRACTION:.0%} of samples at full scale)", stacklevel=2
        )
    audio = np.clip(audio, -1.0, 1.0)  # float files may exceed full scale
    if rate is not None and rate != file_rate:
        audio = resample(audio, file_rate, rate)
    return audio.astype(np.float32)


def _short(e: Exception) -> str:
    """The last line of libsndfile's message, without the in-memory buffer's repr
    (``Error opening <_io.BytesIO object at 0x...>: Format not recognised.``)."""
    text = str(e).strip()
    if not text:
        return type(e).__name__
    return re.sub(r"^Error opening <[^>]*>: ", "", text.splitlines()[-1])


def resample(audio: np.ndarray, rate_from: int, rate_to: float) -> np.ndarray:
    """``audio`` (S,) at ``rate_from`` resampled to ``rate_to`` (polyphase, anti-aliased);
    a ratio that is not a small fraction is approximated (denominator <= 1000)."""
    from scipy.signal import resample_poly

    ratio = Fraction(rate_to / rate_from).limit_denominator(1000)
    if ratio == 1:
        return audio
    return resample_poly(audio, ratio.numerator, ratio.denominator).astype(np.float32)


def is_silent(audio: np.ndarray) -> bool:
    """Whether ``audio`` never rises above -60 dBFS (nothing to transcribe)."""
    return audio.size == 0 or float(np.max(np.abs(audio))) < SILENCE_PEAK


# -- features --------------------------------------------------------------------------------


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK's mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_fft: int, rate: int, n_mels: int, fmin: float, fmax: float) -> Tensor:
    """Triangular filters (n_fft // 2 + 1, n_mels), peaks 1, evenly spaced in mel.

    >>> fb = mel_filterbank(256, 8000, 40, 20.0, 4000.0)
    >>> tuple(fb.shape), float(fb.max()) <= 1.0, bool((fb.sum(0) > 0).all())
    ((129, 40), True, True)
    """
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None] - lower) / (center - lower)
    falling = (upper - freqs[None]) / (upper - center)
    bank = np.maximum(0.0, np.minimum(rising, falling))  # (n_mels, F)
    # a band narrower than one FFT bin would be empty: give it its nearest bin
    for m in np.flatnonzero(bank.sum(1) == 0):
        bank[m, int(np.argmin(np.abs(freqs - center[m, 0])))] = 1.0
    return torch.from_numpy(bank.T.astype(np.float32))


def noise_floor(dbfs: float, window: Tensor, bank: Tensor) -> Tensor:
    """The mean mel energy (n_mels,) of white noise of RMS level ``dbfs`` (variance
    ``s2 = 10 ** (dbfs / 10)``) framed by ``window`` and summed by ``bank`` (F, n_mels): every
    FFT bin's mean power is ``s2 * sum(window ** 2)``, so band m's is that times
    ``bank[:, m].sum()``.

    >>> w = torch.hann_window(200, periodic=True)
    >>> bank = mel_filterbank(256, 8000, 40, 20.0, 4000.0)
    >>> round(float(noise_floor(-60.0, w, bank)[0] / bank[:, 0].sum()), 9)  # 1e-6 * 75
    7.5e-05
    """
    power = 10.0 ** (dbfs / 10.0) * float((window.double() ** 2).sum())
    return (power * bank.double().sum(0)).float()


class FeatureExtractor:
    """Samples -> log-mel frames for one :class:`FeatureConfig` (window, filterbank and
    floor made once). ``n_frames(S) = 1 + (S - win) // hop`` for ``S >= win``; a shorter
    signal is zero-padded to one frame."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self.win, self.hop = config.win_length, config.hop_length
        self.window = torch.hann_window(self.win, periodic=True)
        fmax = config.fmax or config.sample_rate / 2
        self.bank = mel_filterbank(
            config.n_fft, config.sample_rate, config.n_mels, config.fmin, fmax
        )
        self.floor = (
            None
            if config.floor_dbfs is None
            else noise_floor(config.floor_dbfs, self.window, self.bank)
        )

    def n_frames(self, samples: int) -> int:
        return 1 + max(samples - self.win, 0) // self.hop

    def frames(self, audio: np.ndarray | Tensor) -> Tensor:
        """Unnormalised log-mel (T, n_mels) of whole frames only (no padding past the end
        except for a signal shorter than one window), floored (``floor_dbfs``) or with
        1e-6 added."""
        x = torch.as_tensor(audio, dtype=torch.float32)
        if x.numel() < self.win:
            x = torch.nn.functional.pad(x, (0, self.win - x.numel()))
        framed = x.unfold(0, self.win, self.hop) * self.window  # (T, win)
        power = torch.fft.rfft(framed, n=self.config.n_fft).abs().pow(2)  # (T, n_fft/2+1)
        if self.floor is None:
            return torch.log(power @ self.bank + LOG_FLOOR)
        return torch.log(torch.maximum(power @ self.bank, self.floor))

    def trim(self, audio: np.ndarray) -> np.ndarray:
        """``audio`` without its leading and trailing windows more than ``trim_db`` below
        the loudest (unchanged when ``trim_db`` is 0 or the signal is under one window)."""
        return trim_silence(audio, self.config.trim_db, self.win, self.hop)

    def __call__(self, audio: np.ndarray | Tensor, stats: Tensor | None = None) -> Tensor:
        """Normalised log-mel features (T, width) of ``audio`` (S,), trimmed first when
        ``trim_db`` is set; ``stats`` (2, n_mels), mean and std, for ``normalize: global``."""
        return normalize(self.frames(self.trim(np.asarray(audio))), self.config.normalize, stats)


def trim_silence(audio: np.ndarray, top_db: float, win: int, hop: int) -> np.ndarray:
    """The span of ``audio`` from the first to the end of the last ``win``-sample window
    (every ``hop``) whose RMS is within ``top_db`` dB of the loudest window's (``top_db`` 0:
    ``audio`` unchanged).

    >>> a = np.r_[np.zeros(400), np.ones(800), 0.001 * np.ones(400)].astype(np.float32)
    >>> trim_silence(a, 40.0, 200, 100).size, trim_silence(a, 80.0, 200, 100).size
    (1000, 1300)
    """
    if top_db <= 0 or audio.size <= win:
        return audio
    x = np.asarray(audio, dtype=np.float64)
    n = 1 + (x.size - win) // hop
    windows = np.lib.stride_tricks.sliding_window_view(x, win)[::hop][:n]
    power = (windows**2).mean(1)
    loud = np.flatnonzero(power >= power.max() * 10 ** (-top_db / 10))
    return audio[loud[0] * hop : loud[-1] * hop + win]


def normalize(feats: Tensor, how: str, stats: Tensor | None = None) -> Tensor:
    """``feats`` (T, F) with zero mean and unit variance per band over the utterance
    (``utterance``), over all its bands at once (``gain``), with ``stats`` (2, F) = (mean,
    std) (``global``), or unchanged.

    Per band, a word that is one vowel (a short "two") loses its spectral envelope to the
    mean; ``gain`` subtracts one number from every band, so only the level goes. Several
    joined by ``+``: each normalisation of ``feats``, concatenated (T, F * views)."""
    if "+" in how:
        return torch.cat([normalize(feats, part, stats) for part in how.split("+")], -1)
    if how in ("utterance", "gain"):
        dims = 0 if how == "utterance" else (0, 1)
        mean = feats.mean(dims, keepdim=True)
        std = feats.std(dims, unbiased=False, keepdim=True)
        return (feats - mean) / (std + 1e-5)
    if how == "global":
        if stats is None:
            raise ValueError("global normalisation needs the training set's statistics")
        return (feats - stats[0]) / (stats[1] + 1e-5)
    return feats


def global_stats(feature_list: list[Tensor]) -> Tensor:
    """Mean and std (2, F) per band over all frames of ``feature_list`` (each (T, F))."""
    allf = torch.cat(feature_list)
    return torch.stack([allf.mean(0), allf.std(0, unbiased=False)])


class FrameStream:
    """Log-mel frames of audio arriving in chunks: the same frames :meth:`FeatureExtractor.
    frames` gives for the whole signal (the samples of an unfinished frame wait for the next
    chunk).

    >>> ex = FeatureExtractor(FeatureConfig())
    >>> audio = np.random.default_rng(0).standard_normal(4000).astype(np.float32) * 0.1
    >>> stream = FrameStream(ex)
    >>> parts = [stream.push(audio[i : i + 333]) for i in range(0, 4000, 333)]
    >>> bool(torch.allclose(torch.cat(parts), ex.frames(audio), atol=1e-5))
    True
    """

    def __init__(self, extractor: FeatureExtractor) -> None:
        self.ex = extractor
        self.buffer = np.zeros(0, dtype=np.float32)
        self.emitted = 0

    def push(self, chunk: np.ndarray) -> Tensor:
        """The frames (T, n_mels) completed by ``chunk`` (possibly none)."""
        self.buffer = np.concatenate([self.buffer, np.asarray(chunk, dtype=np.float32)])
        if self.buffer.size < self.ex.win:
            return torch.zeros(0, self.ex.config.n_mels)
        n = self.ex.n_frames(self.buffer.size)
        out = self.ex.frames(self.buffer[: (n - 1) * self.ex.hop + self.ex.win])
        self.buffer = self.buffer[n * self.ex.hop :]
        self.emitted += n
        return out

    def flush(self) -> Tensor:
        """At the end of a stream shorter than one window: its one zero-padded frame (what
        :meth:`FeatureExtractor.frames` gives such a signal); else nothing."""
        if self.emitted == 0 and self.buffer.size:
            self.emitted = 1
            return self.ex.frames(self.buffer)
        return torch.zeros(0, self.ex.config.n_mels)
