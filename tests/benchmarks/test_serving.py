"""The load generator of benchmarks/serving.py against a local HTTP server: the raw
keep-alive client and httpx count the same answers, statuses included."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from benchmarks.serving import Connection, load, percentile


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn
    answered = 0

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        Echo.answered += 1
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status = 200 if body["inputs"][0] != "bad" else 422
        out = json.dumps({"outputs": body["inputs"], "path": self.path}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/models/imdb/predict"
    server.shutdown()


def test_connection_reuses_one_socket(url):
    async def two() -> list:
        c = Connection(url)
        first = await c.post(json.dumps({"inputs": ["é"]}).encode())
        writer = c.writer
        second = await c.post(json.dumps({"inputs": ["bad"]}).encode())
        assert c.writer is writer  # keep-alive: the same connection
        c.close()
        return [first, second]

    (s1, b1), (s2, b2) = asyncio.run(two())
    assert (s1, json.loads(b1)) == (200, {"outputs": ["é"], "path": "/v1/models/imdb/predict"})
    assert s2 == 422 and json.loads(b2)["outputs"] == ["bad"]


@pytest.mark.parametrize("client", ["raw", "httpx"])
def test_load_counts_requests_and_errors(url, client):
    bodies = [{"inputs": ["a"]}, {"inputs": ["bad"]}, {"inputs": ["b"]}, {"inputs": ["c"]}]
    before = Echo.answered
    result = asyncio.run(load(url, bodies, concurrency=3, requests=20, seconds=30, client=client))
    assert result["requests"] == 20 and result["errors"] == 5  # every 4th body is refused
    assert Echo.answered - before == 20 + 3 * 2  # and 2 uncounted warm-up requests a connection
    assert result["throughput"] > 0 and 0 < result["p50_ms"] <= result["p99_ms"]


def test_percentile():
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (
        51.0,
        99.0,
        100.0,
    )
