"""``lstmkit sentiment train|evaluate|predict``: IMDB sentiment with an LSTM classifier."""

from __future__ import annotations

import argparse
import json
import sys

from lstmkit.cli.common import add_train_arguments, config_from_args, write_json


def _train(args: argparse.Namespace, overrides: list[str]) -> int:
    from lstmkit.tasks.sentiment import task

    config = task.load_config(config_from_args(args, overrides, {"data.path": args.data}))
    if config.data.path is None:
        print(f"training on the 600-review IMDB sample bundled with lstmkit ({task.SAMPLE.name});"
              " give --data PATH for the full data set")  # fmt: skip
    results = task.train(config, args.out, resume=args.resume)
    print(f"validation accuracy {results['accuracy']:.4f} (F1 {results['f1']:.4f}, ROC-AUC "
          f"{results['roc_auc']:.4f}) on {results['n']} held-out reviews, {results['steps']} "
          f"steps in {results['seconds']} s")  # fmt: skip
    print(f"model directory: {args.out}")
    return 0


def _evaluate(args: argparse.Namespace, overrides: list[str]) -> int:
    from lstmkit.tasks.sentiment import task

    if overrides:
        raise ValueError(f"sentiment evaluate takes no overrides, got {' '.join(overrides)}")
    result = task.evaluate(args.model, args.data, args.split)
    print(f"{result['split']} split of {result['data']}: {result['n']} reviews")
    print(task.format_report(result))
    write_json(args.json, result)
    return 0


def _predict(args: argparse.Namespace, overrides: list[str]) -> int:
    from lstmkit.tasks.sentiment import task

    if overrides:
        raise ValueError(f"sentiment predict takes no overrides, got {' '.join(overrides)}")
    if args.text:
        texts = args.text
    elif args.file:
        with open(args.file, encoding="utf-8") as f:
            texts = [line.rstrip("\n") for line in f if line.strip()]
    else:
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    results = task.predict(args.model, texts)
    if args.json:
        print(json.dumps([{"text": t, **r} for t, r in zip(texts, results)], indent=2))
        return 0
    for text, r in zip(texts, results):
        short = text if len(text) <= 60 else text[:57] + "..."
        print(f"{r['label']}\t{r['probability']:.4f}\t{short}")
    return 0


def _gates(args: argparse.Namespace, overrides: list[str]) -> int:
    from lstmkit.tasks.lab.heatmap import gate_heatmap
    from lstmkit.tasks.sentiment import task

    if overrides:
        raise ValueError(f"sentiment gates takes no overrides, got {' '.join(overrides)}")
    rnn, x, tokens = task.gate_inputs(args.model, args.text)
    out = args.out or f"{args.model}/gates"
    title = f"gates of {args.model} (layer {args.layer}, direction {args.direction})"
    for path in gate_heatmap(rnn, x, tokens, out, args.layer, args.direction, title=title):
        print(path)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    sentiment = commands.add_parser("sentiment", help="IMDB sentiment: train, evaluate, predict")
    sub = sentiment.add_subparsers(dest="sentiment_command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train an LSTM sentiment classifier (default: on the "
                       "bundled 600-review sample)")  # fmt: skip
    add_train_arguments(p, default_out="runs/sentiment")
    p.add_argument("--data", help="aclImdb folder or archive (data.path; default: the sample)")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="classification report on the val or test split")
    p.add_argument("--model", required=True, help="a model directory from sentiment train")
    p.add_argument("--data", help="aclImdb folder or archive (default: the training data)")
    p.add_argument(
        "--split", choices=("val", "test"), default="val",
        help="val: the run's held-out training reviews; test: the test split",
    )  # fmt: skip
    p.add_argument("--json", help="also write the scores to this file")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("predict", help="label and probability for each text")
    p.add_argument("--model", required=True, help="a model directory from sentiment train")
    p.add_argument("text", nargs="*", help="texts to classify (else --file or stdin, a line each)")
    p.add_argument("--file", help="a UTF-8 file with one text a line")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_predict)

    p = sub.add_parser("gates", help="gate heat-map (PNG + HTML) of the LSTM over a text's tokens")
    p.add_argument("--model", required=True, help="a model directory from sentiment train")
    p.add_argument("text", help="the text (a review) to read")
    p.add_argument("--out", help="output path prefix (default MODEL/gates): .png and .html")
    p.add_argument("--layer", type=int, default=0, help="LSTM layer (default 0)")
    p.add_argument("--direction", type=int, default=0, help="0 forward, 1 reverse (default 0)")
    p.set_defaults(func=_gates)
