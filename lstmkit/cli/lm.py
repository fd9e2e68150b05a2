"""``lstmkit lm``: the generic train/evaluate/predict (:mod:`lstmkit.cli.tasks`) with a text
``--data``, and ``lm generate`` (streamed)."""

from __future__ import annotations

import argparse
import codecs
import math
import sys
from typing import Any

from lstmkit.cli.hooks import TaskCLI


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="a UTF-8 text file or folder (data.path)")


def train_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {"data.path": args.data}


def add_evaluate_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=16, help="parallel streams (1: one)")


def evaluate_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"batch_size": getattr(args, "batch_size", 16)}


def unescape(prompt: str) -> str:
    """``\\n``, ``\\t``, ``\\u00d7`` ... read as escapes; other characters stay as they are."""
    return codecs.decode(prompt.encode("latin-1", "backslashreplace"), "unicode_escape")


def _generate(args: argparse.Namespace, overrides: list[str]) -> int:
    from lstmkit.tasks.lm.generate import generate
    from lstmkit.tasks.lm.task import TASK

    if overrides:
        raise ValueError(f"lm generate takes no config overrides, got {' '.join(overrides)}")
    if not math.isfinite(args.temperature):
        raise ValueError(f"--temperature must be a finite number >= 0, got {args.temperature}")
    predictor = TASK.load(args.model)
    prompt = unescape(args.prompt) if args.escapes else args.prompt
    pieces = generate(
        predictor.model,
        predictor.tokenizer,
        prompt,
        args.max_new,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        beam=args.beam,
        length_penalty=args.length_penalty,
        seed=args.seed,
    )
    first = next(pieces, "")  # the prompt is checked before anything is written
    sys.stdout.write(prompt + first)
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="continue a prompt, streamed token by token")
    p.add_argument("--model", required=True, help="a model directory from lm train")
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    p.add_argument("--escapes", action="store_true", help="read \\n etc. in --prompt")
    p.add_argument("--max-new", type=int, default=500, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=1.0, help="0: greedy")
    p.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    p.add_argument("--top-p", type=float, help="nucleus sampling with this mass")
    p.add_argument("--beam", type=int, help="beam search with this width")
    p.add_argument("--length-penalty", type=float, default=1.0, help="beam length penalty")
    p.add_argument("--seed", type=int, help="seed for reproducible samples")
    p.set_defaults(func=_generate)


CLI = TaskCLI(
    add_train_flags=add_train_flags,
    train_flags=train_flags,
    add_evaluate_flags=add_evaluate_flags,
    evaluate_options=evaluate_options,
    add_commands=add_commands,
)
