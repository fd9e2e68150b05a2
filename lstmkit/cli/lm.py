"""``lstmkit lm train|evaluate|generate``: LSTM language models and text generation."""

from __future__ import annotations

import argparse
import json
import sys

from lstmkit.cli.common import add_train_arguments, config_from_args, write_json


def _train(args: argparse.Namespace, overrides: list[str]) -> int:
    from lstmkit.tasks.lm import task

    config = task.load_config(config_from_args(args, overrides, {"data.path": args.data}))
    results = task.train(config, args.out, resume=args.resume)
    print(f"validation: {results['val_nats_per_char']:.4f} nats/char "
          f"({results['val_bits_per_char']:.4f} bits/char), perplexity "
          f"{results['val_perplexity']:.2f} per token, after {results['steps']} steps in "
          f"{results['seconds']} s")  # fmt: skip
    print(f"model directory: {args.out}")
    return 0


def _evaluate(args: argparse.Namespace, overrides: list[str]) -> int:
    from lstmkit.tasks.lm import task

    if overrides:
        raise ValueError(f"lm evaluate takes no config overrides, got {' '.join(overrides)}")
    results = task.evaluate(args.model, args.data, args.split, args.batch_size)
    print(json.dumps(results, indent=2))
    write_json(args.json, results)
    return 0


def _generate(args: argparse.Namespace, overrides: list[str]) -> int:
    from lstmkit.tasks.lm import task
    from lstmkit.tasks.lm.generate import generate

    if overrides:
        raise ValueError(f"lm generate takes no config overrides, got {' '.join(overrides)}")
    model, tokenizer, _ = task.load_model(args.model)
    prompt = args.prompt.encode().decode("unicode_escape") if args.escapes else args.prompt
    sys.stdout.write(prompt)
    for piece in generate(
        model, tokenizer, prompt, args.max_new, temperature=args.temperature,
        top_k=args.top_k, top_p=args.top_p, beam=args.beam,
        length_penalty=args.length_penalty, seed=args.seed,
    ):  # fmt: skip
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    lm = commands.add_parser("lm", help="language models: train, evaluate, generate")
    sub = lm.add_subparsers(dest="lm_command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train an LSTM language model on a text file or folder")
    add_train_arguments(p, default_out="runs/lm")
    p.add_argument("--data", help="a UTF-8 text file or folder (data.path)")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="nats per token and per character on a text file")
    p.add_argument("--model", required=True, help="a model directory from lm train")
    p.add_argument("--data", required=True, help="a UTF-8 text file or folder")
    p.add_argument(
        "--split", choices=("val", "test"),
        help="val: the last val_fraction of --data, as held out in training; test (default):"
        " the whole file",
    )  # fmt: skip
    p.add_argument("--batch-size", type=int, default=16, help="parallel streams (1: one)")
    p.add_argument("--json", help="also write the numbers to this file")
    p.set_defaults(func=_evaluate)

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
