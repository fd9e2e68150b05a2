"""Load test of ``lstmkit serve`` on loopback, and the streaming-session step latency.

Run from the repository root (numbers in BENCHMARKS.md)::

    python -m benchmarks.serving --make-models runs/bench \\
        --imdb ../shared/data/imdb/aclImdb_v1_train.tar.gz \\
        --shakespeare ../shared/data/tinyshakespeare/train.txt
    python -m benchmarks.serving --sentiment runs/bench/imdb-cpu --lm runs/bench/shakespeare \\
        --json serving.json

``--make-models`` writes model directories with the architectures and tokenizers of the
``imdb-cpu`` and ``shakespeare-char-cpu`` presets after ONE training step: a step's cost does
not depend on what the weights have learned, so the timings are those of the trained models
(their accuracies are not, and none is reported here).

Sentiment: a real server process per runtime (eager PyTorch, ONNX Runtime, ONNX Runtime int8)
and micro-batching on/off; an ``httpx`` async client on the same machine keeps C requests in
flight (C = 1, 8, 32), each request one 100-word review, for a fixed number of requests (or
a time cap); reported: reviews per second and p50/p99 latency. The client shares the 2 CPU
cores with the server, as a local load test does.

Sessions: one character in, the next-character distribution out, for the Shakespeare model:
the step alone in-process on one thread (eager and ONNX Runtime), and over HTTP (one client,
one session, a server with one compute thread, eager and ONNX Runtime).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "lstmkit" / "data" / "samples" / "aclImdb_sample.tar.gz"


# -- model directories ---------------------------------------------------------------------------


def make_models(out: Path, imdb: str, shakespeare: str) -> None:
    """The two presets' architectures and tokenizers after one training step each."""
    from lstmkit.cli.common import preset_path
    from lstmkit.tasks import get_task, run
    from lstmkit.train.config import from_dict, load_yaml

    jobs = [
        ("sentiment", "imdb-cpu", imdb, "imdb-cpu"),
        ("lm", "shakespeare-char-cpu", shakespeare, "shakespeare"),
    ]
    for task, preset, data, name in jobs:
        config = load_yaml(preset_path(preset))
        config["data"] = {**config.get("data", {}), "path": data}
        config["train"] = {
            **config["train"],
            "max_steps": 1,
            "progress": False,
            "tensorboard": False,
        }
        t = get_task(task)
        run.train(t, from_dict(t.config_class, config), out / name, overwrite=True)


def reviews(n: int = 64, words: int = 100) -> list[str]:
    """``n`` reviews of the bundled sample cut to exactly ``words`` words."""
    out = []
    with tarfile.open(SAMPLE) as tar:
        for member in tar:
            labelled = "/train/pos/" in member.name or "/train/neg/" in member.name
            if member.isfile() and labelled:
                text = tar.extractfile(member).read().decode("utf-8").split()
                if len(text) >= words:
                    out.append(" ".join(text[:words]))
            if len(out) == n:
                return out
    raise RuntimeError(f"the sample has fewer than {n} reviews of {words} words")


# -- a server process ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``lstmkit serve`` in a subprocess on a free loopback port."""

    def __init__(self, *args: str, threads: int = 2) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lstmkit.cli.main",
                "serve",
                "--port",
                str(self.port),
                "--threads",
                str(threads),
                "--log-level",
                "warning",
                *args,
            ],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __enter__(self) -> Server:
        import httpx

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.proc.stderr.read()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.3)
        raise TimeoutError("the server did not start")

    def __exit__(self, *exc: Any) -> None:
        self.proc.terminate()
        self.proc.wait(30)


# -- load ------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


class Connection:
    """One keep-alive HTTP/1.1 connection that POSTs JSON and reads the answer by its
    Content-Length: the least a client can do per request, so the load generator, which
    shares the two cores with the server, takes as little of them as it can (an ``httpx``
    client spends about 1 ms of CPU a request; ``--client httpx`` measures with it)."""

    def __init__(self, url: str) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname, parts.port, parts.path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        header = await self.reader.readuntil(b"\r\n\r\n")
        status = int(header.split(b" ", 2)[1])
        length = 0
        for line in header.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def load(
    url: str,
    bodies: list[dict],
    concurrency: int,
    requests: int,
    seconds: float,
    client: str = "raw",
    warmup: int = 2,
) -> dict[str, float]:
    """Keep ``concurrency`` requests in flight until ``requests`` are answered (or
    ``seconds`` pass); latencies in ms, throughput in requests per second. ``client``:
    ``raw`` (:class:`Connection`, one per concurrent request) or ``httpx``. Each
    connection first sends ``warmup`` requests, not counted: the steady state is measured,
    not C connections opening at once (their first answers took ~260 ms at C = 32)."""
    import httpx

    latencies: list[float] = []
    sent = 0
    errors = 0
    encoded = [json.dumps(b).encode() for b in bodies]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    connections = [Connection(url) for _ in range(concurrency)]
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:

        async def post(k: int, body: bytes) -> int:
            if client == "raw":
                return (await connections[k].post(body))[0]
            headers = {"content-type": "application/json"}
            return (await http.post(url, content=body, headers=headers)).status_code

        async def warm(k: int) -> None:
            for i in range(warmup):
                await post(k, encoded[(k + i) % len(encoded)])

        await asyncio.gather(*(warm(k) for k in range(concurrency)))
        start = time.perf_counter()

        async def worker(k: int) -> None:
            nonlocal sent, errors
            while sent < requests and time.perf_counter() - start < seconds:
                body = encoded[sent % len(encoded)]
                sent += 1
                t0 = time.perf_counter()
                status = await post(k, body)
                latencies.append((time.perf_counter() - t0) * 1000)
                errors += status != 200

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - start
    for c in connections:
        c.close()
    return {
        "requests": len(latencies),
        "errors": errors,
        "throughput": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
    }


def sentiment_table(
    model: Path,
    concurrencies: list[int],
    requests: int,
    seconds: float,
    runtimes: list[str],
    batching_modes: list[str] = ("on", "off"),
    client: str = "raw",
    server_flags: list[str] = (),
    threads: int = 2,
) -> list[dict[str, Any]]:
    bodies = [{"inputs": [r]} for r in reviews()]
    rows = []
    for runtime in runtimes:
        for batching in (mode == "on" for mode in batching_modes):
            flags = ["--model", f"imdb={model}", "--runtime", runtime, *server_flags]
            if not batching:
                flags.append("--no-batching")
            with Server(*flags, threads=threads) as server:
                url = f"{server.url}/v1/models/imdb/predict"
                asyncio.run(load(url, bodies, 4, 40, 30, client))  # warm-up
                for c in concurrencies:
                    n = max(requests, 10 * c)
                    result = asyncio.run(load(url, bodies, c, n, seconds, client))
                    row = {
                        "runtime": runtime,
                        "batching": batching,
                        "concurrency": c,
                        "client": client,
                        **result,
                    }
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    return rows


# -- sessions --------------------------------------------------------------------------------------


def step_latency(model: Path, steps: int) -> dict[str, Any]:
    """p50/p99 of one session step (one character in) in-process on one thread (eager and
    ONNX Runtime) and over HTTP."""

    import httpx
    import torch

    from lstmkit.tasks import run
    from lstmkit.tasks.export import use_graph

    torch.set_num_threads(1)
    text = (ROOT / "README.md").read_text()[:steps]
    out: dict[str, Any] = {}
    for runtime in ("eager", "onnx"):
        predictor = run.load(model, "cpu")
        if runtime == "onnx":
            use_graph(predictor, "onnx", threads=1)
        state = predictor.open_stream()
        chars = [c for c in text if not predictor.tokenizer.unknown(c)]
        times = []
        for c in chars[: steps + 20]:
            t0 = time.perf_counter()
            _, state = state.step(c, {"top_k": 5})
            times.append((time.perf_counter() - t0) * 1000)
        times = times[20:]  # warm-up
        out[f"in_process_{runtime}"] = {
            "p50_ms": percentile(times, 50),
            "p99_ms": percentile(times, 99),
            "steps": len(times),
        }
    for runtime in ("eager", "onnx"):
        with Server("--model", f"lm={model}", "--runtime", runtime, threads=1) as server:
            sid = httpx.post(f"{server.url}/v1/models/lm/sessions").json()["session_id"]
            times = asyncio.run(
                _steps(f"{server.url}/v1/models/lm/sessions/{sid}/step", chars[: steps + 20])
            )
        times = times[20:]
        out[f"http_{runtime}"] = {
            "p50_ms": percentile(times, 50),
            "p99_ms": percentile(times, 99),
            "steps": len(times),
        }
    return out


async def _steps(url: str, chars: list[str]) -> list[float]:
    """Each character posted as one session step (the raw client); the latencies in ms."""
    connection, times = Connection(url), []
    for c in chars:
        t0 = time.perf_counter()
        status, body = await connection.post(json.dumps({"input": c}).encode())
        times.append((time.perf_counter() - t0) * 1000)
        if status != 200:
            raise RuntimeError(f"step answered {status}: {body[:200]!r}")
    connection.close()
    return times


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| runtime | micro-batching | concurrency | reviews/s | p50 ms | p99 ms | requests |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['runtime']} | {'on' if r['batching'] else 'off'} | "
            f"{r['concurrency']} | {r['throughput']:.1f} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['requests']} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--make-models", metavar="OUT", help="write the two model directories")
    p.add_argument("--imdb", help="IMDB archive for --make-models")
    p.add_argument("--shakespeare", help="Tiny Shakespeare text for --make-models")
    p.add_argument("--sentiment", help="a sentiment model directory to load-test")
    p.add_argument("--lm", help="a character LM directory for the session step latency")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--requests", type=int, default=300, help="per cell (at least 10 x C)")
    p.add_argument("--seconds", type=float, default=60, help="time cap per cell")
    p.add_argument("--runtimes", nargs="+", default=["eager", "onnx", "int8"])
    p.add_argument("--batching", nargs="+", choices=("on", "off"), default=["on", "off"])
    p.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="the load generator's HTTP client (default raw: see Connection)",
    )
    p.add_argument("--threads", type=int, default=2, help="the server's compute threads")
    p.add_argument(
        "--server-flag",
        action="append",
        default=[],
        metavar="FLAG",
        help="passed to lstmkit serve (e.g. --server-flag=--max-wait-ms=10)",
    )
    p.add_argument("--steps", type=int, default=500, help="session steps timed")
    p.add_argument("--json", help="write all numbers here")
    args = p.parse_args()
    if args.make_models:
        make_models(Path(args.make_models), args.imdb, args.shakespeare)
        return
    import torch

    result: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if args.sentiment:
        rows = sentiment_table(
            Path(args.sentiment),
            args.concurrency,
            args.requests,
            args.seconds,
            args.runtimes,
            args.batching,
            args.client,
            args.server_flag,
            args.threads,
        )
        result["sentiment"] = rows
        print(markdown(rows))
    if args.lm:
        result["sessions"] = step_latency(Path(args.lm), args.steps)
        print(json.dumps(result["sessions"], indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
