"""``lstmkit forecast``: the generic train/evaluate (:mod:`lstmkit.cli.tasks`) with series
files, and a ``predict`` that writes forecast files (M4's submission layout or a long frame)
and plots."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lstmkit.cli.hooks import TaskCLI


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="M4 CSV or long frame (data.path; default: the sample)")
    parser.add_argument(
        "--frequency",
        help="M4 frequency: hourly, daily, weekly, monthly, quarterly, yearly (data.frequency)",
    )
    parser.add_argument("--horizon", type=int, help="steps to forecast (data.horizon)")


def train_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {"data.path": args.data, "data.frequency": args.frequency, "data.horizon": args.horizon}


def before_train(args: argparse.Namespace, config: Any) -> None:
    if config.data.path is None:
        print(
            "training on the 40-series M4 Hourly sample bundled with lstmkit; give --data "
            "FILE for a whole M4 file or a long frame"
        )


def add_evaluate_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--test",
        metavar="FILE",
        help="the M4 test file (or long frame) of "
        "--data's series: score forecasts from the whole series against it",
    )
    parser.add_argument(
        "--baselines",
        nargs="*",
        default=(),
        metavar="MODEL",
        help="statsforecast models to score too: AutoETS AutoTheta AutoARIMA "
        "MSTL (Naive, seasonal naive and Naive2 always are)",
    )


def evaluate_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"test": args.test, "baselines": tuple(args.baselines)}


def print_evaluation(result: dict[str, Any]) -> None:
    from lstmkit.tasks.forecast.task import format_table

    print(f"{result['split']}: {result['data']}, {result['n']} series, horizon {result['horizon']}")
    print(format_table(result))


def add_predict_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", metavar="FILE", help="forecast every series of this M4 CSV or long frame"
    )
    parser.add_argument("--out", metavar="FILE", help="write the forecasts here (with --data)")
    parser.add_argument(
        "--format",
        choices=("m4", "long"),
        default="m4",
        help="m4: id,F1..Fh a row (default); long: unique_id,ds,y_hat and the quantiles",
    )
    parser.add_argument("--plot", metavar="DIR", help="write PNGs of history and forecast")
    parser.add_argument(
        "--series",
        nargs="*",
        default=(),
        metavar="ID",
        help="the series to plot (default: the first three)",
    )


def predict(args: argparse.Namespace, overrides: list[str]) -> int:
    """Inputs on the command line (JSON lists) go through the generic predict; ``--data``
    forecasts a whole file into ``--out``."""
    from lstmkit.cli.tasks import _device, _no_overrides, _predict

    _no_overrides("forecast predict", overrides)
    if args.data is None:
        if args.out or args.plot:
            raise ValueError("--out and --plot forecast the series of --data FILE")
        return _predict(args, overrides)
    if args.inputs or args.file:
        raise ValueError("give either --data FILE or series on the command line, not both")
    from lstmkit.tasks.forecast.files import forecast_file

    predictor = _load(args.model, _device(args.device))
    written = forecast_file(
        predictor, args.data, args.out, args.format, args.plot, list(args.series)
    )
    for line in written:
        print(line)
    return 0


def _load(model_dir: str, device: Any) -> Any:
    from lstmkit.tasks.forecast.task import TASK

    return TASK.load(Path(model_dir), device)


CLI = TaskCLI(
    add_train_flags=add_train_flags,
    train_flags=train_flags,
    before_train=before_train,
    add_evaluate_flags=add_evaluate_flags,
    evaluate_options=evaluate_options,
    print_evaluation=print_evaluation,
    add_predict_flags=add_predict_flags,
    predict=predict,
)
