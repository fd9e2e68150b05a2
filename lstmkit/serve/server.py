"""Run the app under uvicorn: ``lstmkit serve --model DIR [--model NAME=DIR ...]``.

Models are loaded before uvicorn starts, so a bad model directory fails start-up with a
one-line message instead of a server that answers 500. With ``--workers N`` each uvicorn
worker process loads the models itself (uvicorn imports :func:`app_from_env`, which reads
the settings this process put into ``LSTMKIT_SERVE``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from lstmkit.serve.config import ServeConfig
from lstmkit.serve.models import load_models, parse_model_specs

ENV = "LSTMKIT_SERVE"


def build_app(specs: list[str], config: ServeConfig, runtime: str = "eager") -> Any:
    """The app of a server process: its models loaded, each computing in its worker thread
    with its share of the threads (:func:`~lstmkit.serve.models.share_threads`)."""
    import torch

    from lstmkit.serve.app import create_app

    # The event loop's thread does no model work: one torch thread, set before anything is
    # loaded, so it never starts an OpenMP team beside the workers' (two teams of two on
    # two cores made every eager request 3-7x slower, BENCHMARKS.md)
    threads = config.threads or torch.get_num_threads()
    torch.set_num_threads(1)
    config = replace(config, threads=threads)
    models = load_models(
        parse_model_specs(specs), config.batching, runtime=runtime, threads=config.threads
    )
    return create_app(models, config)


def app_from_env() -> Any:
    """The app of a uvicorn worker process (``--workers N``)."""
    from lstmkit.config import from_dict

    settings = json.loads(os.environ[ENV])
    config = from_dict(ServeConfig, settings["config"])
    return build_app(settings["models"], config, settings["runtime"])


def serve(
    specs: list[str],
    config: ServeConfig,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    log_level: str = "info",
    runtime: str = "eager",
) -> None:
    """Load the models (failing fast on a bad one), then serve until interrupted."""
    import uvicorn

    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    app = build_app(specs, config, runtime)  # also checks every directory before forking workers
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level=log_level)
        return
    dirs = {name: str(Path(path).resolve()) for name, path in parse_model_specs(specs).items()}
    os.environ[ENV] = json.dumps(
        {
            "models": [f"{n}={p}" for n, p in dirs.items()],
            "config": asdict(config),
            "runtime": runtime,
        }
    )
    uvicorn.run(
        "lstmkit.serve.server:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
    )
