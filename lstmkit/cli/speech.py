"""``lstmkit speech``: the generic train/evaluate/predict (:mod:`lstmkit.cli.tasks`) with FSDD
recordings, ``speech transcribe`` (WAV files to digit transcripts) and ``speech plot``."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from lstmkit.cli.hooks import TaskCLI


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", help="FSDD recordings/ folder or archive (data.path; default: the sample)"
    )


def train_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {"data.path": args.data}


def before_train(args: argparse.Namespace, config: Any) -> None:
    if config.data.path is None:
        print(
            "training on the 210 FSDD recordings bundled with lstmkit (3 speakers); give "
            "--data ../shared/data/fsdd/recordings and a --preset for the full data set"
        )


def print_evaluation(result: dict[str, Any]) -> None:
    from lstmkit.tasks.speech.task import format_report

    print(f"{result['split']} split of {result['data']}: {result['n']} utterances")
    print(format_report(result))


def _transcribe(args: argparse.Namespace, overrides: list[str]) -> int:
    from lstmkit.cli.common import write_json
    from lstmkit.tasks.run import choose_device
    from lstmkit.tasks.speech.task import TASK

    if overrides:
        raise ValueError(f"speech transcribe takes no overrides, got {' '.join(overrides)}")
    if args.stream_chunk_ms is not None and not args.stream_chunk_ms > 0:
        raise ValueError(f"--stream-chunk-ms must be positive, got {args.stream_chunk_ms}")
    predictor = TASK.load(args.model, choose_device(args.device))
    if args.beam is not None:
        if args.beam < 1:
            raise ValueError(f"--beam must be >= 1, got {args.beam}")
        predictor.config.decode.beam_width = args.beam
    audios = [predictor.read(path) for path in args.files]  # every file checked first
    results, seconds, compute = [], 0.0, 0.0
    for path, audio in zip(args.files, audios):
        start = time.perf_counter()
        if args.stream_chunk_ms is not None:
            out = predictor.transcribe_stream(audio, args.stream_chunk_ms, path)
        else:
            out = predictor.transcribe_audio(audio, path)
        compute += time.perf_counter() - start
        seconds += audio.size / predictor.config.features.sample_rate
        results.append({"path": path, **out})
        sys.stdout.write(f"{path}\t{out['transcript']}\n")
    if args.timing:
        print(
            f"{seconds:.2f} s of audio in {compute:.3f} s: real-time factor "
            f"{compute / max(seconds, 1e-9):.4f}",
            file=sys.stderr,
        )
    write_json(args.json, results)
    return 0


def _plot(args: argparse.Namespace, overrides: list[str]) -> int:
    from lstmkit.tasks.run import choose_device
    from lstmkit.tasks.speech.plot import plot_file
    from lstmkit.tasks.speech.task import TASK

    if overrides:
        raise ValueError(f"speech plot takes no overrides, got {' '.join(overrides)}")
    predictor = TASK.load(args.model, choose_device(args.device))
    for path in plot_file(predictor, args.file, args.out or f"{args.model}/plots"):
        print(path)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transcribe", help="transcripts of WAV files (path<TAB>digits)")
    p.add_argument("--model", required=True, metavar="DIR", help="a model directory")
    p.add_argument("files", nargs="+", metavar="FILE.wav", help="WAV files (8-48 kHz)")
    p.add_argument(
        "--json", metavar="F", help='also write [{"path", "transcript", "confidence"}] to this file'
    )
    p.add_argument("--beam", type=int, help="CTC prefix beam width (default: the model's)")
    p.add_argument(
        "--stream-chunk-ms",
        type=float,
        metavar="MS",
        help="feed the audio in chunks of MS, the LSTM state carried (a "
        "unidirectional CTC model with global feature normalisation)",
    )
    p.add_argument("--timing", action="store_true", help="print the real-time factor to stderr")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    p.set_defaults(func=_transcribe)

    p = sub.add_parser("plot", help="waveform, log-mel and the model's outputs of a file (PNG)")
    p.add_argument("--model", required=True, metavar="DIR", help="a model directory")
    p.add_argument("file", metavar="FILE.wav", help="a WAV file")
    p.add_argument("--out", metavar="DIR", help="output folder (default MODEL/plots)")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    p.set_defaults(func=_plot)


CLI = TaskCLI(
    add_train_flags=add_train_flags,
    train_flags=train_flags,
    before_train=before_train,
    print_evaluation=print_evaluation,
    add_commands=add_commands,
)
