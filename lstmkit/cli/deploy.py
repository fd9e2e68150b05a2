"""``lstmkit serve`` and ``lstmkit export``: a trained model directory put to use.

``serve`` runs the HTTP server (:mod:`lstmkit.serve`) over any model directories; ``export``
writes an ONNX graph (optionally int8) or a Hub-style folder (:mod:`lstmkit.export`).
Nothing heavy is imported before a command runs, so ``lstmkit --help`` stays fast.
"""

from __future__ import annotations

import argparse
from typing import Any


def _config(args: argparse.Namespace, overrides: list[str]) -> Any:
    """The server's :class:`ServeConfig` from flags and ``--limits.KEY V`` style overrides."""
    from lstmkit.serve.config import ServeConfig
    from lstmkit.train.config import apply_overrides, from_dict

    data: dict[str, Any] = {"batching": {}, "threads": args.threads}
    if args.no_batching:
        data["batching"]["enabled"] = False
    if args.max_batch is not None:
        data["batching"]["max_batch"] = args.max_batch
    if args.max_wait_ms is not None:
        data["batching"]["max_wait_ms"] = args.max_wait_ms
    return from_dict(ServeConfig, apply_overrides(data, overrides))


def _serve(args: argparse.Namespace, overrides: list[str]) -> int:
    from lstmkit.serve.server import serve

    serve(
        args.model,
        _config(args, overrides),
        args.host,
        args.port,
        args.workers,
        args.log_level,
        args.runtime,
    )
    return 0


def _export(args: argparse.Namespace, overrides: list[str]) -> int:
    if overrides:
        raise ValueError(f"export takes no config overrides, got {' '.join(overrides)}")
    if args.format == "hub":
        from lstmkit.tasks.hub import save_pretrained_dir

        if args.quantize:
            raise ValueError("--quantize applies to --format onnx")
        print(save_pretrained_dir(args.model, args.out))
        return 0
    from lstmkit.tasks.export import export_onnx

    result = export_onnx(args.model, args.out, args.quantize, evaluate=not args.no_eval)
    print(f"wrote {', '.join(result['files'])} ({result['bytes']:,} bytes)")
    print(
        f"onnxruntime against eager on random inputs: max |difference| "
        f"{result['max_difference']:.2e}"
    )
    for name, scores in result.get("validation", {}).items():
        shown = ", ".join(
            f"{k} {v:+.4f}" if name.endswith("_change") else f"{k} {v:.4f}"
            for k, v in scores.items()
        )
        print(f"validation {name}: {shown}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "serve",
        help="HTTP server and web page for model directories",
        description="Serve model directories over HTTP (FastAPI + uvicorn): /v1/models, "
        "/v1/models/NAME/predict, streaming sessions, generation, the web page at /. Limits: "
        "--limits.max_inputs N, --limits.max_chars N, --limits.max_new_tokens N, "
        "--limits.timeout_s S, --limits.max_body_bytes N, --sessions.max_sessions N, "
        "--sessions.idle_timeout_s S.",
    )
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="[NAME=]DIR",
        help="a model directory, served as NAME (default: the folder's name); repeat for several",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    p.add_argument(
        "--threads", type=int, default=0, help="torch threads per process (default: torch's choice)"
    )
    p.add_argument(
        "--runtime",
        choices=("eager", "onnx", "int8"),
        default="eager",
        help="PyTorch (default), the ONNX graph in onnxruntime, or it in int8",
    )
    p.add_argument("--no-batching", action="store_true", help="run every request alone")
    p.add_argument("--max-batch", type=int, help="inputs per micro-batch (default 32)")
    p.add_argument("--max-wait-ms", type=float, help="micro-batch wait (default 5 ms)")
    p.add_argument("--log-level", default="info", help="uvicorn's log level (default info)")
    p.set_defaults(func=_serve)

    p = commands.add_parser(
        "export",
        help="a model directory as ONNX (optionally int8) or a Hub-style folder",
        description="--format onnx: the model's inference graph (LSTM layers as ONNX LSTM ops, "
        "a Scan loop for the variants the op lacks; every task: translate writes OUT's stem "
        "with .encoder.onnx and .decoder.onnx, the decoder one step with the state in and "
        "out) checked against the eager model with onnxruntime, and its score on the task's "
        "validation data beside eager's; --quantize int8: dynamic int8 weights. "
        "--format hub: a folder save_pretrained/from_pretrained read (with a model card).",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="a model directory")
    p.add_argument("--format", choices=("onnx", "hub"), default="onnx", help="default onnx")
    p.add_argument("--out", required=True, help="the .onnx file, or the hub folder")
    p.add_argument("--quantize", choices=("int8",), help="dynamic int8 quantization (onnx)")
    p.add_argument(
        "--no-eval",
        action="store_true",
        help="skip scoring the validation data (parity is always checked)",
    )
    p.set_defaults(func=_export)
