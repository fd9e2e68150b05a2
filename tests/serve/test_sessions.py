"""Streaming: a language model read chunk by chunk through a session equals one pass over
the concatenated text; sessions expire, are bounded, and close; generation streamed as
server-sent events equals the Predictor's text."""

from __future__ import annotations

import json

import pytest
import torch
from fastapi.testclient import TestClient

from lstmkit.serve.app import create_app
from lstmkit.serve.config import ServeConfig, SessionConfig
from lstmkit.serve.models import load_models
from lstmkit.serve.sessions import SessionStore
from lstmkit.tasks import run

pytestmark = pytest.mark.usefixtures("one_thread")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_client(model_dirs, clock=None, **sessions):
    config = ServeConfig(sessions=SessionConfig(**sessions))
    store = SessionStore(config.sessions, clock or Clock())
    models = load_models(
        {"chars": model_dirs["chars"], "imdb": model_dirs["imdb"]}, config.batching
    )
    return TestClient(create_app(models, config, store)), store


@pytest.fixture(scope="module")
def predictor(model_dirs):
    return run.load(model_dirs["chars"])


def open_session(client) -> str:
    r = client.post("/v1/models/chars/sessions")
    assert r.status_code == 201, r.text
    return r.json()["session_id"]


@torch.no_grad()
def test_chunks_equal_one_pass(model_dirs, predictor):
    chunks = ["the c", "a", "t sat on", " the mat.\n", "t"]
    client, _ = make_client(model_dirs)
    with client:
        sid = open_session(client)
        steps = [
            client.post(
                f"/v1/models/chars/sessions/{sid}/step",
                json={"input": c, "top_k": 3, "distribution": True},
            ).json()
            for c in chunks
        ]
    text = "".join(chunks)
    ids = torch.tensor(predictor.tokenizer.encode(text)).unsqueeze(1)  # (L, 1)
    logits, _ = predictor.model(ids)
    logp = logits[:, 0].float().log_softmax(-1)  # (L, V)
    per_token = logp[:-1].gather(1, ids[1:])[:, 0]  # log p(token t | tokens < t), t >= 1
    assert [s["step"] for s in steps] == [1, 2, 3, 4, 5]
    assert [s["tokens"] for s in steps] == [5, 1, 8, 10, 1]
    assert [s["scored"] for s in steps] == [4, 1, 8, 10, 1]
    ends = [4, 5, 13, 23, 24]  # tokens scored so far
    for s, start, end in zip(steps, [0, *ends[:-1]], ends):
        assert s["log_prob"] == pytest.approx(float(per_token[start:end].sum()), abs=1e-5)
    # after each chunk: the distribution one pass gives at that position
    positions = [4, 5, 13, 23, 24]
    for s, pos in zip(steps, positions):
        expected = logp[pos].exp()
        assert s["distribution"] == pytest.approx(expected.tolist(), abs=1e-6)
        top = expected.topk(3)
        assert [t["probability"] for t in s["next"]] == pytest.approx(top.values.tolist())
        tokens = [predictor.tokenizer.hf.id_to_token(int(i)) for i in top.indices]
        assert [t["token"] for t in s["next"]] == tokens


def test_sessions_expire_are_bounded_and_close(model_dirs):
    clock = Clock()
    client, store = make_client(model_dirs, clock, max_sessions=2, idle_timeout_s=60)
    with client:
        a, b = open_session(client), open_session(client)
        full = client.post("/v1/models/chars/sessions")
        assert full.status_code == 429 and full.json()["error"]["field"] == "sessions"
        assert "2 sessions are open" in full.json()["error"]["message"]
        step = f"/v1/models/chars/sessions/{a}/step"
        clock.now += 50
        assert client.post(step, json={"input": "the"}).status_code == 200  # a is used
        clock.now += 50  # b idle 100 s > 60: gone; a idle 50 s: kept
        assert store.expire() == 1 and len(store) == 1
        gone = client.post(f"/v1/models/chars/sessions/{b}/step", json={"input": "t"})
        assert gone.status_code == 404 and gone.json()["error"]["field"] == "session_id"
        assert "expired after 60 s idle" in gone.json()["error"]["message"]
        c = open_session(client)  # room again
        assert client.delete(f"/v1/models/chars/sessions/{c}").status_code == 204
        assert client.delete(f"/v1/models/chars/sessions/{c}").status_code == 404
        # a session belongs to its model
        wrong = client.post(f"/v1/models/imdb/sessions/{a}/step", json={"input": "t"})
        assert wrong.status_code == 404 and "no streaming sessions" in wrong.text
        bad = client.post(step, json={"input": "QQ"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "input"
        assert client.post(step, json={"input": ""}).status_code == 422
        assert client.post(step, json={"input": "t", "top_k": 0}).json()["error"]["field"] == (
            "top_k"
        )
        assert client.post(step, json={"input": "t"}).json()["step"] == 2  # refusals kept out


def test_the_state_memory_bound(model_dirs, predictor):
    # the model's state: h and c of layers of 16 and 8 units, plus 14 logits, float32
    state_bytes = (2 * 16 + 2 * 8 + 14) * 4
    client, store = make_client(model_dirs, max_state_bytes=state_bytes * 2)
    with client:
        a, b, c = (open_session(client) for _ in range(3))
        for sid in (a, b):
            r = client.post(f"/v1/models/chars/sessions/{sid}/step", json={"input": "the"})
            assert r.status_code == 200
        assert store.total_bytes == 2 * state_bytes
        r = client.post(f"/v1/models/chars/sessions/{c}/step", json={"input": "the"})
        assert r.status_code == 429 and "state memory bound (496 bytes)" in r.text


def events(body: str) -> list[tuple[str, dict]]:
    out = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines.get("event", "message"), json.loads(lines["data"])))
    return out


def test_generation_streams_the_predictors_text(model_dirs, predictor):
    client, _ = make_client(model_dirs)
    options = {"prompt": "the ", "max_new_tokens": 15, "temperature": 0.8, "seed": 7}
    with client, client.stream("POST", "/v1/models/chars/generate", json=options) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        got = events(r.read().decode())
    expected = predictor.predict(
        [{"prompt": "the ", "max_new": 15, "temperature": 0.8, "seed": 7}]
    )[0]["text"]
    pieces = [data["text"] for kind, data in got[:-1]]
    assert len(pieces) == 15 and all(kind == "message" for kind, _ in got[:-1])
    assert "".join(pieces) == expected
    assert got[-1] == ("done", {"prompt": "the ", "text": expected})
    with client:
        r = client.post("/v1/models/chars/generate", json={"prompt": "QQ"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "prompt"
        r = client.post("/v1/models/chars/generate", json={"prompt": "t", "max_new_tokens": 5000})
        assert r.status_code == 422 and r.json()["error"]["field"] == "max_new_tokens"
        r = client.post("/v1/models/chars/generate", json={"prompt": "t", "temperature": -1})
        assert r.status_code == 422 and r.json()["error"]["field"] == "temperature"
