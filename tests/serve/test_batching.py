"""Micro-batching: concurrent requests share model calls, and every request gets exactly what
it gets alone (to float rounding: the same reviews, padded to another length)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from lstmkit.serve.app import create_app
from lstmkit.serve.config import BatchConfig, ServeConfig
from lstmkit.serve.models import load_models
from lstmkit.tasks import run

pytestmark = pytest.mark.usefixtures("one_thread")

REVIEWS = [
    "A moving, beautifully shot film.",
    "Dull.",
    "The plot was thin but the acting carried it, and the score is wonderful.",
    "I walked out after twenty minutes; the worst film of the year by far.",
    "Fine.",
    "Not bad at all, though far too long for what it has to say about its characters.",
] * 4  # 24 requests of 2 to 17 tokens


async def post_all(app, bodies: list[dict]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await asyncio.gather(
            *(client.post("/v1/models/imdb/predict", json=b) for b in bodies)
        )


def serve(model_dirs, batching: BatchConfig):
    config = ServeConfig(batching=batching)
    models = load_models({"imdb": model_dirs["imdb"]}, batching)
    return create_app(models, config), models["imdb"]


@pytest.mark.parametrize("max_batch", [32, 5])
def test_concurrent_requests_are_batched_and_equal_one_by_one(model_dirs, max_batch):
    app, served = serve(model_dirs, BatchConfig(max_batch=max_batch, max_wait_ms=50))
    responses = asyncio.run(post_all(app, [{"inputs": [r]} for r in REVIEWS]))
    assert all(r.status_code == 200 for r in responses)
    sizes = served.batcher.batch_sizes
    # all 24 requests arrive within the 50 ms wait: batches are full up to the last
    assert sum(sizes) == 24 and max(sizes) == min(max_batch, 24) and len(sizes) < 24
    predictor = run.load(model_dirs["imdb"])
    for review, response in zip(REVIEWS, responses):
        alone = predictor.predict([review])[0]
        got = response.json()["outputs"][0]
        assert got["label"] == alone["label"]
        assert got["positive"] == pytest.approx(alone["positive"], abs=1e-6)


def test_batching_off_runs_each_request_alone(model_dirs):
    app, served = serve(model_dirs, BatchConfig(enabled=False))
    responses = asyncio.run(post_all(app, [{"inputs": [r]} for r in REVIEWS[:6]]))
    assert all(r.status_code == 200 for r in responses)
    assert served.batcher.batch_sizes == [1] * 6


def test_a_refused_input_fails_only_its_own_request(model_dirs):
    app, served = serve(model_dirs, BatchConfig(max_wait_ms=50))
    bodies = [{"inputs": [r]} for r in REVIEWS[:5]]
    bodies.insert(2, {"inputs": ["<br /><br />"]})  # empty once cleaned: the model refuses it
    responses = asyncio.run(post_all(app, bodies))
    assert [r.status_code for r in responses] == [200, 200, 422, 200, 200, 200]
    assert responses[2].json()["error"] == {
        "status": 422,
        "field": "inputs",
        "message": "input 1 is empty",
    }
    # one batched call of all six (refused), then each request alone
    assert served.batcher.batch_sizes == [6, 1, 1, 1, 1, 1, 1]


def test_a_lone_request_does_not_wait_for_company(model_dirs):
    import time

    app, served = serve(model_dirs, BatchConfig(max_wait_ms=2000))
    start = time.perf_counter()
    responses = asyncio.run(post_all(app, [{"inputs": [REVIEWS[0]]}]))
    assert responses[0].status_code == 200
    assert time.perf_counter() - start < 1.0  # not the 2 s wait: the server was idle
    assert served.batcher.batch_sizes == [1]
