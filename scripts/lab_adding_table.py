"""The adding-problem table of RESULTS.md: Elman RNN, GRU and LSTMs at T = 100 ... 1000.

how to run (alone on the machine; RESULTS.md says how long each row took on 2 CPU cores):

    python scripts/lab_adding_table.py --out runs/adding-table

Each row is one `lstmkit lab adding` run (hidden 32, AdamW lr 1e-2, clip norm 1, batch 32,
seed 0), stopped once 99.5% of 2,000 validation sequences are solved or by its budget; the
solved fraction is measured on 2,000 fresh test sequences. The chrono-initialised LSTMs get
the issue's budgets (15 minutes at T = 100 and 200, 60 at T = 500) and 60 at T = 1000; the RNN
gets 15 minutes at T = 100; the other baselines ``--baseline-minutes``. A row that fails at
one T is not run at longer ones. ``--cap-minutes`` caps every budget. Results go to
OUT/T{T}-{row}/results.json (a row already there is an error unless ``--overwrite``); the rows
are appended to OUT/table.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lstmkit.tasks import run as runner
from lstmkit.tasks.lab import task

ROWS = {
    "rnn": ("Elman RNN (tanh)", {"cell": "rnn"}),
    "gru": ("GRU", {"cell": "gru"}),
    "lstm": ("LSTM, forget bias 1", {"cell": "lstm"}),
    "lstm-chrono": ("LSTM, chrono init", {"cell": "lstm", "chrono": "T"}),
    "peephole-chrono": ("LSTM + peephole, chrono", {"peephole": True, "chrono": "T"}),
    "layer_norm-chrono": ("LSTM + layer norm, chrono", {"layer_norm": True, "chrono": "T"}),
    "coupled-chrono": ("LSTM, coupled gates, chrono", {"coupled": True, "chrono": "T"}),
}
TARGET_BUDGET = {100: 15, 200: 15, 500: 60, 1000: 60}  # minutes, the issue's


def budget(row: str, T: int, baseline_minutes: float) -> float:
    if "chrono" in row:
        return TARGET_BUDGET.get(T, 60)
    return 15 if row == "rnn" and T == 100 else baseline_minutes


def run(row: str, T: int, minutes: float, out: Path, overwrite: bool = False) -> dict:
    model = {k: (int(T * 1.1) if v == "T" else v) for k, v in ROWS[row][1].items()}
    config = task.load_config(
        {
            "model": {"hidden_size": 32, **model},
            "data": {
                "problem": "adding",
                "T": T,
                "batch_size": 32,
                "steps_per_epoch": 100,
                "val_size": 2000,
            },
            "train": {
                "lr": 1e-2,
                "clip_norm": 1.0,
                "epochs": 1_000_000,
                "max_minutes": minutes,
                "progress": False,
                "seed": 0,
            },
            "target": 0.995,
        }
    )
    results = runner.train(task.TASK, config, out / f"T{T}-{row}", overwrite=overwrite)
    return {**results, "budget_minutes": minutes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/adding-table"))
    parser.add_argument("--T", type=int, nargs="+", default=[100, 200, 500, 1000])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--baseline-minutes", type=float, default=5.0)
    parser.add_argument("--cap-minutes", type=float, help="no row runs longer than this")
    parser.add_argument("--overwrite", action="store_true", help="rerun rows already in --out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [
        "| model | T | solved (2,000 test sequences) | training sequences | wall time | budget |",
        "|---|---|---|---|---|---|",
    ]
    for row in args.rows:
        for T in args.T:
            minutes = budget(row, T, args.baseline_minutes)
            r = run(row, T, min(minutes, args.cap_minutes or minutes), args.out, args.overwrite)
            solved = r["solved_fraction"] >= 0.99
            print(json.dumps({"row": row, **r}), flush=True)
            lines.append(
                f"| {ROWS[row][0]} | {T} | {r['solved_fraction']:.1%}"
                f"{'' if solved else ' (not solved)'} | {r['train_sequences']:,} "
                f"| {r['seconds']:.1f} s | {r['budget_minutes']:g} min |"
            )
            if not solved:
                break  # a longer lag will not be easier
    with (args.out / "table.md").open("a") as f:  # several invocations add up to one table
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
