"""Warnings on the command line: each is one line, ``lstmkit: warning: <message>``, without
Python's file name, line number and source line; the way of showing them is back as it was
once ``main`` returns, and a caller catching warnings still gets them."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lstmkit.cli.main import format_warning, main

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_thread")


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def test_a_warning_is_one_line():
    message = UserWarning("a.wav is clipped\n   (over 1% of samples)  ")
    got = format_warning(message, UserWarning, "/x/audio.py", 202, "    warnings.warn(...)")
    assert got == "lstmkit: warning: a.wav is clipped (over 1% of samples)\n"
    assert format_warning("plain text", RuntimeWarning, "y.py", 1) == (
        "lstmkit: warning: plain text\n"
    )


@pytest.fixture(scope="module")
def speech_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("speech") / "model"
    rc, _, err = run(
        [
            "speech",
            "train",
            "--out",
            str(out),
            "--max-steps",
            "1",
            "--train.epochs",
            "1",
            "--model.hidden_size",
            "6",
            "--model.num_layers",
            "1",
            "--no-progress",
        ]
    )
    assert rc == 0, err
    return out


def test_transcribe_warns_in_one_line_each(speech_model, tmp_path):
    # a stereo 44.1 kHz recording at full scale (clipped), and an all-silent one
    t = np.arange(44100) / 44100
    square = np.sign(np.sin(2 * np.pi * 440 * t))
    stereo, silent = tmp_path / "stereo.wav", tmp_path / "silent.wav"
    sf.write(stereo, np.stack([square, square], 1), 44100, subtype="PCM_16")
    sf.write(silent, np.zeros(8000), 8000, subtype="PCM_16")
    assert sf.info(stereo).channels == 2 and sf.info(stereo).samplerate == 44100
    # as a user sees it: a process of its own (pytest records warnings instead of showing them)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lstmkit.cli.main",
            "speech",
            "transcribe",
            "--model",
            str(speech_model),
            str(stereo),
            str(silent),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == (
        f"lstmkit: warning: {stereo} is clipped (over 1% of samples at full scale)\n"
        f"lstmkit: warning: {silent} is silent (peak below -60 dBFS): empty transcript\n"
    )
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{stereo}\t") and lines[1] == f"{silent}\t"
    assert lines[0].removeprefix(f"{stereo}\t") in list("0123456789")


def test_main_puts_the_format_back(speech_model, tmp_path):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(8000), 8000, subtype="PCM_16")
    before = warnings.formatwarning
    with pytest.warns(UserWarning, match="silent") as caught:  # still a warning to callers
        rc, stdout, _ = run(["speech", "transcribe", "--model", str(speech_model), str(silent)])
    assert (rc, stdout) == (0, f"{silent}\t\n") and len(caught) == 1
    assert warnings.formatwarning is before
