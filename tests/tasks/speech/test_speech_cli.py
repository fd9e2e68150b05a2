"""The speech CLI end to end on the bundled FSDD sample with tiny models: train ->
transcribe -> evaluate -> resume (exact) for isolated digits; connected digits with CTC
(validated with and without a noise floor), streaming transcription equal to one-shot on
audio with a gap of digital silence; the bad-input errors of transcribe."""

from __future__ import annotations

import contextlib
import io
import json
import tarfile

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from lstmkit.cli.main import main
from lstmkit.data.fsdd import SAMPLE

TINY = ["--model.hidden_size", "12", "--model.num_layers", "1", "--no-progress"]


pytestmark = pytest.mark.usefixtures("one_thread")


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    """Three validation recordings of the sample, written out as WAV files."""
    folder = tmp_path_factory.mktemp("wavs")
    names = ["3_theo_5.wav", "7_nicolas_6.wav", "0_yweweler_5.wav"]
    with tarfile.open(SAMPLE) as tar:
        for name in names:
            (folder / name).write_bytes(tar.extractfile(f"recordings/{name}").read())
    return [str(folder / n) for n in names]


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits") / "model"
    rc, stdout, _ = run(["speech", "train", "--out", str(out), "--train.epochs", "3", *TINY])
    assert rc == 0
    return out, stdout


def test_train_on_the_bundled_sample(digits_model):
    out, stdout = digits_model
    assert "bundled with lstmkit" in stdout and "150 training and 60 validation" in stdout
    assert "confusion matrix" in stdout and "per speaker: nicolas" in stdout
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "speech" and results["split"] == "val" and results["n"] == 60
    assert results["steps"] == 15 and results["train_utterances"] == 15 * 32
    matrix = np.array(results["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 60 and matrix.sum(1).tolist() == [6] * 10
    assert results["accuracy"] == pytest.approx(np.trace(matrix) / 60)
    assert set(results["per_speaker"]) == {"nicolas", "theo", "yweweler"}
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["features"]["n_mels"] == 40 and config["task"] == "speech"


def test_transcribe_prints_path_tab_digit_and_writes_json(digits_model, wavs, tmp_path):
    out, _ = digits_model
    rc, stdout, _ = run(
        ["speech", "transcribe", "--model", str(out), *wavs, "--json", str(tmp_path / "t.json")]
    )
    assert rc == 0
    lines = stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == wavs
    assert all(len(line.split("\t")[1]) == 1 and line.split("\t")[1].isdigit() for line in lines)
    data = json.loads((tmp_path / "t.json").read_text())
    assert [d["path"] for d in data] == wavs
    assert [d["transcript"] for d in data] == [line.split("\t")[1] for line in lines]
    assert all(0.1 <= d["confidence"] <= 1.0 for d in data)  # a softmax maximum of 10 classes
    # the generic predict reads WAV paths too, and gives the same transcripts
    rc, stdout2, _ = run(["speech", "predict", "--model", str(out), *wavs])
    assert rc == 0 and stdout2 == stdout


def test_evaluate_val_reproduces_the_training_scores(digits_model, tmp_path):
    out, _ = digits_model
    rc, stdout, _ = run(
        [
            "speech",
            "evaluate",
            "--model",
            str(out),
            "--split",
            "val",
            "--json",
            str(tmp_path / "e.json"),
        ]
    )
    assert rc == 0 and "val split of" in stdout and "60 utterances" in stdout
    scored = json.loads((tmp_path / "e.json").read_text())
    results = json.loads((out / "results.json").read_text())
    assert scored["accuracy"] == results["accuracy"]
    assert scored["confusion_matrix"] == results["confusion_matrix"]
    rc, _, err = run(["speech", "evaluate", "--model", str(out), "--split", "test"])
    assert rc == 2 and "test split (indices 0-4)" in err and "withheld" in err


def test_resume_continues_exactly(tmp_path):
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    args = ["--train.epochs", "2", "--model.dropout", "0.3", *TINY]
    assert run(["speech", "train", "--out", str(straight), *args])[0] == 0
    assert run(["speech", "train", "--out", str(cut), "--max-steps", "7", *args])[0] == 0
    assert run(["speech", "train", "--out", str(cut), "--resume", *args])[0] == 0
    a, b = load_file(straight / "model.safetensors"), load_file(cut / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra = json.loads((straight / "results.json").read_text())
    rb = json.loads((cut / "results.json").read_text())
    assert ra["steps"] == rb["steps"] == 10 and ra["accuracy"] == rb["accuracy"]


def test_per_member_ensemble_resumes_exactly(tmp_path):
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    args = ["--train.epochs", "2", "--model.members", "2", "--data.per_member", "true", *TINY]
    assert run(["speech", "train", "--out", str(straight), *args])[0] == 0
    assert run(["speech", "train", "--out", str(cut), "--max-steps", "7", *args])[0] == 0
    assert run(["speech", "train", "--out", str(cut), "--resume", *args])[0] == 0
    a, b = load_file(straight / "model.safetensors"), load_file(cut / "model.safetensors")
    assert {k.split(".")[1] for k in a} == {"0", "1"}
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    config = json.loads((straight / "config.json").read_text())
    assert config["config"]["data"]["per_member"] is True


def test_keep_last_with_ema_saves_the_final_average(tmp_path):
    out = tmp_path / "last"
    args = ["--train.epochs", "3", "--train.ema", "0.9", "--keep", "last", *TINY]
    assert run(["speech", "train", "--out", str(out), *args])[0] == 0
    saved = load_file(out / "model.safetensors")
    average = load_file(out / "trainer_state" / "ema.safetensors")
    raw = load_file(out / "trainer_state" / "model.safetensors")
    assert int(average["n_averaged"]) == 15
    assert all(torch.equal(saved[k], average[f"module.{k}"]) for k in saved)
    assert not all(torch.equal(saved[k], raw[k]) for k in saved)
    history = json.loads((out / "metrics.json").read_text())["history"]
    results = json.loads((out / "results.json").read_text())
    assert results["accuracy"] == pytest.approx(history[-1]["val_accuracy"])
    rc, _, err = run(["speech", "train", "--out", str(tmp_path / "x"), "--keep", "first", *TINY])
    assert rc == 2 and "keep must be best or last, got 'first'" in err


def test_connected_ctc_and_streaming_round_trip(tmp_path, wavs):
    out = tmp_path / "connected"
    rc, stdout, _ = run(
        [
            "speech",
            "train",
            "--preset",
            "fsdd-connected",
            "--out",
            str(out),
            *TINY,
            "--train.epochs",
            "1",
            "--train.max_minutes",
            "none",
            "--train.schedule_by",
            "steps",
            "--data.train_utterances",
            "24",
            "--data.val_utterances",
            "6",
            "--data.batch_size",
            "8",
            "--model.bidirectional",
            "false",
            "--features.normalize",
            "global",
        ]
    )
    # the preset scores the 6 validation utterances twice: at -60 dBFS and in digital silence
    assert (
        rc == 0
        and ("24 connected utterances per epoch, 12 for validation (6 at noise -60 dBFS, none)")
        in stdout
    )
    results = json.loads((out / "results.json").read_text())
    assert results["n"] == 6 and results["wer"] >= 0 and "cer" in results
    floors = results["noise_floors"]
    assert list(floors) == ["-60 dBFS", "none"] and floors["none"]["n"] == 6
    assert floors["-60 dBFS"]["wer"] == results["wer"] and floors["none"]["wer"] >= 0
    assert len(results["examples"]) == 5 and results["words"] >= 12
    config = json.loads((out / "config.json").read_text())
    assert len(config["artifacts"]["feature_stats"]) == 2  # mean and std per band
    # a connected utterance of two recordings, written out and transcribed both ways
    a, _ = sf.read(wavs[0], dtype="float32")
    b, _ = sf.read(wavs[1], dtype="float32")
    joined = tmp_path / "37.wav"
    sf.write(str(joined), np.concatenate([a, np.zeros(1600, np.float32), b]), 8000)
    rc, once, _ = run(["speech", "transcribe", "--model", str(out), str(joined), *wavs])
    assert rc == 0 and once.startswith(f"{joined}\t")
    rc, streamed, _ = run(
        [
            "speech",
            "transcribe",
            "--model",
            str(out),
            str(joined),
            *wavs,
            "--stream-chunk-ms",
            "200",
        ]
    )
    assert rc == 0 and streamed == once
    rc, stdout, _ = run(["speech", "evaluate", "--model", str(out)])
    assert rc == 0 and "WER" in stdout and "6 utterances" in stdout
    assert "the same utterances at noise none: WER" in stdout
    assert config["config"]["features"]["floor_dbfs"] == -60.0  # the preset's floor, stored
    rc, stdout, _ = run(
        ["speech", "plot", "--model", str(out), str(joined), "--out", str(tmp_path / "plots")]
    )
    assert rc == 0 and stdout.strip() == str(tmp_path / "plots" / "37.png")
    assert (tmp_path / "plots" / "37.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_of_an_isolated_digit_model(digits_model, wavs, tmp_path):
    out, _ = digits_model
    rc, stdout, _ = run(["speech", "plot", "--model", str(out), wavs[0], "--out", str(tmp_path)])
    png = tmp_path / "3_theo_5.png"
    assert rc == 0 and stdout.strip() == str(png) and png.stat().st_size > 10_000


def test_transcribe_errors_name_the_file(digits_model, tmp_path):
    out, _ = digits_model
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    for args, message in (
        ([str(tmp_path / "missing.wav")], "missing.wav: no such file"),
        ([str(bad)], "bad.wav is not a readable WAV file"),
        ([str(tmp_path)], "is a directory"),
        ([str(bad), "--stream-chunk-ms", "0"], "--stream-chunk-ms must be positive"),
    ):
        rc, stdout, err = run(["speech", "transcribe", "--model", str(out), *args])
        assert rc == 2 and message in err and stdout == ""
    rc, _, err = run(
        ["speech", "transcribe", "--model", str(out), str(bad), "--stream-chunk-ms", "100"]
    )
    assert rc == 2 and "bad.wav" in err
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(4000, np.float32), 8000)
    with pytest.warns(UserWarning, match="silent"):
        rc, stdout, _ = run(["speech", "transcribe", "--model", str(out), str(silent)])
    assert rc == 0 and stdout == f"{silent}\t\n"


def test_ensemble_trains_transcribes_evaluates_and_plots(wavs, tmp_path):
    out = tmp_path / "ensemble"
    args = [
        "--model.members",
        "2",
        "--model.conv_channels",
        "2",
        "--max-steps",
        "4",
        "--features.normalize",
        "utterance+global",
        *TINY,
    ]
    rc, stdout, _ = run(["speech", "train", "--out", str(out), *args])
    assert rc == 0 and "confusion matrix" in stdout
    weights = load_file(out / "model.safetensors")
    assert {k.split(".")[1] for k in weights} == {"0", "1"}  # members.0.*, members.1.*
    results = json.loads((out / "results.json").read_text())
    rc, _, _ = run(["speech", "evaluate", "--model", str(out), "--json", str(tmp_path / "e.json")])
    assert rc == 0
    assert json.loads((tmp_path / "e.json").read_text())["accuracy"] == results["accuracy"]
    rc, stdout, _ = run(
        ["speech", "transcribe", "--model", str(out), wavs[1], "--json", str(tmp_path / "t.json")]
    )
    (row,) = json.loads((tmp_path / "t.json").read_text())
    assert rc == 0 and stdout.startswith(f"{wavs[1]}\t") and 0.1 <= row["confidence"] <= 1.0
    rc, stdout, _ = run(["speech", "plot", "--model", str(out), wavs[1], "--out", str(tmp_path)])
    assert rc == 0 and (tmp_path / "7_nicolas_6.png").stat().st_size > 10_000
