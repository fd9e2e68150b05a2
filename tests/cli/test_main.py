"""The command line: version, help, the lab task's train -> evaluate -> resume round trip."""

import json

import pytest

from lstmkit import __version__
from lstmkit.cli.main import main

FAST = [
    "--T",
    "12",
    "--hidden-size",
    "8",
    "--no-progress",
    "--data.steps_per_epoch",
    "5",
    "--data.val_size",
    "50",
    "--data.test_size",
    "100",
    "--train.epochs",
    "3",
]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"lstmkit {__version__}"


def test_help_lists_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "demo" in out and "lab" in out


def test_train_evaluate_resume_round_trip(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["lab", "adding", *FAST, "--out", str(out), "--max-steps", "7"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 7 and results["train_sequences"] == 7 * 32
    assert results["test_sequences"] == 100
    assert results["task"] == "lab" and results["problem"] == "adding" and results["T"] == 12
    assert results["split"] == "test" and results["n"] == 100 and results["cell"] == "lstm"
    assert {"config.json", "model.safetensors", "metrics.json", "train_log.csv"} <= {
        p.name for p in out.iterdir()
    }
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "lab" and config["format"] == 1
    assert config["config"]["data"]["T"] == 12 and config["config"]["model"]["hidden_size"] == 8
    assert "solved" in capsys.readouterr().out

    report = tmp_path / "eval.json"
    assert main(["lab", "evaluate", "--model", str(out), "--json", str(report)]) == 0
    metrics = json.loads(report.read_text())
    assert metrics["task"] == "lab" and metrics["split"] == "test" and metrics["n"] == 100
    assert metrics["solved_fraction"] == pytest.approx(results["solved_fraction"])
    assert json.loads(capsys.readouterr().out) == metrics  # printed as JSON, too
    assert main(["evaluate", "--model", str(out), "--split", "val"]) == 0  # task from config
    val = json.loads(capsys.readouterr().out)
    assert (val["task"], val["split"], val["n"]) == ("lab", "val", 50)

    # predict: the model's output for a sequence given as JSON steps (value, marker)
    import torch

    from lstmkit.tasks.lab import task

    sequence = [[0.5, 1.0], [0.25, 0.0], [0.125, 1.0], [0.75, 0.0]]
    with torch.no_grad():
        x = torch.tensor(sequence).unsqueeze(1)
        expected = float(task.TASK.load(out).model(x)[0])
    assert main(["predict", "--model", str(out), "--json", json.dumps(sequence)]) == 0
    [predicted] = json.loads(capsys.readouterr().out)
    assert predicted["input"] == sequence
    assert predicted["prediction"] == pytest.approx(expected, rel=1e-6)
    assert main(["lab", "predict", "--model", str(out), "[[0.5, 1, 2]]"]) == 2
    assert "expected a sequence of shape (L, 2)" in capsys.readouterr().err

    # a finished model directory is only replaced with --overwrite; resume keeps the model
    assert main(["lab", "adding", *FAST, "--out", str(out), "--max-steps", "7"]) == 2
    assert "already holds a trained model" in capsys.readouterr().err
    changed = [*FAST, "--out", str(out), "--resume", "--hidden-size", "16"]
    assert main(["lab", "adding", *changed]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "model.hidden_size 8 there, 16 now" in err

    assert main(["lab", "adding", *FAST, "--out", str(out), "--resume", "--max-steps", "12"]) == 0
    log = (out / "train_log.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in log[1:]] == list(range(1, 13))


def test_variant_flags_reach_the_model(tmp_path):
    out = tmp_path / "run"
    args = [
        "lab",
        "adding",
        *FAST,
        "--out",
        str(out),
        "--max-steps",
        "2",
        "--peephole",
        "--zoneout",
        "0.1",
        "--layer-norm",
        "--chrono",
        "13",
        "--target",
        "0.5",
    ]
    assert main(args) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    model = config["model"]
    assert model["peephole"] and model["layer_norm"] and model["zoneout"] == 0.1
    assert model["chrono"] == 13 and config["target"] == 0.5


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["lab", "adding", "--out", str(tmp_path), "--train.lr", "-1"]) == 2
    assert "lr must be positive, got -1.0" in capsys.readouterr().err
    assert main(["lab", "adding", "--out", str(tmp_path), "--model", "rnn", "--peephole"]) == 2
    assert "peephole apply to the lstm cell only, not rnn" in capsys.readouterr().err
    assert main(["lab", "adding", "--out", str(tmp_path / "x"), "--resume"]) == 2
    assert "x is not a model directory (no such directory)" in capsys.readouterr().err
    assert main(["lab", "evaluate", "--model", str(tmp_path / "nothing")]) == 2
    assert "nothing is not a model directory (no such directory)" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", "--model", str(tmp_path / "empty")]) == 2
    assert "empty is not a model directory (no config.json)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["lab", "adding", "stray"])


def test_top_level_config_keys_are_flags_of_train_only(capsys):
    from lstmkit.cli.main import _overrides_well_formed

    assert _overrides_well_formed(["--patience", "5", "--train.lr=1e-3"], "sentiment")
    assert _overrides_well_formed(["--average_last=3", "--keep", "last"], "translate")
    assert not _overrides_well_formed(["--patiense", "5"], "sentiment")  # a typo
    assert not _overrides_well_formed(["--patience", "5"], None)  # not a train command
    with pytest.raises(SystemExit) as exit_:
        main(["sentiment", "train", "--patiense", "2"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --patiense 2" in capsys.readouterr().err
    assert main(["sentiment", "train", "--patience", "0"]) == 2  # reaches the config
    assert "patience must be positive, got 0" in capsys.readouterr().err


def test_unknown_command_is_an_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["nope"])
    assert exit_.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_bundled_presets_load_and_say_how_to_run():
    from lstmkit.cli.common import PRESETS
    from lstmkit.tasks.lab import task
    from lstmkit.train import load_yaml

    presets = sorted(PRESETS.glob("lab-*.yaml"))
    assert presets
    for path in presets:
        assert "# how to run:" in path.read_text()
        task.load_config(load_yaml(path))  # validates every key and value


def test_ddp_through_the_cli_matches_one_process(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import torch
    from safetensors.torch import load_file

    root = Path(__file__).resolve().parents[2]
    args = ["lab", "adding", *FAST, "--max-steps", "6"]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "lstmkit.cli.main",
        *args,
        "--out",
        str(tmp_path / "ddp"),
    ]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    ddp = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    one = load_file(str(tmp_path / "one" / "model.safetensors"))
    for name in one:
        torch.testing.assert_close(ddp[name], one[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize(
    "command,problem", [("temporal-order", "temporal_order"), ("copy", "copy")]
)
def test_classification_problems_round_trip(tmp_path, command, problem):
    out = tmp_path / command
    args = [
        "lab",
        command,
        "--T",
        "20",
        "--max-steps",
        "4",
        "--no-progress",
        "--out",
        str(out),
        "--data.test_size",
        "50",
        "--data.val_size",
        "50",
    ]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "lab" and results["problem"] == problem
    assert results["T"] == 20 and 0 <= results["accuracy"] <= 1 and results["n"] == 50
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["data"]["problem"] == problem
    report = tmp_path / "eval.json"
    assert main(["lab", "evaluate", "--model", str(out), "--json", str(report)]) == 0
    evaluated = json.loads(report.read_text())
    assert evaluated["accuracy"] == pytest.approx(results["accuracy"])
    assert evaluated["test_loss"] == pytest.approx(results["test_loss"])
    if problem == "copy":
        assert results["baseline_accuracy"] == 0.125
