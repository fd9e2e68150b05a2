"""The other tasks through the same server: forecasts from posted histories (the generic
predict), speech by WAV upload (never a server-side path), with their errors."""

from __future__ import annotations

import tarfile

import pytest
from fastapi.testclient import TestClient

from lstmkit.data.audio import read_wav
from lstmkit.serve.app import create_app
from lstmkit.serve.config import Limits, ServeConfig
from lstmkit.serve.models import load_models
from lstmkit.tasks import run
from lstmkit.tasks.speech.task import SAMPLE as FSDD_SAMPLE
from tests.serve.fixtures import QUIET, _train

pytestmark = pytest.mark.usefixtures("one_thread")
TINY_TRANSLATE = {
    "data": {"vocab_size": 300},
    "model": {"emb_size": 16, "enc_hidden": 16, "dec_hidden": 24},
    "decode": {"beam": 2},
    "train": {**QUIET, "max_steps": 3},
}


@pytest.fixture(scope="module")
def dirs(one_thread, tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    speech = {"model": {"hidden_size": 12, "num_layers": 1}, "train": {**QUIET, "max_steps": 2}}
    return {
        "digits": _train("speech", speech, root / "digits"),
        "hourly": _train("forecast", {"train": {**QUIET, "max_steps": 2}}, root / "hourly"),
        "de-en": _train("translate", TINY_TRANSLATE, root / "de-en"),
    }


@pytest.fixture(scope="module")
def client(dirs):
    config = ServeConfig(limits=Limits(max_audio_seconds=1.0))
    with TestClient(create_app(load_models(dirs, config.batching), config)) as c:
        yield c


@pytest.fixture(scope="module")
def wav() -> bytes:
    with tarfile.open(FSDD_SAMPLE) as tar:
        return tar.extractfile("recordings/3_theo_5.wav").read()


def test_forecast_from_posted_history(client, dirs):
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert models["hourly"]["widget"] == "forecast" and models["digits"]["widget"] == "speech"
    history = [10.0 + (t % 24) for t in range(200)]
    r = client.post("/v1/models/hourly/predict", json={"inputs": [history, [5.0] * 10]})
    assert r.status_code == 200
    expected = run.load(dirs["hourly"]).predict([history, [5.0] * 10])
    got = r.json()["outputs"]
    assert [len(o["forecast"]) for o in got] == [48, 48]
    assert got[0]["forecast"] == pytest.approx(expected[0]["forecast"], rel=1e-6)
    for inputs, message in [
        ([[1, "a"]], "input 1 is not a list of numbers"),
        ([[]], "input 1 must be a non-empty list"),
        ([[1.0, -2.0]], "has the value -2"),
    ]:
        r = client.post("/v1/models/hourly/predict", json={"inputs": inputs})
        assert r.status_code == 422 and message in r.json()["error"]["message"], r.text


def store_values(client, sid):
    return client.app.state.sessions._sessions[sid].state.values


def test_forecast_sessions_equal_one_shot_forecasts(client, dirs):
    predictor = run.load(dirs["hourly"])
    keep = predictor.open_stream().keep()
    assert keep == predictor.model.input_size
    series = [10.0 + (t % 24) + 0.01 * t for t in range(2 * keep + 7)]
    sid = client.post("/v1/models/hourly/sessions").json()["session_id"]
    total = 0
    for size in (3, 1, keep - 5, 2 + keep, len(series) - 2 * keep - 1):  # past the kept tail
        chunk = series[total : total + size]
        r = client.post(f"/v1/models/hourly/sessions/{sid}/step", json={"input": chunk})
        total += size
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["values"], body["total"]) == (size, total)
        assert len(store_values(client, sid)) < keep + predictor.model.season
        (expected,) = predictor.predict([series[:total]])
        assert body["forecast"] == pytest.approx(expected["forecast"], rel=1e-6)
        # one level per quantile: pytest.approx compares flat lists and dicts only
        assert body["quantiles"].keys() == expected["quantiles"].keys()
        for q, values in expected["quantiles"].items():
            assert body["quantiles"][q] == pytest.approx(values, rel=1e-6), q
    assert total == len(series)
    for chunk, message in [
        ([], ""),
        (["a"], ""),
        ("12", "must be a non-empty list of numbers"),
        ([1.0, -5.0], "has the value -5"),
    ]:
        r = client.post(f"/v1/models/hourly/sessions/{sid}/step", json={"input": chunk})
        error = r.json()["error"]
        assert r.status_code == 422 and error["field"].startswith("input"), r.text
        assert message in error["message"], r.text
    # a refused chunk leaves the session as it was
    r = client.post(f"/v1/models/hourly/sessions/{sid}/step", json={"input": [series[-1]]})
    (expected,) = predictor.predict([series + [series[-1]]])
    assert r.json()["total"] == total + 1
    assert r.json()["forecast"] == pytest.approx(expected["forecast"], rel=1e-6)


def test_speech_by_wav_upload(client, dirs, wav):
    r = client.post(
        "/v1/models/digits/transcribe", content=wav, headers={"content-type": "audio/wav"}
    )
    assert r.status_code == 200, r.text
    predictor = run.load(dirs["digits"])
    audio = read_wav("x", predictor.config.features.sample_rate, data=wav)
    assert r.json() == predictor.transcribe_audio(audio)
    for body, status, message in [
        (b"", 422, "upload is empty"),
        (b"RIFF not really a wave", 422, "upload is not a readable WAV file"),
        (b"\x00" * 100, 422, "upload is not a readable WAV file"),
    ]:
        r = client.post("/v1/models/digits/transcribe", content=body)
        assert (r.status_code, r.json()["error"]["field"]) == (status, "body"), r.text
        assert message in r.json()["error"]["message"]


def test_speech_limits_and_no_server_paths(client, wav):
    import io

    import numpy as np
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(8000 * 2, np.float32) + 0.1, 8000, format="WAV")  # 2 s
    r = client.post("/v1/models/digits/transcribe", content=buffer.getvalue())
    expected = {"status": 413, "field": "body", "message": "the audio lasts 2.0 s; at most 1 s"}
    assert r.status_code == 413 and r.json()["error"] == expected
    # the generic predict would read file paths on the server: refused
    r = client.post("/v1/models/digits/predict", json={"inputs": ["/etc/passwd"]})
    assert r.status_code == 422 and "/transcribe" in r.json()["error"]["message"]


def test_translation_and_its_attention_map(client, dirs):
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert models["de-en"]["widget"] == "translate" and "attention" in models["de-en"]["endpoints"]
    texts = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."]
    r = client.post("/v1/models/de-en/predict", json={"inputs": texts})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == run.load(dirs["de-en"]).predict(texts)
    r = client.post("/v1/models/de-en/attention", json={"text": texts[0]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["translation"] == run.load(dirs["de-en"]).predict(texts[:1])[0]["translation"]
    assert len(out["weights"]) == len(out["target_tokens"]) >= 1
    for row in out["weights"]:
        assert len(row) == len(out["source_tokens"]) and sum(row) == pytest.approx(1, abs=1e-4)
    for body, status in [({"text": ""}, 422), ({"text": 3}, 422), ({"txt": "x"}, 422)]:
        r = client.post("/v1/models/de-en/attention", json=body)
        assert r.status_code == status, r.text
    r = client.post("/v1/models/de-en/predict", json={"inputs": [["not", "a", "text"]]})
    assert r.status_code == 422 and "list of strings" in r.json()["error"]["message"]
    r = client.post("/v1/models/hourly/attention", json={"text": "x"})
    assert r.status_code == 404 and "has no attention maps" in r.json()["error"]["message"]
