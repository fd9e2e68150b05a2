"""The command line under bad input, as a new user meets it: each case runs ``lstmkit`` as a
subprocess and must end with exit status 2 and one line on stderr naming the culprit, no
traceback, and nothing written or destroyed anywhere (the model directories it reads stay
byte-identical)."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from lstmkit.tasks import get_task, run
from lstmkit.train import from_dict

ROOT = Path(__file__).resolve().parents[2]
QUIET = {"progress": False, "tensorboard": False}


def _train(task: str, config: dict, out: Path) -> Path:
    run.train(
        task,
        from_dict(
            get_task(task).config_class, {**config, "train": {**QUIET, **config.get("train", {})}}
        ),
        out,
    )
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    _train(
        "lab",
        {
            "data": {"T": 12, "steps_per_epoch": 2, "val_size": 10, "test_size": 10},
            "model": {"hidden_size": 4},
            "train": {"epochs": 1},
        },
        root / "lab",
    )
    _train(
        "sentiment",
        {"model": {"embed_size": 8, "hidden_size": 4}, "train": {"epochs": 1, "max_steps": 2}},
        root / "sentiment",
    )
    (root / "text.txt").write_text("abcab " * 200)
    _train(
        "lm",
        {
            "data": {"path": str(root / "text.txt"), "batch_size": 4, "bptt": 8},
            "model": {"embed_size": 8, "hidden_size": 8, "num_layers": 1},
            "train": {"epochs": 1, "max_steps": 3},
        },
        root / "lm",
    )
    _broken(root)
    return root


def _edit_config(directory: Path, edit) -> None:
    path = directory / "config.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def _broken(root: Path) -> None:
    """Copies of the sentiment model, each broken in one way."""

    def copy(name: str) -> Path:
        return Path(shutil.copytree(root / "sentiment", root / name))

    weights = copy("truncated") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    (copy("bad-tokenizer") / "tokenizer.json").write_text("garbage {")
    (copy("list-config") / "config.json").write_text("[1, 2]")
    _edit_config(copy("no-task"), lambda c: {k: v for k, v in c.items() if k != "task"})
    _edit_config(
        copy("bad-value"),
        lambda c: {
            **c,
            "config": {**c["config"], "model": {**c["config"]["model"], "hidden_size": "abc"}},
        },
    )
    _edit_config(copy("newer"), lambda c: {**c, "format": 99, "lstmkit": "9.9"})
    _edit_config(
        copy("huge-vocab"),
        lambda c: {**c, "artifacts": {**c["artifacts"], "vocab_size": 1_000_000_000}},
    )
    shutil.copy(root / "lm" / "tokenizer.json", copy("other-tokenizer") / "tokenizer.json")
    weights = copy("nan-weights") / "model.safetensors"
    tensors = load_file(str(weights))
    first = sorted(tensors)[0]
    tensors[first] = tensors[first].clone().fill_(float("nan"))
    save_file(tensors, str(weights))
    (root / "bad.yaml").write_text("train: {lr: 0.1\n")
    (root / "a-folder").mkdir()


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


M = "{models}"
CASES = {  # name: (arguments, standard input, what the error line must name)
    "truncated weights": (
        ["predict", "--model", f"{M}/truncated", "good"],
        None,
        "model.safetensors",
    ),
    "garbage tokenizer": (
        ["predict", "--model", f"{M}/bad-tokenizer", "good"],
        None,
        "tokenizer.json",
    ),
    "config.json a list": (["predict", "--model", f"{M}/list-config", "x"], None, "config.json"),
    "config.json no task": (["predict", "--model", f"{M}/no-task", "x"], None, "config.json"),
    "config.json bad value": (
        ["predict", "--model", f"{M}/bad-value", "x"],
        None,
        "model.hidden_size",
    ),
    "newer format": (["predict", "--model", f"{M}/newer", "x"], None, "newer lstmkit"),
    "huge vocabulary": (["predict", "--model", f"{M}/huge-vocab", "x"], None, "1000000000"),
    "another model's tokenizer": (
        ["predict", "--model", f"{M}/other-tokenizer", "x"],
        None,
        "tokenizer",
    ),
    "NaN weights": (["sentiment", "predict", "--model", f"{M}/nan-weights", "x"], None, "NaN"),
    "not a model directory": (
        ["predict", "--model", f"{M}/a-folder", "x"],
        None,
        "not a model directory",
    ),
    "no such directory": (["evaluate", "--model", f"{M}/missing"], None, "no such directory"),
    "binary stdin": (
        ["sentiment", "predict", "--model", f"{M}/sentiment"],
        b"\xff\xfe\x00bad\n",
        "standard input",
    ),
    "latin-1 stdin": (
        ["sentiment", "predict", "--model", f"{M}/sentiment"],
        "caf\xe9\n".encode("latin-1"),
        "UTF-8",
    ),
    "--file a directory": (
        ["predict", "--model", f"{M}/sentiment", "--file", f"{M}/a-folder"],
        None,
        "a-folder",
    ),
    "--file missing": (
        ["predict", "--model", f"{M}/sentiment", "--file", f"{M}/nope.txt"],
        None,
        "nope.txt",
    ),
    "empty text": (["sentiment", "predict", "--model", f"{M}/sentiment", " "], None, "empty"),
    "YAML syntax": (
        ["lab", "train", "--config", f"{M}/bad.yaml", "--out", f"{M}/x"],
        None,
        "bad.yaml",
    ),
    "unknown preset": (["lab", "train", "--preset", "nope", "--out", f"{M}/x"], None, "nope"),
    "unknown key": (["lab", "train", "--model.hiden", "3", "--out", f"{M}/x"], None, "model.hiden"),
    "clip_norm nan": (
        ["lab", "train", "--train.clip_norm", "nan", "--out", f"{M}/x"],
        None,
        "clip_norm",
    ),
    "negative hidden size": (
        ["lab", "adding", "--hidden-size", "-3", "--out", f"{M}/x"],
        None,
        "hidden_size",
    ),
    "temperature nan": (
        ["lm", "generate", "--model", f"{M}/lm", "--temperature", "nan"],
        None,
        "temperature",
    ),
    "temperature inf": (
        ["lm", "generate", "--model", f"{M}/lm", "--temperature", "inf"],
        None,
        "temperature",
    ),
    "unknown prompt characters": (
        ["lm", "generate", "--model", f"{M}/lm", "--prompt", "xyz"],
        None,
        "prompt",
    ),
    "batch size 0": (
        ["lm", "evaluate", "--model", f"{M}/lm", "--data", f"{M}/text.txt", "--batch-size", "0"],
        None,
        "batch size",
    ),
    "vanishing T 0": (["lab", "vanishing", "--T", "0", "--out", f"{M}/x"], None, "--T"),
    "resume another task": (
        ["lab", "adding", "--resume", "--out", f"{M}/sentiment"],
        None,
        "'sentiment' model",
    ),
    "resume another size": (
        ["lab", "adding", "--T", "12", "--hidden-size", "5", "--resume", "--out", f"{M}/lab"],
        None,
        "model.hidden_size",
    ),
    "train over a model": (
        ["lab", "adding", "--T", "12", "--hidden-size", "4", "--out", f"{M}/lab"],
        None,
        "--overwrite",
    ),
    "another task's directory": (
        ["lm", "predict", "--model", f"{M}/lab", "x"],
        None,
        "'lab' model",
    ),
    "lab input not JSON": (["predict", "--model", f"{M}/lab", "[[0.5, 1]"], None, "JSON"),
    "lab input wrong shape": (["predict", "--model", f"{M}/lab", "[1, 2, 3]"], None, "shape"),
    "no CUDA": (["predict", "--model", f"{M}/lab", "--device", "cuda", "[[0.5, 1]]"], None, "CUDA"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_clear_error(models, name):
    args, stdin, culprit = CASES[name]
    args = [a.replace(M, str(models)) for a in args]
    before = _snapshot(models)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LSTMKIT_DEBUG", None)
    done = subprocess.run(
        [sys.executable, "-m", "lstmkit.cli.main", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        env=env,
        cwd=models,
    )
    err = done.stderr.decode("utf-8", "replace").strip()
    assert done.returncode == 2, (done.returncode, err[-2000:])
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lstmkit: error: "), err
    assert culprit in lines[0], lines[0]
    assert _snapshot(models) == before  # nothing written, nothing destroyed


def test_debug_shows_the_traceback(models):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lstmkit.cli.main",
            "--debug",
            "predict",
            "--model",
            str(models / "a-folder"),
            "x",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_help_does_not_import_torch():
    code = "import sys; from lstmkit.cli.main import build_parser; build_parser(); "
    code += "print('torch' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.stdout.strip() == "False", done.stderr
