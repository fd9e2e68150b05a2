"""Hyperparameter search: the space format, where params land, a real search through the CLI
function, resume, and pruning."""

import argparse
import csv
import shutil

import optuna
import pytest
import yaml

from lstmkit.cli import tools
from lstmkit.tasks.lab import task
from lstmkit.train.logging import EPOCH_LOG
from lstmkit.train.plot import read_log
from lstmkit.train.tuning import (
    PruningCallback,
    load_space,
    trial_dir,
    tune,
    with_params,
)

PRESET = tools.PRESETS / "tune-lab-adding.yaml"


def _space(**params):
    return {"metric": "val_x", "direction": "maximize", "params": params}


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _cli(*argv):
    parser = argparse.ArgumentParser(prog="lstmkit")
    tools.add_commands(parser.add_subparsers(dest="command"))
    args, overrides = parser.parse_known_args([str(a) for a in argv])
    return args.func(args, overrides)


# -- the search-space format --------------------------------------------------------------


def test_preset_parses_into_typed_specs():
    space = load_space(PRESET)
    assert (space.metric, space.direction) == ("val_solved", "maximize")
    assert list(space.params) == ["train.lr", "model.hidden_size"]
    lr, hidden = space.params["train.lr"], space.params["model.hidden_size"]
    assert (lr.type, lr.low, lr.high, lr.log) == ("float", 1e-3, 3e-2, True)
    assert (hidden.type, hidden.low, hidden.high, hidden.step) == ("int", 16, 64, 16)
    assert all(isinstance(v, int) for v in (hidden.low, hidden.high, hidden.step))
    assert space.base == {
        "data": {"T": 20, "steps_per_epoch": 50, "test_size": 500},
        "train": {"epochs": 4},
    }
    task.load_config(space.base)  # the preset's base is a valid lab-adding config


def test_yaml_1_1_exponents_are_read_as_numbers():
    # PyYAML reads 1e-3 (no dot) as a string; the space converts it like a config would
    spec = load_space(_space(**{"train.lr": {"type": "float", "low": "1e-3", "high": "1e-1"}}))
    assert spec.params["train.lr"].low == pytest.approx(1e-3)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({**_space(a={"type": "float", "low": 0, "high": 1}), "metrc": "x"}, r"unknown key.*metrc"),
        ({"direction": "maximize", "params": {}}, r"needs metric"),
        ({**_space(a={"type": "float", "low": 0, "high": 1}), "direction": "up"}, r"direction"),
        (_space(), r"params must map at least one"),
        (
            _space(**{"train.lr": {"type": "float", "low": 0, "high": 1, "lg": True}}),
            r"params\.train\.lr: unknown key\(s\) lg",
        ),
        (
            _space(**{"train.lr": {"type": "uniform", "low": 0, "high": 1}}),
            r"params\.train\.lr: type must be one of float, int, categorical",
        ),
        (_space(**{"train.lr": {"low": 0, "high": 1}}), r"params\.train\.lr needs a type"),
        (
            _space(**{"train.lr": {"type": "float", "low": 0.1, "high": 0.1}}),
            r"params\.train\.lr: low must be below high",
        ),
        (
            _space(**{"train.lr": {"type": "float", "low": "abc", "high": 1}}),
            r"params\.train\.lr: low must be float",
        ),
        (
            _space(**{"train.lr": {"type": "float", "low": 0, "high": 1, "log": True}}),
            r"params\.train\.lr: a log-scale parameter needs low > 0",
        ),
        (
            _space(
                **{"train.lr": {"type": "float", "low": 1e-3, "high": 1, "log": True, "step": 0.1}}
            ),
            r"log and step cannot be combined",
        ),
        (
            _space(**{"model.hidden_size": {"type": "int", "low": 1.5, "high": 8}}),
            r"params\.model\.hidden_size: low of an int parameter must be whole",
        ),
        (
            _space(**{"model.cell": {"type": "categorical", "choices": []}}),
            r"params\.model\.cell: a categorical parameter needs a non-empty list",
        ),
        (
            _space(**{"model.cell": {"type": "categorical", "choices": ["lstm"], "low": 0}}),
            r"params\.model\.cell: a categorical parameter takes choices, not low",
        ),
        (
            _space(**{"model.cell": {"type": "categorical", "choices": [[1, 2]]}}),
            r"params\.model\.cell: choices must be numbers",
        ),
        (_space(**{"train.lr": 0.1}), r"params\.train\.lr must be a mapping"),
        (_space(**{"train..lr": {"type": "float", "low": 0, "high": 1}}), r"dotted config key"),
        (
            {**_space(a={"type": "float", "low": 0, "high": 1}), "prune_from_epoch": 0},
            r"prune_from_epoch must be >= 1",
        ),
    ],
)
def test_space_errors_name_the_key(data, match):
    with pytest.raises(ValueError, match=match):
        load_space(data)


def test_with_params_sets_dotted_keys_in_their_sections():
    base = {"train": {"epochs": 4}, "data": {"T": 20}}
    config = with_params(base, {"train.lr": 0.01, "model.hidden_size": 32, "target": 0.9})
    assert config == {
        "train": {"epochs": 4, "lr": 0.01},
        "data": {"T": 20},
        "model": {"hidden_size": 32},
        "target": 0.9,
    }
    assert base == {"train": {"epochs": 4}, "data": {"T": 20}}  # a copy: base is untouched
    with pytest.raises(ValueError, match=r"cannot set target\.x: target is not"):
        with_params(config, {"target.x": 1})


# -- the search loop with fake objectives (no training) ----------------------------------------


def test_sampled_params_land_in_the_config_sections(tmp_path):
    space = load_space(
        {
            "metric": "val_x",
            "direction": "minimize",
            "params": {
                "train.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
                "model.hidden_size": {"type": "int", "low": 16, "high": 64, "step": 16},
                "model.cell": {"type": "categorical", "choices": ["lstm", "gru"]},
            },
        }
    )
    seen = []

    def objective(config, directory, report):
        seen.append((config, directory))
        return config["train"]["lr"]

    base = {"train": {"epochs": 2}, "data": {"T": 20}}
    study = tune(space, objective, 4, tmp_path, "s", base)
    assert len(seen) == 4
    for trial, (config, directory) in zip(study.trials, seen):
        lr, hidden, cell = (trial.params[k] for k in space.params)
        assert config == {
            "train": {"epochs": 2, "lr": lr},
            "data": {"T": 20},
            "model": {"hidden_size": hidden, "cell": cell},
        }
        assert 1e-3 <= lr <= 1e-1 and hidden in (16, 32, 48, 64) and cell in ("lstm", "gru")
        assert directory == tmp_path / f"trial-{trial.number:04d}"
    assert study.best_value == min(c["train"]["lr"] for c, _ in seen)
    assert base == {"train": {"epochs": 2}, "data": {"T": 20}}


def test_a_trial_reporting_bad_values_is_pruned(tmp_path):
    space = load_space(
        {
            **_space(x={"type": "float", "low": 0, "high": 1}),
            "prune_after_trials": 2,
            "prune_from_epoch": 1,
        }
    )
    reported = []

    def objective(config, directory, report):
        good = len(reported) < 2  # the first two trials do well, the others badly
        reported.append([])
        for epoch in (1, 2, 3):
            value = 0.9 if good else 0.1
            reported[-1].append(epoch)
            report(epoch, value)
        return 0.9

    tune(space, objective, 4, tmp_path, "s", {})
    rows = _rows(tmp_path / "trials.csv")
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED"]
    assert [r["last_epoch"] for r in rows] == ["3", "3", "1", "1"]
    assert reported == [[1, 2, 3], [1, 2, 3], [1], [1]]  # pruned right after epoch 1
    assert float(rows[2]["value"]) == pytest.approx(0.1)  # Optuna keeps the last report


def test_a_study_for_another_metric_is_not_resumed(tmp_path):
    space = _space(x={"type": "float", "low": 0, "high": 1})
    tune(load_space(space), lambda config, directory, report: 1.0, 1, tmp_path, "s", {})
    with pytest.raises(ValueError, match=r"maximizes val_x, not one that minimizes val_x"):
        tune(load_space({**space, "direction": "minimize"}), None, 2, tmp_path, "s", {})


def test_pruning_callback_reports_the_monitored_epoch_value():
    calls = []
    callback = PruningCallback(lambda epoch, value: calls.append((epoch, value)), "val_solved")
    callback.on_epoch_end(None, {"epoch": 3, "loss": 0.5, "val_solved": 0.25})
    assert calls == [(3, 0.25)]
    with pytest.raises(ValueError, match=r"'val_solved' is not in the epoch logs.*loss"):
        callback.on_epoch_end(None, {"epoch": 4, "loss": 0.5})


# -- a real search on the adding problem through the CLI function ------------------------------

SMALL_SPACE = """\
metric: val_solved
direction: maximize
params:
  train.lr: {type: float, low: 3.0e-3, high: 3.0e-2, log: true}
  model.hidden_size: {type: int, low: 8, high: 16, step: 8}
base:
  data: {T: 20, steps_per_epoch: 6, batch_size: 16, val_size: 64, test_size: 64}
  train: {epochs: 2, progress: false, tensorboard: false}
"""


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """5 trials of 2 epochs x 6 steps (a few seconds on 2 cores); the CLI's output too."""
    root = tmp_path_factory.mktemp("tune")
    space_file = root / "space.yaml"
    space_file.write_text(SMALL_SPACE)
    out = root / "study"
    code = _cli(
        "tune",
        "lab-adding",
        "--space",
        space_file,
        "--trials",
        5,
        "--out",
        out,
        "--seed",
        3,
        "--train.seed",
        "7",
    )
    assert code == 0
    return space_file, out


def _study(out):
    return optuna.load_study(study_name="tune-lab-adding", storage=f"sqlite:///{out}/study.db")


def test_tune_cli_writes_study_trials_and_best_config(search, capsys):
    space_file, out = search
    study = _study(out)
    rows = _rows(out / "trials.csv")
    assert [int(r["number"]) for r in rows] == [0, 1, 2, 3, 4]
    assert all(r["state"] in ("COMPLETE", "PRUNED") for r in rows)
    for row, trial in zip(rows, study.trials):
        assert float(row["train.lr"]) == trial.params["train.lr"]
        assert int(row["model.hidden_size"]) == trial.params["model.hidden_size"]
        if row["state"] == "COMPLETE":
            # the value is the last epoch's val_solved of the trial's own training run
            epochs = read_log(trial_dir(out, trial.number) / EPOCH_LOG)
            assert float(row["value"]) == pytest.approx(epochs["val_solved"][-1])
            # and the pruning callback reported every epoch's val_solved
            assert trial.intermediate_values == pytest.approx(
                dict(zip(epochs["epoch"].astype(int).tolist(), epochs["val_solved"]))
            )

    text = (out / "best.yaml").read_text()
    assert text.startswith("# Best of ")
    assert f"# how to run: lstmkit lab adding --config {out / 'best.yaml'}" in text
    best = yaml.safe_load(text)
    config = task.load_config(best)
    assert config.train.lr == study.best_params["train.lr"]
    assert config.model.hidden_size == study.best_params["model.hidden_size"]
    assert (config.data.T, config.data.steps_per_epoch, config.train.epochs) == (20, 6, 2)
    assert config.train.seed == 7  # the --train.seed override reached the base config
    assert best["train"]["lr"] == study.best_params["train.lr"]  # exactly, through YAML


def test_tune_cli_resumes_and_runs_only_the_missing_trials(search, tmp_path, capsys):
    space_file, first = search
    out = tmp_path / "study"
    shutil.copytree(first, out)
    before = _study(out).trials
    # the same seed as the first run: the new trial must still not replay trial 0's params
    argv = ("tune", "lab-adding", "--space", space_file, "--trials", 6, "--out", out, "--seed", 3)
    assert _cli(*argv) == 0
    after = _study(out).trials
    assert len(after) == 6 and [t.params for t in after[:5]] == [t.params for t in before]
    assert after[5].params["train.lr"] not in [t.params["train.lr"] for t in before]
    assert len(_rows(out / "trials.csv")) == 6
    assert sorted(p.name for p in out.glob("trial-*"))[-1] == "trial-0005"
    assert "6 trials in" in capsys.readouterr().out
    assert _cli(*argv) == 0
    assert len(_study(out).trials) == 6  # already complete: nothing more runs


def test_tune_cli_rejects_a_misspelt_key_before_training(tmp_path):
    space_file = tmp_path / "space.yaml"
    space_file.write_text(SMALL_SPACE.replace("model.hidden_size", "model.hiden_size"))
    with pytest.raises(ValueError, match=r"unknown key\(s\) model\.hiden_size"):
        _cli("tune", "lab-adding", "--space", space_file, "--trials", 1, "--out", tmp_path / "o")
    assert not (tmp_path / "o").exists()
