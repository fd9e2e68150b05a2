"""``lstmkit serve`` as a real uvicorn process (two workers) on a free loopback port:
start-up, a bad model directory refused at start-up, and the OpenAPI schema fuzzed by
schemathesis against the running server (every generated request answered as the schema
says, never a 500)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from lstmkit.serve.app import create_app

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*args: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lstmkit.cli.main",
            "serve",
            "--port",
            str(port),
            "--threads",
            "1",
            "--log-level",
            "warning",
            *args,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_ready(proc: subprocess.Popen, url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {proc.stderr.read()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise TimeoutError(f"no server at {url} after {seconds} s")


@pytest.fixture(scope="module")
def server(model_dirs):
    port = free_port()
    # two uvicorn worker processes (--workers: each loads the models itself)
    proc = start_server(
        "--model",
        f"imdb={model_dirs['imdb']}",
        "--model",
        f"chars={model_dirs['chars']}",
        "--limits.max_new_tokens",
        "20",
        "--workers",
        "2",
        port=port,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, seconds=120)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_process_serves_and_stops(server):
    models = httpx.get(f"{server}/v1/models").json()["models"]
    assert [m["name"] for m in models] == ["imdb", "chars"]
    r = httpx.post(f"{server}/v1/models/imdb/predict", json={"inputs": ["Great.", "Awful."]})
    assert r.status_code == 200 and len(r.json()["outputs"]) == 2
    answers = {
        httpx.post(f"{server}/v1/models/imdb/predict", json={"inputs": ["Fine."]}).json()[
            "outputs"
        ][0]["positive"]
        for _ in range(8)
    }
    assert len(answers) == 1  # whichever worker answers, the same model
    r = httpx.post(f"{server}/v1/models/chars/predict", json={"inputs": ["the"]})
    assert r.status_code == 422  # the default 200 new tokens is over --limits.max_new_tokens
    assert r.json()["error"]["field"] == "inputs[0].max_new"
    page = httpx.get(f"{server}/")
    assert page.status_code == 200 and "<title>lstmkit</title>" in page.text


def test_an_oversize_body_gets_413_over_the_socket(server):
    import json
    import urllib.error
    import urllib.request

    expected = {
        "error": {
            "status": 413,
            "field": "body",
            "message": "the request body is over 1048576 bytes",
        }
    }
    url = f"{server}/v1/models/imdb/predict"
    # urllib sends Connection: close and writes the whole 10 MB before reading the answer
    request = urllib.request.Request(
        url, data=b"x" * 10_000_000, headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413 and json.loads(refused.value.read()) == expected
    # chunked, no Content-Length: 160 chunks of 64 KiB, all written before reading
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(
            b"POST /v1/models/imdb/predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(160):
            s.sendall(b"10000\r\n" + b"x" * 65536 + b"\r\n")
        s.sendall(b"0\r\n\r\n")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ") and json.loads(body) == expected


def test_a_bad_model_directory_fails_start_up(tmp_path):
    proc = start_server("--model", str(tmp_path), port=free_port())
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip().splitlines() == [
        f"lstmkit: error: cannot serve model '{tmp_path.name}' from {tmp_path}: {tmp_path} is "
        "not a model directory (no config.json)"
    ]


# The schema is loaded when the module is collected, from the app that ``lstmkit serve`` runs
# (its schema names no model and no limit), so that schemathesis makes one test per operation
# at collection time; the running server must serve exactly this schema (checked below).
# Loading it from the server in a fixture instead (schemathesis.pytest.from_fixture) breaks on
# pytest >= 9.2: schemathesis 4.32's lazy loader reads the item's private ``_nodeid``, which
# pytest 9.2 no longer has.
SCHEMA = create_app({}).openapi()
schema = schemathesis.openapi.from_dict(SCHEMA)
# the transcribe endpoint's body is raw WAV bytes: fuzzed as such
schemathesis.serializer.alias("audio/wav", "application/octet-stream")


def test_the_server_serves_the_fuzzed_schema(server):
    assert httpx.get(f"{server}/openapi.json").json() == SCHEMA


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_schema_holds_under_fuzzing(case, server):
    # every default check: no 5xx, only documented status codes and content types, bodies
    # matching the response schemas, schema-invalid requests refused. Except one: a
    # schema-valid request may still be refused with 422 for what a schema cannot say
    # (characters the language model never saw, a text the tokenizer reduces to nothing)
    case.call_and_validate(base_url=server, excluded_checks=[positive_data_acceptance])
