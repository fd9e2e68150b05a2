"""FSDD: file names, the split by index, loading folders and archives (the bundled sample),
and the connected-utterance generator: its labels match its segments, gaps and seeding, and
its noise: one level, or one drawn per utterance from a list with none among them."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
import soundfile as sf

from lstmkit.data.fsdd import (
    SAMPLE,
    Recording,
    connected_utterance,
    connected_utterances,
    load_recordings,
    parse_name,
    split_of,
)


def recordings(speakers=("a", "b"), length=lambda d: 400 + 37 * d) -> list[Recording]:
    """Each digit's audio is the constant d + 1 (so a segment tells its digit)."""
    return [
        Recording(f"{d}_{s}_10.wav", d, s, 10, np.full(length(d), d + 1.0, np.float32))
        for s in speakers
        for d in range(10)
    ]


def test_parse_name_and_split_by_index():
    assert parse_name("7_jackson_32.wav") == (7, "jackson", 32)
    assert parse_name("0_yweweler_5.wav") == (0, "yweweler", 5)
    for bad in ("7_jackson_32.flac", "x_jackson_1.wav", "12_a_1.wav", "README.md"):
        assert parse_name(bad) is None
    assert [split_of(i) for i in (0, 4, 5, 9, 10, 49)] == [
        "test",
        "test",
        "val",
        "val",
        "train",
        "train",
    ]
    with pytest.raises(ValueError, match="outside 0-49"):
        split_of(50)


def test_the_bundled_sample_holds_train_and_val_indices_only():
    assert SAMPLE.is_file() and SAMPLE.stat().st_size < 1_000_000
    train, val = load_recordings(None, "train"), load_recordings(None, "val")
    assert (len(train), len(val)) == (150, 60)
    assert {r.index for r in train} == set(range(10, 15))
    assert {r.index for r in val} == {5, 6}
    assert {r.speaker for r in train} == {"nicolas", "theo", "yweweler"}
    assert sorted({r.digit for r in val}) == list(range(10))
    assert all(r.audio.dtype == np.float32 and 1000 < r.audio.size < 12000 for r in train)
    with pytest.raises(ValueError, match="test split .*withheld"):
        load_recordings(None, "test")


def test_folder_and_archive_give_the_same_recordings(tmp_path):
    folder = tmp_path / "fsdd" / "recordings"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("3_ann_7.wav", "4_ann_12.wav", "5_bob_2.wav"):
        sf.write(str(folder / name), rng.uniform(-0.5, 0.5, 800), 8000, subtype="PCM_16")
    (folder / "notes.txt").write_text("not a recording")
    with tarfile.open(tmp_path / "r.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="recordings")
    for source in (tmp_path / "fsdd", folder, tmp_path / "r.tar.gz"):
        every = load_recordings(source)
        assert [r.name for r in every] == ["3_ann_7.wav", "4_ann_12.wav", "5_bob_2.wav"]
        assert [r.name for r in load_recordings(source, "val")] == ["3_ann_7.wav"]
        assert [(r.digit, r.speaker, r.index) for r in load_recordings(source, "test")] == [
            (5, "bob", 2)
        ]
    a, b = load_recordings(folder)[0].audio, load_recordings(tmp_path / "r.tar.gz")[0].audio
    np.testing.assert_array_equal(a, b)
    assert load_recordings(folder, rate=16000)[0].audio.size == 1600


def test_load_errors_name_the_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        load_recordings(tmp_path / "nothere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty holds no FSDD recordings"):
        load_recordings(tmp_path / "empty")
    (tmp_path / "x.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="not a readable archive"):
        load_recordings(tmp_path / "x.tar.gz")
    with pytest.raises(ValueError, match="split must be"):
        load_recordings(None, "dev")


@pytest.mark.parametrize("seed", range(20))
def test_connected_labels_match_segments(seed):
    rate = 8000
    u = connected_utterance(recordings(), np.random.default_rng(seed), rate=rate)
    assert 2 <= len(u.digits) <= 7
    assert len(u.segments) == len(u.digits) == len(u.names)
    for digit, (start, end), name in zip(u.digits, u.segments, u.names):
        assert end - start == 400 + 37 * digit  # the recording of that digit, whole
        np.testing.assert_array_equal(u.audio[start:end], digit + 1.0)
        assert name.startswith(f"{digit}_{u.speaker}_")
    for (_, end), (start, _) in zip(u.segments, u.segments[1:]):
        assert 0.1 * rate - 1 <= start - end <= 0.4 * rate + 1  # 100-400 ms of silence
        assert not u.audio[end:start].any()
    assert u.segments[0][0] == 0 and u.segments[-1][1] == u.audio.size


def test_connected_uses_one_speaker_and_all_lengths_appear():
    rng = np.random.default_rng(0)
    lengths, speakers = set(), set()
    for _ in range(300):
        u = connected_utterance(recordings(), rng)
        assert {n.split("_")[1] for n in u.names} == {u.speaker}
        lengths.add(len(u.digits))
        speakers.add(u.speaker)
    assert lengths == {2, 3, 4, 5, 6, 7} and speakers == {"a", "b"}


def test_connected_is_seeded_and_noise_has_its_level():
    a = connected_utterances(recordings(), 5, seed=3)
    b = connected_utterances(recordings(), 8, seed=3)
    for x, y in zip(a, b):  # a longer list extends a shorter one
        assert x.digits == y.digits
        np.testing.assert_array_equal(x.audio, y.audio)
    assert a[0].digits != connected_utterances(recordings(), 1, seed=4)[0].digits or (
        a[0].audio.size != connected_utterances(recordings(), 1, seed=4)[0].audio.size
    )
    silent = [Recording(f"{d}_a_10.wav", d, "a", 10, np.zeros(4000, np.float32)) for d in range(10)]
    noisy = connected_utterance(silent, np.random.default_rng(0), noise_dbfs=-40.0)
    rms_db = 20 * np.log10(np.sqrt(np.mean(noisy.audio.astype(np.float64) ** 2)))
    assert rms_db == pytest.approx(-40.0, abs=0.2)


def test_noise_levels_drawn_per_utterance_with_and_without_a_floor():
    silent = [Recording(f"{d}_a_10.wav", d, "a", 10, np.zeros(4000, np.float32)) for d in range(10)]
    mixed = connected_utterances(silent, 60, seed=5, noise_dbfs=[-40.0, None])
    assert connected_utterances(silent, 60, seed=5, noise_dbfs=[-40.0, None])[7].noise_dbfs == (
        mixed[7].noise_dbfs
    )  # seeded
    levels = [u.noise_dbfs for u in mixed]
    assert set(levels) == {-40.0, None} and 15 <= levels.count(None) <= 45
    for u in mixed:
        if u.noise_dbfs is None:
            assert not u.audio.any()  # digital silence, exact zeros throughout
        else:
            rms_db = 20 * np.log10(np.sqrt(np.mean(u.audio.astype(np.float64) ** 2)))
            assert rms_db == pytest.approx(-40.0, abs=0.5)
    # the level is drawn last: the same digits, gaps and lengths as without any noise
    for u, clean in zip(mixed, connected_utterances(silent, 60, seed=5)):
        assert (u.digits, u.segments, u.names) == (clean.digits, clean.segments, clean.names)
        assert clean.noise_dbfs is None
    # speech-like recordings: with noise the utterance is the clean one plus the noise
    loud = connected_utterances(recordings(), 20, seed=2, noise_dbfs=[-30.0, None])
    for u, clean in zip(loud, connected_utterances(recordings(), 20, seed=2)):
        if u.noise_dbfs is None:
            np.testing.assert_array_equal(u.audio, clean.audio)
        else:
            noise = (u.audio - clean.audio).astype(np.float64)
            assert 20 * np.log10(np.sqrt(np.mean(noise**2))) == pytest.approx(-30.0, abs=0.5)
    assert {u.noise_dbfs for u in loud} == {-30.0, None}
    # one level as a list is that level (no draw)
    one = connected_utterances(recordings(), 3, seed=1, noise_dbfs=[-50.0])
    for u, v in zip(one, connected_utterances(recordings(), 3, seed=1, noise_dbfs=-50.0)):
        np.testing.assert_array_equal(u.audio, v.audio)
        assert u.noise_dbfs == v.noise_dbfs == -50.0


def test_connected_argument_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="min_digits"):
        connected_utterance(recordings(), rng, min_digits=3, max_digits=2)
    with pytest.raises(ValueError, match="gap_ms"):
        connected_utterance(recordings(), rng, gap_ms=(300.0, 100.0))
    with pytest.raises(ValueError, match="no recordings"):
        connected_utterance([], rng)
    with pytest.raises(ValueError, match="empty list of levels"):
        connected_utterance(recordings(), rng, noise_dbfs=[])
    for bad in ([-60.0, 3.0], 0.0, [float("nan")], ["loud"]):
        with pytest.raises(ValueError, match="must be negative"):
            connected_utterance(recordings(), rng, noise_dbfs=bad)
