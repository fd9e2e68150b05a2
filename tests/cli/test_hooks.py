"""Task CLI hooks: a toy task registered here with a ``TaskCLI`` (a train flag, an evaluate
flag, a predict of its own and a command) gets them in ``lstmkit --help`` and runs them; a
misspelt hook is an error where the hooks are defined; every registered task's CLI is a
``TaskCLI``. Training and scoring are stubbed: what is checked is the command line."""

import argparse
import dataclasses
from dataclasses import dataclass, field

import pytest

from lstmkit.cli.hooks import TaskCLI
from lstmkit.cli.main import main
from lstmkit.cli.tasks import task_cli
from lstmkit.tasks import TASKS, register
from lstmkit.train import TrainConfig

BUILT: list["ToyConfig"] = []  # every ToyConfig made, in order
CALLS: list[tuple] = []  # every hook called, with what it got


@dataclass
class ToyConfig:
    train: TrainConfig = field(default_factory=TrainConfig)
    scale: float = 2.0
    offset: float = 1.0

    def __post_init__(self):
        BUILT.append(self)


class ToyTask:
    name, config_class = "toy", ToyConfig

    def summary(self, results):
        return f"toy mse {results['mse']}"


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale-flag", type=float, help="the slope to learn (scale)")


def train_flags(args: argparse.Namespace) -> dict:
    return {"scale": args.scale_flag}


def before_train(args: argparse.Namespace, config: ToyConfig) -> None:
    CALLS.append(("before_train", config))


def add_evaluate_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shift", type=float, default=0.0, help="shift the inputs")


def evaluate_options(args: argparse.Namespace) -> dict:
    return {"shift": args.shift}


def print_evaluation(result: dict) -> None:
    print(f"toy scores: mse {result['mse']}")


def add_predict_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--twice", action="store_true", help="print each output twice")


def predict(args: argparse.Namespace, overrides: list[str]) -> int:
    CALLS.append(("predict", args.model, args.inputs, args.twice))
    return 0


def _hello(args: argparse.Namespace, overrides: list[str]) -> int:
    print(f"hello {args.name}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hello", help="greet someone (the toy's own command)")
    p.add_argument("--name", default="world")
    p.set_defaults(func=_hello)


CLI = TaskCLI(
    add_train_flags=add_train_flags,
    train_flags=train_flags,
    before_train=before_train,
    add_evaluate_flags=add_evaluate_flags,
    evaluate_options=evaluate_options,
    print_evaluation=print_evaluation,
    add_predict_flags=add_predict_flags,
    predict=predict,
    add_commands=add_commands,
)


@pytest.fixture
def toy(monkeypatch):
    """The toy task, its CLI this module's ``CLI``; ``run.train`` and ``run.evaluate``
    record what they are given instead of training and scoring."""

    def train(task, config, out, **kwargs):
        CALLS.append(("train", task, config, str(out), kwargs))
        return {"task": "toy", "mse": 0.25}

    def evaluate(model, data, split, **kwargs):
        CALLS.append(("evaluate", model, kwargs))
        return {"task": "toy", "mse": 0.5}

    monkeypatch.setattr("lstmkit.tasks.run.train", train)
    monkeypatch.setattr("lstmkit.tasks.run.evaluate", evaluate)
    BUILT.clear()
    CALLS.clear()
    register("toy", ToyTask(), "a toy regression", cli=__name__)
    yield
    del TASKS["toy"]


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_a_toy_tasks_hooks_show_in_the_help(toy, capsys):
    assert "a toy regression" in _help([], capsys)
    out = _help(["toy"], capsys)
    assert all(command in out for command in ("train", "evaluate", "predict", "hello"))
    assert "greet someone" in out
    out = _help(["toy", "train"], capsys)
    assert "--scale-flag" in out and "default runs/toy" in out
    assert "--shift" in _help(["toy", "evaluate"], capsys)
    assert "--twice" in _help(["toy", "predict"], capsys)
    assert "--shift" not in _help(["evaluate"], capsys)  # the task-agnostic command


def test_a_toy_tasks_train_hooks_run_and_its_config_is_built_once(toy, capsys):
    assert main(["toy", "train", "--scale-flag", "3", "--offset", "0.5", "--no-progress"]) == 0
    (config,) = BUILT  # _overrides_well_formed read the field types, building none
    assert config.scale == 3.0 and config.offset == 0.5 and config.train.progress is False
    assert [c[0] for c in CALLS] == ["before_train", "train"]
    assert CALLS[0][1] is config and CALLS[1][2] is config
    assert CALLS[1][3] == "runs/toy"  # the default model directory
    assert CALLS[1][4]["command"] == [
        "lstmkit",
        "toy",
        "train",
        "--scale-flag",
        "3",
        "--offset",
        "0.5",
        "--no-progress",
    ]
    assert capsys.readouterr().out.splitlines() == ["toy mse 0.25", "model directory: runs/toy"]
    CALLS.clear()
    assert main(["toy", "train", "--out", "elsewhere", "--no-progress"]) == 0
    assert CALLS[1][2].scale == 2.0 and CALLS[1][3] == "elsewhere"  # the flag not given


def test_a_toy_tasks_evaluate_predict_and_own_command_run(toy, capsys, monkeypatch):
    assert main(["toy", "evaluate", "--model", "m", "--shift", "2"]) == 0
    assert CALLS == [("evaluate", "m", {"task": "toy", "device": None, "shift": 2.0})]
    assert capsys.readouterr().out == "toy scores: mse 0.5\n"
    CALLS.clear()
    monkeypatch.setattr("lstmkit.tasks.base.read_model_dir", lambda *args: {"task": "toy"})
    assert main(["evaluate", "--model", "m"]) == 0  # no task flags: no options
    assert CALLS == [("evaluate", "m", {"task": "toy", "device": None})]
    assert capsys.readouterr().out == "toy scores: mse 0.5\n"
    CALLS.clear()
    assert main(["toy", "predict", "--model", "m", "--twice", "1", "2"]) == 0
    assert CALLS == [("predict", "m", ["1", "2"], True)]
    assert main(["toy", "hello", "--name", "LSTM"]) == 0
    assert capsys.readouterr().out == "hello LSTM\n"


def test_a_task_without_hooks_gets_the_generic_commands(capsys):
    register("toy", ToyTask(), "a toy regression")
    try:
        assert task_cli("toy") == TaskCLI()
        out = _help(["toy"], capsys)
        assert all(command in out for command in ("train", "evaluate", "predict"))
        assert "hello" not in out
        assert "--scale-flag" not in _help(["toy", "train"], capsys)
    finally:
        del TASKS["toy"]


def test_hooks_may_be_given_as_a_task_cli_object(capsys):
    register("toy", ToyTask(), "a toy regression", cli=TaskCLI(add_commands=add_commands))
    try:
        assert "hello" in _help(["toy"], capsys)
        assert main(["toy", "hello"]) == 0
        assert capsys.readouterr().out == "hello world\n"
    finally:
        del TASKS["toy"]


def test_a_misspelt_hook_is_an_error_where_the_hooks_are_defined():
    with pytest.raises(TypeError, match="train_flag"):
        TaskCLI(train_flag=train_flags)
    with pytest.raises(TypeError):
        TaskCLI(add_train_flags)  # keyword-only: no hook by position
    with pytest.raises(dataclasses.FrozenInstanceError):
        CLI.predict = None


def test_a_cli_that_is_not_a_task_cli_is_refused():
    register("toy", ToyTask(), "a toy regression", cli="argparse")  # a module without CLI
    try:
        with pytest.raises(AttributeError, match="CLI"):
            task_cli("toy")
    finally:
        del TASKS["toy"]
    register("toy", ToyTask(), "a toy regression", cli={"train_flags": train_flags})
    try:
        with pytest.raises(TypeError, match="must be a TaskCLI, got dict"):
            task_cli("toy")
    finally:
        del TASKS["toy"]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_registered_task_has_a_task_cli(name):
    import importlib

    cli = task_cli(name)
    assert isinstance(cli, TaskCLI)
    assert not hasattr(importlib.import_module(TASKS[name].cli), "DEFAULT_OUT")
    fields = {f.name for f in dataclasses.fields(TaskCLI)}
    assert all(callable(getattr(cli, f)) for f in fields if getattr(cli, f) is not None)
