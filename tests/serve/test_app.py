"""The HTTP app through FastAPI's test client: every endpoint against the Predictor's own
results, and every refused request a 4xx JSON error naming its field (never a 500)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from lstmkit.serve.app import create_app
from lstmkit.serve.config import BatchConfig, Limits, ServeConfig
from lstmkit.serve.models import ServedModel, load_models, parse_model_specs
from lstmkit.tasks import run
from lstmkit.tasks.base import Predictor

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def client(model_dirs):
    config = ServeConfig(limits=Limits(max_inputs=8, max_chars=500, max_new_tokens=200))
    models = load_models({k: v for k, v in model_dirs.items()}, config.batching)
    with TestClient(create_app(models, config)) as c:
        yield c


def error(response, status: int, field: str, message: str = "") -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()["error"]
    assert (body["status"], body["field"]) == (status, field), body
    assert message in body["message"], body


def test_health_and_models(client, model_dirs):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "models": ["chars", "imdb"]}
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    results = json.loads((model_dirs["imdb"] / "results.json").read_text())
    imdb, chars = models["imdb"], models["chars"]
    assert (imdb["task"], imdb["widget"], chars["task"], chars["widget"]) == (
        "sentiment",
        "sentiment",
        "lm",
        "generate",
    )
    assert imdb["metrics"]["accuracy"] == results["accuracy"]
    assert "report" not in imdb["metrics"] and imdb["config"]["hidden_size"] == 8
    assert imdb["endpoints"] == ["predict", "gates"]
    assert chars["endpoints"] == ["predict", "sessions", "generate"]
    assert chars["parameters"] == sum(
        p.numel() for p in run.load(model_dirs["chars"]).model.parameters()
    )


def test_predict_equals_the_predictor(client, model_dirs):
    texts = ["A moving, beautifully shot film.", "Dull.", "The plot was thin but it worked."]
    got = client.post("/v1/models/imdb/predict", json={"inputs": texts})
    assert got.status_code == 200
    expected = run.load(model_dirs["imdb"]).predict(texts)
    for a, b in zip(got.json()["outputs"], expected):
        assert a["label"] == b["label"]
        assert a["probability"] == pytest.approx(b["probability"], abs=1e-6)
    prompt = {"prompt": "the ", "max_new": 12, "temperature": 0.7, "seed": 3}
    got = client.post("/v1/models/chars/predict", json={"inputs": [prompt, "the"]})
    expected = run.load(model_dirs["chars"]).predict([prompt, "the"])
    assert got.json()["outputs"][0] == expected[0]
    assert len(got.json()["outputs"][1]["text"]) == 200  # the Predictor's default


BAD = [
    # (model, body, status, field, message)
    ("imdb", {"inputs": []}, 422, "inputs", "at least 1 item"),
    ("imdb", {"inputs": "a text"}, 422, "inputs", "list"),
    ("imdb", {}, 422, "inputs", "Field required"),
    ("imdb", {"inputs": ["ok"], "extra": 1}, 422, "extra", "Extra inputs"),
    ("imdb", {"inputs": [3]}, 422, "inputs", "input 1 is a int, not a text"),
    ("imdb", {"inputs": ["   "]}, 422, "inputs[0]", "is empty"),
    ("imdb", {"inputs": ["x"] * 9}, 413, "inputs", "holds 9 inputs; at most 8"),
    ("imdb", {"inputs": ["word " * 101]}, 413, "inputs[0]", "505 characters; at most 500"),
    ("imdb", {"inputs": [[[[[["deep"]]]]]]}, 422, "inputs[0][0][0][0][0][0]", "nested deeper"),
    ("nope", {"inputs": ["x"]}, 404, "name", "no model named 'nope'; served: chars, imdb"),
    (
        "chars",
        {"inputs": [{"prompt": "the", "max_new": 201}]},
        422,
        "inputs[0].max_new",
        "must be in [0, 200], got 201",
    ),
    (
        "chars",
        {"inputs": [{"prompt": "the", "max_new": "9"}]},
        422,
        "inputs[0].max_new",
        "must be an integer",
    ),
    (
        "chars",
        {"inputs": [{"prompt": "the", "beam": 2, "colour": 1}]},
        422,
        "inputs",
        "unknown option(s) colour",
    ),
    ("chars", {"inputs": ["QQ"]}, 422, "inputs", "characters the model never saw"),
    ("chars", {"inputs": [{"max_new": 3}]}, 422, "inputs", "the prompt must be a text"),
]


@pytest.mark.parametrize("name, body, status, field, message", BAD)
def test_bad_predict_requests(client, name, body, status, field, message):
    error(client.post(f"/v1/models/{name}/predict", json=body), status, field, message)


def test_bad_bodies(client):
    url = "/v1/models/imdb/predict"
    headers = {"content-type": "application/json"}
    error(
        client.post(url, content=b'{"inputs": ["\xff\xfe"]}', headers=headers),
        400,
        "body",
        "not valid UTF-8 JSON",
    )
    error(
        client.post(url, content=b'{"inputs": [', headers=headers),
        422,
        "body",
        "not valid UTF-8 JSON",
    )
    error(client.post(url, content=b"", headers=headers), 422, "body")
    error(client.post(url, content=b"\x00\x01binary", headers=headers), 422, "body")
    error(
        client.post(url, content=b"x" * (1 << 20 + 1), headers=headers),
        413,
        "body",
        "over 1048576 bytes",
    )
    for depth, status in ((500, 422), (5000, 400)):  # pydantic's refusal, then json's
        nested = b"[" * depth + b"]" * depth
        got = client.post(url, content=b'{"inputs": ' + nested + b"}", headers=headers)
        error(got, status, "body" if status == 400 else got.json()["error"]["field"])
        assert len(got.json()["error"]["field"]) <= 80
    error(client.get("/v1/nothing"), 404, "path", "Not Found")
    error(client.put("/healthz"), 405, "method")


OVER_LIMIT = {"status": 413, "field": "body", "message": "the request body is over 1048576 bytes"}


def test_an_oversize_body_is_413_with_or_without_its_length(client):
    url, headers = "/v1/models/imdb/predict", {"content-type": "application/json"}
    sized = client.post(url, content=b"x" * 10_000_000, headers=headers)
    chunked = client.post(url, content=iter([b"x" * 65536] * 160), headers=headers)  # 10 MiB
    for r in (sized, chunked):
        assert r.status_code == 413 and r.json() == {"error": OVER_LIMIT}, r.text
    assert "content-length" not in chunked.request.headers
    assert chunked.request.headers["transfer-encoding"] == "chunked"
    fits = client.post(url, content=iter([b'{"inputs": ', b'["Great."]}']), headers=headers)
    assert fits.status_code == 200 and len(fits.json()["outputs"]) == 1


def run_body_limit(chunks, headers=(), drain=64 << 20):
    """The 413 middleware alone, fed ``chunks`` (made one at a time): what it answered, how
    many chunks it read, and the most memory allocated meanwhile."""
    import asyncio
    import tracemalloc

    from lstmkit.serve.app import BodyLimit

    async def app(scope, receive, send):
        raise AssertionError("an oversize body reached the app")

    chunks, read, sent = iter(chunks), [0], []

    async def receive():
        chunk = next(chunks, None)
        read[0] += chunk is not None
        return {"type": "http.request", "body": chunk or b"", "more_body": chunk is not None}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": list(headers)}
    tracemalloc.start()
    try:
        asyncio.run(BodyLimit(app, limit=1 << 20, drain=drain)(scope, receive, send))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    start, body = sent
    return start["status"], dict(start["headers"]), json.loads(body["body"]), read[0], peak


def test_an_oversize_body_is_discarded_as_it_comes():
    # 64 MiB in 64 KiB chunks: all read (the client may write it all before reading the
    # answer), none kept: the peak is the 1 MiB limit and a few chunks, not the body
    status, headers, body, read, peak = run_body_limit(bytes(1 << 16) for _ in range(1024))
    assert (status, body, read) == (413, {"error": OVER_LIMIT}, 1024)
    assert b"connection" not in headers  # the body was read to its end: the connection is fine
    assert peak < 2 << 20, peak
    # past `drain` bytes the rest is left unread and the connection closed after the 413
    status, headers, body, read, _ = run_body_limit(
        (bytes(1 << 20) for _ in range(64)), drain=8 << 20
    )
    assert (status, body, read, headers[b"connection"]) == (413, {"error": OVER_LIMIT}, 9, b"close")
    # a declared length over the limit: a client waiting for 100 Continue is answered unread
    declared = [(b"content-length", b"10000000"), (b"expect", b"100-continue")]
    status, headers, body, read, _ = run_body_limit([b"x" * 1000], headers=declared)
    assert (status, body, read, headers[b"connection"]) == (413, {"error": OVER_LIMIT}, 0, b"close")


def test_the_docs_page_loads_nothing_from_elsewhere(client):
    import re

    from lstmkit.serve.app import STATIC

    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert re.findall(r"https?://", page.text) == []
    assert '"validatorUrl": null' in page.text  # no badge from the online validator
    refs = re.findall(r'(?:href|src)="([^"]*)"', page.text)
    assert refs == [
        "/static/swagger/swagger-ui.css",
        "/static/swagger/favicon-32x32.png",
        "/static/swagger/swagger-ui-bundle.js",
    ]
    assert "url: '/openapi.json'" in page.text
    types = ["text/css; charset=utf-8", "image/png", "text/javascript; charset=utf-8"]
    for ref, content_type in zip(refs, types):
        asset = client.get(ref)
        assert (asset.status_code, asset.headers["content-type"]) == (200, content_type), ref
        assert asset.content == (STATIC / ref.removeprefix("/static/")).read_bytes()
    assert "SwaggerUIBundle" in client.get(refs[2]).text


def test_every_static_file_is_package_data():
    import glob

    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["lstmkit"]
    shipped = {Path(f) for p in patterns for f in glob.glob(str(root / "lstmkit" / p))}
    static = {f for f in (root / "lstmkit/serve/static").rglob("*") if f.is_file()}
    assert len(static) >= 9 and static - shipped == set()


def test_task_endpoints_on_the_wrong_task(client):
    error(
        client.post("/v1/models/imdb/generate", json={"prompt": "a"}),
        404,
        "name",
        "(sentiment) has no text generation",
    )
    error(client.post("/v1/models/imdb/sessions"), 404, "name", "no streaming sessions")
    error(
        client.post("/v1/models/chars/gates", json={"text": "a"}), 404, "name", "no gate heat-maps"
    )
    error(
        client.post("/v1/models/chars/transcribe", content=b"RIFF"), 404, "name", "no transcription"
    )


def test_gates_per_token(client, model_dirs):
    text = "A fine, fine film."
    got = client.post("/v1/models/imdb/gates", json={"text": text})
    assert got.status_code == 200, got.text
    body = got.json()
    predictor = run.load(model_dirs["imdb"])
    rnn, x, tokens = predictor.gate_inputs(text)
    _, _, gates = rnn(x, return_gates=True)
    assert body["tokens"] == tokens and len(tokens) == 6
    for name in ("f", "i", "o", "c"):
        expected = getattr(gates, name)[0].mean(-1)  # layer 0, forward: (L,)
        assert body["gates"][name] == pytest.approx(expected.tolist(), abs=1e-5)
    assert body["label"] == predictor.predict([text])[0]["label"]
    empty = client.post("/v1/models/imdb/gates", json={"text": ""})
    error(empty, 422, "text", "at least 1 character")
    error(client.post("/v1/models/imdb/gates", json={"text": 5}), 422, "text")


class SlowPredictor(Predictor):
    """A toy task's predictor (the server knows nothing of it): doubles numbers, slowly."""

    def predict(self, inputs):
        time.sleep(0.3)
        return [{"double": 2 * float(x)} for x in inputs]


def test_a_new_task_is_served_and_a_slow_request_times_out(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"task": "toy", "config": {}}))
    predictor = SlowPredictor("toy", None, torch.nn.Linear(1, 1), {}, tmp_path)
    config = ServeConfig(limits=Limits(timeout_s=0.1), batching=BatchConfig(enabled=False))
    fast = ServeConfig(batching=BatchConfig(enabled=False))
    for cfg, status in ((config, 504), (fast, 200)):
        app = create_app({"toy": ServedModel("toy", predictor, cfg.batching)}, cfg)
        with TestClient(app) as c:
            r = c.post("/v1/models/toy/predict", json={"inputs": [1.5, 2]})
            models = c.get("/v1/models").json()["models"]
        assert models[0]["widget"] == "generic" and models[0]["task"] == "toy"
        if status == 504:
            error(r, 504, "timeout", "no result within 0.1 s")
        else:
            assert r.json() == {"outputs": [{"double": 3.0}, {"double": 4.0}]}


def test_model_specs_and_bad_directories(tmp_path, model_dirs):
    assert parse_model_specs([str(model_dirs["imdb"]), f"x={tmp_path}"]) == {
        "imdb": model_dirs["imdb"],
        "x": tmp_path,
    }
    for specs, message in [
        ([], "give at least one --model"),
        (["a=x", "a=y"], "two models named 'a'"),
        (["a b=x"], "the name 'a b' must be"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_model_specs(specs)
    with pytest.raises(ValueError, match=f"cannot serve model 'm' from {tmp_path}: .*no config"):
        load_models({"m": tmp_path}, BatchConfig())
