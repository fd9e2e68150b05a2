"""``lstmkit translate``: the generic train/evaluate/predict (:mod:`lstmkit.cli.tasks`) with
parallel text, ``translate run`` (one translation per input line, in order) and
``translate attention`` (the attention heat-map of one sentence)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lstmkit.cli.hooks import TaskCLI


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", help="a folder in the Multi30k layout (data.path; default: the bundled sample)"
    )
    parser.add_argument("--src-lang", help="source language suffix, e.g. de (data.src_lang)")
    parser.add_argument("--tgt-lang", help="target language suffix, e.g. en (data.tgt_lang)")
    parser.add_argument(
        "--src", metavar="FILE", help="training source file (with --tgt; instead of --data)"
    )
    parser.add_argument("--tgt", metavar="FILE", help="training target file, line-aligned")


def train_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "data.path": args.data,
        "data.src_lang": args.src_lang,
        "data.tgt_lang": args.tgt_lang,
        "data.src": args.src,
        "data.tgt": args.tgt,
    }


def before_train(args: argparse.Namespace, config: Any) -> None:
    if config.data.path is None and config.data.src is None:
        print(
            "training on the 500 Multi30k sentence pairs bundled with lstmkit; give --data "
            "../shared/data/multi30k and --preset multi30k-de-en for the full data set"
        )


def add_evaluate_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--src", metavar="F", help="source sentences to translate (with --ref)")
    parser.add_argument("--ref", metavar="F", help="their reference translations")
    parser.add_argument(
        "--beam",
        type=int,
        help="beam width, 1 to the target vocabulary's size (default: the model's)",
    )


def evaluate_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"src": args.src, "ref": args.ref, "beam": args.beam}


def print_evaluation(result: dict[str, Any]) -> None:
    from lstmkit.tasks.translate.task import format_report

    print(f"{result['data']}: {result['n']} sentences")
    print(format_report(result))


def _inputs(args: argparse.Namespace) -> list[str]:
    """The texts of ``run``: the arguments, else every line of --file or stdin (empty lines
    kept: they translate to empty lines)."""
    from lstmkit.data.parallel import normalize, read_lines, split_lines

    if args.texts:  # a sentence given as an argument must say something
        empty = [k for k, text in enumerate(args.texts) if not normalize(text)]
        if empty:
            raise ValueError(f"input {empty[0] + 1} is empty")
        return list(args.texts)
    if args.file:
        return read_lines(args.file, raw=True)
    return split_lines(sys.stdin.buffer.read(), "standard input", raw=True)


def _load(args: argparse.Namespace):
    from lstmkit.tasks.run import choose_device
    from lstmkit.tasks.translate.decode import check_beam
    from lstmkit.tasks.translate.task import TASK

    predictor = TASK.load(args.model, choose_device(args.device))
    decode = predictor.config.decode
    if args.beam is not None:
        check_beam(args.beam, predictor.tgt_vocab.vocab_size)
        decode.beam, decode.n_best = args.beam, 1
    if getattr(args, "n_best", None) is not None:
        if not 1 <= args.n_best <= decode.beam:
            raise ValueError(f"--n-best must be in [1, beam={decode.beam}], got {args.n_best}")
        decode.n_best = args.n_best
    return predictor


def _run(args: argparse.Namespace, overrides: list[str]) -> int:
    if overrides:
        raise ValueError(f"translate run takes no overrides, got {' '.join(overrides)}")
    predictor = _load(args)
    texts = _inputs(args)
    outputs = predictor.predict(texts) if texts else []
    if args.json:
        records = [{"source": t, **o} for t, o in zip(texts, outputs)]
        print(json.dumps(records, indent=2, ensure_ascii=False))
        return 0
    for out in outputs:
        sys.stdout.write(out["translation"] + "\n")
    return 0


def _attention(args: argparse.Namespace, overrides: list[str]) -> int:
    from lstmkit.tasks.translate.plot import attention_files

    if overrides:
        raise ValueError(f"translate attention takes no overrides, got {' '.join(overrides)}")
    predictor = _load(args)
    for path in attention_files(predictor, args.text, args.out or f"{args.model}/attention"):
        print(path)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="translate texts (arguments, --file or stdin: a line each)")
    p.add_argument("--model", required=True, metavar="DIR", help="a model directory")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="sentences to translate")
    p.add_argument("--file", help="a UTF-8 file (plain or gzip), one sentence a line")
    p.add_argument(
        "--beam",
        type=int,
        help="beam width, 1 (greedy) to the target vocabulary's size (default: the model's)",
    )
    p.add_argument("--n-best", type=int, help="with --json, this many hypotheses per input")
    p.add_argument("--json", action="store_true", help='[{"source", "translation", "score"}]')
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    p.set_defaults(func=_run)

    p = sub.add_parser("attention", help="attention heat-map of one sentence (PNG and HTML)")
    p.add_argument("--model", required=True, metavar="DIR", help="a model directory")
    p.add_argument("text", metavar="TEXT", help="the source sentence")
    p.add_argument("--out", metavar="DIR", help="output folder (default MODEL/attention)")
    p.add_argument(
        "--beam",
        type=int,
        help="beam width, 1 to the target vocabulary's size (default: the model's)",
    )
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    p.set_defaults(func=_attention)


CLI = TaskCLI(
    add_train_flags=add_train_flags,
    train_flags=train_flags,
    before_train=before_train,
    add_evaluate_flags=add_evaluate_flags,
    evaluate_options=evaluate_options,
    print_evaluation=print_evaluation,
    add_commands=add_commands,
)
