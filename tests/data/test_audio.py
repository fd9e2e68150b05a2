"""WAV reading on files the tests write (rates, channels, sample formats, bad files), the
mel filterbank and log-mel features against hand computations, the noise floor (golden
values, white noise at its level), normalisation, streaming frames with and without it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from lstmkit.data.audio import (
    FeatureConfig,
    FeatureExtractor,
    FrameStream,
    hz_to_mel,
    is_silent,
    mel_filterbank,
    mel_to_hz,
    noise_floor,
    normalize,
    read_wav,
    resample,
    trim_silence,
)


def tone(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write(path, audio, rate, subtype="PCM_16", fmt=None):
    sf.write(str(path), audio, rate, subtype=subtype, format=fmt)
    return path


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "PCM_U8"])
def test_read_wav_sample_formats_give_the_same_float_samples(tmp_path, subtype):
    audio = tone(440, 8000, 0.25)
    got = read_wav(write(tmp_path / "a.wav", audio, 8000, subtype))
    assert got.dtype == np.float32 and got.shape == audio.shape
    tol = 1 / 100 if subtype == "PCM_U8" else 1e-4  # 8-bit quantisation: 1/128 steps
    assert np.abs(got - audio).max() < tol


def test_int16_values_are_scaled_to_plus_minus_one(tmp_path):
    ints = np.array([0, 16384, -16384, 32767, -32768], dtype=np.int16)
    sf.write(str(tmp_path / "i.wav"), ints, 8000, subtype="PCM_16")
    with pytest.warns(UserWarning, match="clipped"):  # 2 of 5 samples at full scale
        got = read_wav(tmp_path / "i.wav")
    assert got.tolist() == pytest.approx([0.0, 0.5, -0.5, 32767 / 32768, -1.0])


def test_stereo_is_averaged_to_mono(tmp_path):
    left, right = tone(300, 8000, 0.1), tone(700, 8000, 0.1, 0.25)
    got = read_wav(write(tmp_path / "s.wav", np.stack([left, right], 1), 8000, "FLOAT"))
    assert got.shape == left.shape
    np.testing.assert_allclose(got, (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000])
def test_any_rate_is_resampled_to_the_models_rate(tmp_path, rate):
    audio = tone(500, rate, 0.5)
    got = read_wav(write(tmp_path / "r.wav", audio, rate, "FLOAT"), 8000)
    assert abs(got.size - 4000) <= 1
    # still a 500 Hz tone of the same amplitude: the spectrum peaks at 500 Hz
    spectrum = np.abs(np.fft.rfft(got[500:3500]))
    assert np.fft.rfftfreq(3000, 1 / 8000)[spectrum.argmax()] == pytest.approx(500, abs=3)
    assert np.abs(got[500:3500]).max() == pytest.approx(0.5, abs=0.02)


def test_resample_halves_and_keeps_identity():
    x = tone(200, 16000, 0.1)
    assert resample(x, 16000, 8000).size == 800
    assert resample(x, 16000, 16000) is x


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p, "no such file"),
        (lambda p: (p.mkdir(), p)[1], "is a directory"),
        (lambda p: (p.write_bytes(b""), p)[1], r"empty \(0 bytes\)"),
        (lambda p: (p.write_bytes(b"RIFF....not really a wave file"), p)[1], "not a readable WAV"),
        (lambda p: (p.write_text("hello, world\n" * 20), p)[1], "not a readable WAV"),
        (lambda p: write(p, tone(100, 8000, 0.1), 8000, "PCM_16", "FLAC"), "FLAC file, not WAV"),
        (lambda p: write(p, tone(100, 8000, 0.1), 8000, "ULAW"), "unsupported sample format"),
        (lambda p: write(p, tone(100, 4000, 0.1), 4000), "outside 8000-48000 Hz"),
        (lambda p: write(p, tone(100, 96000, 0.1), 96000), "outside 8000-48000 Hz"),
        (lambda p: write(p, np.zeros(0, np.float32), 8000), "zero length"),
    ],
)
def test_bad_files_are_clear_errors_naming_the_file(tmp_path, make, message):
    path = make(tmp_path / "bad.wav")
    with pytest.raises((ValueError, OSError), match=message) as info:
        read_wav(path, 8000)
    assert "bad.wav" in str(info.value) and "BytesIO" not in str(info.value)


def test_clipping_warns_and_silence_is_detected(tmp_path):
    loud = np.clip(tone(200, 8000, 0.2, 3.0), -1, 1)
    with pytest.warns(UserWarning, match="clipped"):
        read_wav(write(tmp_path / "c.wav", loud, 8000, "FLOAT"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = read_wav(write(tmp_path / "q.wav", tone(200, 8000, 0.2, 1e-4), 8000, "FLOAT"))
    assert is_silent(quiet) and is_silent(np.zeros(100, np.float32))
    assert not is_silent(tone(200, 8000, 0.2, 0.01))


def test_mel_scale_round_trips_and_filterbank_is_triangular():
    assert float(hz_to_mel(1000.0)) == pytest.approx(999.99, abs=0.01)  # HTK: 1000 Hz ~ 1000 mel
    np.testing.assert_allclose(mel_to_hz(hz_to_mel([0.0, 300.0, 4000.0])), [0, 300, 4000])
    bank = mel_filterbank(256, 8000, 40, 20.0, 4000.0).numpy()
    assert bank.shape == (129, 40)
    assert (bank >= 0).all() and bank.max() <= 1.0
    peaks = bank.argmax(0)
    assert (np.diff(peaks) >= 0).all()  # bands rise in frequency
    assert bank[:, 20].sum() > 0 and (bank[:, 0] > 0).sum() >= 1


def test_feature_shapes_and_frame_count():
    cfg = FeatureConfig()  # 8 kHz: 200-sample window, 80-sample hop
    ex = FeatureExtractor(cfg)
    assert (cfg.win_length, cfg.hop_length) == (200, 80)
    for samples, frames in ((8000, 98), (200, 1), (279, 1), (280, 2), (50, 1)):
        assert ex(tone(300, 8000, samples / 8000)).shape == (frames, 40)
        assert ex.n_frames(samples) == frames


def test_log_mel_equals_a_hand_computation():
    cfg = FeatureConfig(normalize="none")
    ex = FeatureExtractor(cfg)
    audio = np.random.default_rng(0).standard_normal(1000).astype(np.float32) * 0.1
    got = ex(audio)
    window = np.hanning(201)[:200]  # periodic Hann
    frame = audio[80:280].astype(np.float64) * window
    power = np.abs(np.fft.rfft(frame, 256)) ** 2
    expected = np.log(power @ ex.bank.numpy().astype(np.float64) + 1e-6)
    np.testing.assert_allclose(got[1].numpy(), expected, rtol=1e-4, atol=1e-4)


def test_exact_zeros_give_the_floor_and_old_configs_keep_log_1e_minus_6():
    # white noise of variance s2 has mean power s2 * sum(w^2) = s2 * 75 in every bin (periodic
    # Hann of 200 samples: sum(w^2) = 3 * 200 / 8); band m sums bank[:, m]
    ex = FeatureExtractor(FeatureConfig(n_mels=4, normalize="none", floor_dbfs=-60))
    sums = ex.bank.double().sum(0)
    np.testing.assert_allclose(sums.numpy(), [12.88796, 18.73756, 27.27205, 39.69553], rtol=1e-5)
    golden = [-6.94173, -6.56749, -6.19216, -5.81678]  # log(1e-6 * 75 * sums)
    np.testing.assert_allclose(torch.log(1e-6 * 75 * sums).numpy(), golden, atol=1e-5)
    zeros = ex.frames(np.zeros(1000, np.float32))
    assert zeros.shape == (11, 4) and bool(torch.isfinite(zeros).all())
    np.testing.assert_allclose(zeros.numpy(), np.tile(golden, (11, 1)), atol=1e-5)
    assert torch.equal(zeros, torch.log(ex.floor).expand(11, 4))  # exactly the floor
    # -40 dBFS: 20 dB higher, every band 20 * ln(10) / 10 = 4.605 nats up
    up = FeatureExtractor(FeatureConfig(n_mels=4, normalize="none", floor_dbfs=-40))
    torch.testing.assert_close(
        up.frames(np.zeros(400, np.float32)) - zeros[:3],
        torch.full((3, 4), 2 * np.log(10)),
        atol=1e-5,
        rtol=0,
    )
    # no floor_dbfs (every model directory written before it): log(mel + 1e-6)
    old = FeatureExtractor(FeatureConfig(n_mels=4, normalize="none"))
    assert old.floor is None and FeatureConfig().floor_dbfs is None
    torch.testing.assert_close(
        old.frames(np.zeros(1000, np.float32)),
        torch.full((11, 4), np.log(1e-6), dtype=torch.float32),
    )


def test_floored_log_mel_of_a_tiny_signal_golden_and_by_hand():
    # 25 ms of zeros, then a 1 kHz tone at 0.01 (-43 dBFS RMS): three frames
    ex = FeatureExtractor(FeatureConfig(n_mels=4, normalize="none", floor_dbfs=-60))
    t = np.arange(200) / 8000
    audio = np.r_[np.zeros(200), 0.01 * np.sin(2 * np.pi * 1000 * t)].astype(np.float32)
    got = ex.frames(audio)
    floor = [-6.9417, -6.5675, -6.1922, -5.8168]
    golden = [
        floor,  # all zeros
        [-5.9049, -2.4497, -3.5166, floor[3]],  # the tone's first 120 samples
        [floor[0], -1.0397, -2.1263, floor[3]],
    ]
    np.testing.assert_allclose(got.numpy(), golden, atol=2e-4)
    window = np.hanning(201)[:200]
    bank = ex.bank.numpy().astype(np.float64)
    level = 1e-6 * (window**2).sum() * bank.sum(0)
    for k in range(3):
        power = np.abs(np.fft.rfft(audio[80 * k : 80 * k + 200] * window, 256)) ** 2
        np.testing.assert_allclose(
            got[k].numpy(), np.log(np.maximum(power @ bank, level)), rtol=1e-4, atol=1e-4
        )


def test_the_floor_is_the_mean_mel_energy_of_white_noise_at_its_level():
    # white noise at -60 dBFS, unfloored (-200 dBFS): its mean energy per band is the -60 floor
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(80_000) * 1e-3).astype(np.float32)
    ex = FeatureExtractor(FeatureConfig(normalize="none", floor_dbfs=-200))
    mean = ex.frames(noise).double().exp().mean(0)  # 998 frames
    want = noise_floor(-60.0, ex.window, ex.bank).double()
    ratio = (mean / want).numpy()
    assert ratio.min() > 0.8 and ratio.max() < 1.2 and abs(ratio.mean() - 1) < 0.03
    # at a -60 floor half or more of a band's values of -60 dBFS noise are the floor's
    floored = FeatureExtractor(FeatureConfig(normalize="none", floor_dbfs=-60)).frames(noise)
    at_floor = (floored == torch.log(want.float())).double().mean(0)
    assert float(at_floor.min()) > 0.3 and float(at_floor.max()) < 0.9


def test_a_tone_lights_the_band_of_its_frequency():
    ex = FeatureExtractor(FeatureConfig(normalize="none"))
    feats = ex(tone(1000, 8000, 0.5))
    centers = mel_to_hz(np.linspace(hz_to_mel(20), hz_to_mel(4000), 42))[1:-1]
    assert abs(centers[int(feats.mean(0).argmax())] - 1000) < 100


def test_normalisation_per_utterance_and_global():
    feats = torch.randn(50, 40) * 3 + 7
    out = normalize(feats, "utterance")
    torch.testing.assert_close(out.mean(0), torch.zeros(40), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(0, unbiased=False), torch.ones(40), atol=1e-3, rtol=0)
    stats = torch.stack([torch.full((40,), 7.0), torch.full((40,), 3.0)])
    torch.testing.assert_close(normalize(feats, "global", stats), (feats - 7) / (3 + 1e-5))
    assert normalize(feats, "none") is feats
    # gain: one mean and std over the whole utterance, so the bands keep their differences
    shaped = feats + torch.arange(40.0)
    gained = normalize(shaped, "gain")
    assert abs(float(gained.mean())) < 1e-5 and abs(float(gained.std(unbiased=False)) - 1) < 1e-3
    torch.testing.assert_close(
        gained, (shaped - shaped.mean()) / (shaped.std(unbiased=False) + 1e-5)
    )
    spread = gained.mean(0)
    assert float(spread[-1] - spread[0]) > 1.0  # the envelope survives; per band it would not
    with pytest.raises(ValueError, match="statistics"):
        normalize(feats, "global")
    # views joined by "+": each normalisation, side by side
    both = normalize(shaped, "utterance+global", stats)
    assert both.shape == (50, 80)
    torch.testing.assert_close(both[:, :40], normalize(shaped, "utterance"))
    torch.testing.assert_close(both[:, 40:], normalize(shaped, "global", stats))
    config = FeatureConfig(n_mels=24, normalize="gain+global")
    assert config.views == ["gain", "global"] and config.width == 48
    assert config.needs_stats and config.whole_utterance
    assert not FeatureConfig(normalize="global+none").whole_utterance


def test_feature_config_errors():
    with pytest.raises(ValueError, match="n_fft"):
        FeatureConfig(n_fft=128)
    with pytest.raises(ValueError, match="sample_rate"):
        FeatureConfig(sample_rate=1000)
    with pytest.raises(ValueError, match="fmin"):
        FeatureConfig(fmin=5000)
    with pytest.raises(ValueError, match="normalize"):
        FeatureConfig(normalize="cmvn")
    with pytest.raises(ValueError, match="trim_db"):
        FeatureConfig(trim_db=-1)
    for bad in (0.0, 6.0, -250.0, float("nan")):
        with pytest.raises(ValueError, match=r"features.floor_dbfs must be in \[-200, 0\)"):
            FeatureConfig(floor_dbfs=bad)


def test_trim_keeps_the_windows_within_top_db_of_the_loudest():
    # +-a, so each window's power is exact: 800 samples at -30 dB, 1600 at 0 dB, 800 at -15
    quiet = lambda n, db: (0.5 * 10 ** (db / 20) * (-1.0) ** np.arange(n)).astype(np.float32)  # noqa: E731
    audio = np.concatenate([quiet(800, -30), quiet(1600, 0), quiet(800, -15)])
    ex = lambda db: FeatureExtractor(FeatureConfig(trim_db=db))  # noqa: E731 (200 / 80)
    # windows start every 80 samples; the first reaching into the loud part starts at 640,
    # the last one reaching into it at 2320 (ends 2520), the last of all ends at 3160
    cut20 = ex(20).trim(audio)  # drops the -30 dB head, keeps the -15 dB tail
    assert np.array_equal(cut20, audio[640:3160])
    assert np.array_equal(ex(10).trim(audio), audio[640:2520])  # drops both
    assert np.array_equal(ex(40).trim(audio), audio[:3160])
    assert ex(0).trim(audio) is audio and ex(20).trim(audio[:150]).size == 150
    # features of a trimmed file are the features of its trimmed samples
    torch.testing.assert_close(ex(20)(audio), normalize(ex(20).frames(cut20), "utterance"))
    assert trim_silence(np.zeros(1000, np.float32), 20, 200, 80).size > 0  # all quiet: kept


@pytest.mark.parametrize("floor_dbfs", [None, -60.0])
@pytest.mark.parametrize("chunk", [1, 79, 80, 333, 4000])
def test_frame_stream_gives_the_frames_of_the_whole_signal(chunk, floor_dbfs):
    ex = FeatureExtractor(FeatureConfig(floor_dbfs=floor_dbfs))
    audio = np.random.default_rng(1).standard_normal(3001).astype(np.float32)
    audio[1000:1700] = 0.0  # a gap of digital silence: frames at the floor
    stream = FrameStream(ex)
    parts = [stream.push(audio[i : i + chunk]) for i in range(0, audio.size, chunk)]
    got = torch.cat([*parts, stream.flush()])
    torch.testing.assert_close(got, ex.frames(audio), atol=1e-4, rtol=1e-5)
    if floor_dbfs is not None:  # the 6 frames within the gap (starts 1040-1440) are the floor
        assert int((got == torch.log(ex.floor)).all(1).sum()) == 6


def test_frame_stream_of_a_signal_shorter_than_a_window():
    ex = FeatureExtractor(FeatureConfig())
    audio = tone(300, 8000, 0.01)  # 80 samples
    stream = FrameStream(ex)
    assert stream.push(audio).shape == (0, 40)
    torch.testing.assert_close(stream.flush(), ex.frames(audio))
