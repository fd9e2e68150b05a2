"""A speech stream through a session: audio sent in chunks gives the CTC log-probabilities
and transcript of the Predictor's own streaming pass over the whole recording."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from lstmkit.data.audio import read_wav
from lstmkit.serve.app import create_app
from lstmkit.serve.config import BatchConfig
from lstmkit.serve.models import load_models
from lstmkit.tasks import run
from lstmkit.tasks.speech.task import SAMPLE as FSDD_SAMPLE
from tests.serve.fixtures import QUIET, _train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def streaming_dir(one_thread, tmp_path_factory):
    config = {
        "task_kind": "connected",
        "data": {"train_utterances": 40, "val_utterances": 8, "batch_size": 8},
        # two views of each frame (80 values): the sessions' pending frames are that wide
        "features": {"normalize": "global+none"},
        "model": {"hidden_size": 12, "num_layers": 2, "bidirectional": False, "subsample": 3},
        "train": {**QUIET, "max_steps": 2},
    }
    return _train("speech", config, tmp_path_factory.mktemp("stream") / "digits")


@pytest.fixture(scope="module")
def audio(streaming_dir) -> np.ndarray:
    """Three recordings one after the other: a connected-digit utterance of ~1.5 s."""
    rate = run.load(streaming_dir).config.features.sample_rate
    with tarfile.open(FSDD_SAMPLE) as tar:
        parts = [
            read_wav(name, rate, data=tar.extractfile(f"recordings/{name}").read())
            for name in ("3_theo_5.wav", "7_nicolas_6.wav", "0_yweweler_5.wav")
        ]
    return np.concatenate(parts)


@torch.no_grad()
def test_chunks_equal_the_predictors_stream(streaming_dir, audio):
    predictor = run.load(streaming_dir)
    expected = torch.cat(list(predictor.stream(audio, 1000.0)))  # (T', C + 1)
    state = predictor.open_stream()
    sizes = [1, 700, 55, 2000, 333]  # odd sizes: frames and steps straddle the chunks
    start, outputs = 0, []
    for k in range(10_000):
        size = sizes[k % len(sizes)]
        chunk = audio[start : start + size]
        start += size
        final = start >= audio.size
        out, state = state.step(chunk.tolist(), {"final": final})
        outputs.append(out)
        if final:
            break
    assert expected.shape[0] > 10 and len(outputs) > 5
    assert sum(o["frames"] for o in outputs) == expected.shape[0] == state.log_probs.shape[0]
    assert torch.allclose(state.log_probs, expected, atol=1e-5)
    whole = predictor.transcribe_stream(audio, 1000.0)
    assert outputs[-1]["transcript"] == whole["transcript"] and outputs[-1]["final"]
    assert outputs[-1]["confidence"] == pytest.approx(whole["confidence"], abs=1e-5)


def test_speech_sessions_over_http(streaming_dir, audio):
    app = create_app(load_models({"digits": streaming_dir}, BatchConfig()))
    predictor = run.load(streaming_dir)
    with TestClient(app) as client:
        sid = client.post("/v1/models/digits/sessions").json()["session_id"]
        url = f"/v1/models/digits/sessions/{sid}/step"
        half = audio.size // 2
        first = client.post(url, json={"input": audio[:half].tolist()})
        last = client.post(url, json={"input": audio[half:].tolist(), "final": True})
        assert first.status_code == last.status_code == 200, last.text
        assert last.json()["transcript"] == predictor.transcribe_stream(audio, 250)["transcript"]
        done = client.post(url, json={"input": [0.0]})
        assert done.status_code == 422 and done.json()["error"]["field"] == "final"
        sid = client.post("/v1/models/digits/sessions").json()["session_id"]
        url = f"/v1/models/digits/sessions/{sid}/step"
        bad = client.post(url, json={"input": "hello"})
        assert bad.status_code == 422 and "list of samples" in bad.json()["error"]["message"]


def test_sessions_refuse_models_that_read_the_whole_utterance(streaming_dir):
    from lstmkit.tasks.base import InputError

    predictor = run.load(streaming_dir)
    predictor.config.features.trim_db = 20.0
    with pytest.raises(InputError, match="trim_db") as caught:
        predictor.open_stream()
    assert caught.value.field == "name"
