"""The task contract: a toy task written here (about 40 lines) trains, evaluates, predicts
and resumes through the shared code; the registry, the generic CLI and model directories of
the wrong task or format."""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from lstmkit.cli.main import main
from lstmkit.export.graph import F32, Graph, info, linear
from lstmkit.export.runtime import OnnxExport, OrtModule, session
from lstmkit.tasks import TASKS, get_task, register, run
from lstmkit.tasks.base import (
    LSTM_CITATION,
    Built,
    InputError,
    ModelDirError,
    Predictor,
    TaskCard,
    read_model_dir,
)
from lstmkit.train import StepOutput, TrainConfig, from_dict
from lstmkit.train.checkpoint import MODEL_FILE, load_weights


# -- the toy task: y = 2 x + 1 -----------------------------------------------------------------
class Batch(NamedTuple):
    x: torch.Tensor
    y: torch.Tensor


@dataclass
class ToyConfig:
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=0.3, epochs=3))
    size: int = 64


def batches(n: int, seed: int) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(8, 1, generator=g) for _ in range(n // 8)]
    return [Batch(x, 2 * x + 1) for x in xs]


@dataclass(frozen=True)
class RunningMean:
    """The toy's stream: y of each value sent, and of the mean of everything sent so far."""

    predictor: "ToyPredictor"
    total: float = 0.0
    count: int = 0

    @property
    def nbytes(self):
        return 16

    def step(self, chunk, options):
        if not isinstance(chunk, list) or not chunk:
            raise InputError("must be a non-empty list of numbers")
        total, count = self.total + sum(chunk), self.count + len(chunk)
        (mean,) = self.predictor.predict([total / count])
        return {"ys": self.predictor.predict(chunk), "mean": mean}, RunningMean(
            self.predictor, total, count
        )


class ToyPredictor(Predictor):
    @torch.no_grad()
    def predict(self, inputs):
        y = self.model(torch.tensor(inputs, dtype=torch.float32).view(-1, 1))
        return [{"y": float(v)} for v in y.view(-1)]

    def parse_input(self, text):
        return float(text)

    def check_input(self, item):
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise InputError(f"must be a number, got {item!r}")

    def open_stream(self):
        return RunningMean(self)


# the toy's ONNX export: x (N, 1) -> y (N, 1), a Linear layer in the graph builder's terms
def toy_graphs(model):
    g = Graph()
    g.op("Identity", [linear(g, "x", model)], ["y"])
    return {"": g.model("toy", [info("x", F32, ["N", 1])], [info("y", F32, ["N", 1])])}


def toy_feeds(model, part, batch, steps, seed):
    return {"x": np.random.default_rng(seed).normal(size=(batch, 1)).astype(np.float32)}


@torch.no_grad()
def toy_expected(model, part, feeds):
    return {"y": model(torch.from_numpy(feeds["x"])).numpy()}


class OrtToy(OrtModule):
    def __init__(self, path, threads, eager):
        super().__init__()
        self.session = session(path, threads)

    def forward(self, x):
        return torch.from_numpy(self.session.run(["y"], {"x": x.numpy()})[0])


def toy_scores(predictor):
    return {"mse": TOY.score(predictor.model, TOY.eval_data(predictor, None, "val"))["mse"]}


TOY_ONNX = OnnxExport(toy_graphs, toy_feeds, toy_expected, OrtToy, toy_scores)


class ToyTask:
    name, config_class = "toy", ToyConfig
    onnx = TOY_ONNX
    card = TaskCard(
        "toy regressor",
        None,
        "y = 2 x + 1 on normal x.",
        LSTM_CITATION,
        "Checking the task contract.",
        "Knows one line.",
        ("mse",),
    )

    def build(self, config, run):
        data = batches(config.size, config.train.seed)
        return Built(
            nn.Linear(1, 1),
            data,
            batches(32, 99),
            score_data=batches(32, 7),
            artifacts={"scale": 2},
            facts={"n": 32},
            per_step={"seen": 8},
        )

    def step_fn(self, config):
        def step(model, batch, state=None):
            loss = nn.functional.mse_loss(model(batch.x), batch.y)
            return StepOutput(
                loss, len(batch.x), {"mae": float((model(batch.x) - batch.y).abs().mean().detach())}
            )

        return step

    def callbacks(self, config):
        return []

    @torch.no_grad()
    def score(self, model, data):
        return {
            "mse": float(sum(nn.functional.mse_loss(model(b.x), b.y) for b in data) / len(data))
        }

    def eval_data(self, predictor, path, split):
        return batches(32, 7 if split in (None, "test") else 99)

    def load(self, model_dir, device=None):
        raw = read_model_dir(model_dir, self.name)
        model = load_weights(nn.Linear(1, 1), Path(model_dir) / MODEL_FILE)
        return ToyPredictor(
            self.name,
            from_dict(ToyConfig, raw["config"]),
            model,
            raw["artifacts"],
            model_dir,
            device,
        )

    def summary(self, results):
        return f"toy mse {results['mse']:.4f}"


TOY = ToyTask()
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def toy():
    register("toy", TOY, "a toy regression")
    yield TOY
    del TASKS["toy"]


def config(**train):
    return from_dict(ToyConfig, {"train": {"progress": False, "tensorboard": False, **train}})


def test_toy_task_trains_evaluates_predicts_through_the_shared_code(toy, tmp_path):
    results = run.train(toy, config(), tmp_path / "m")
    assert results["task"] == "toy" and results["steps"] == 3 * 8 and results["seen"] == 8 * 24
    assert results["n"] == 32 and results["mse"] < 0.5
    raw = json.loads((tmp_path / "m" / "config.json").read_text())
    assert raw["task"] == "toy" and raw["format"] == 1 and raw["artifacts"] == {"scale": 2}
    assert raw["config"]["train"]["lr"] == 0.3
    assert json.loads((tmp_path / "m" / "results.json").read_text()) == results
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert len(metrics["history"]) == 3 and metrics["global_step"] == 24
    scored = run.evaluate(tmp_path / "m")
    assert scored["mse"] == pytest.approx(results["mse"], rel=1e-6)
    predictor = run.load(tmp_path / "m")
    w, b = predictor.model.weight.item(), predictor.model.bias.item()
    assert predictor.predict([0.0, 1.0]) == [{"y": pytest.approx(b)}, {"y": pytest.approx(w + b)}]
    json.dumps(predictor.predict([3.0]))


def test_toy_task_exports_serves_and_gets_a_card_with_no_line_of_export_or_serve(toy, tmp_path):
    from fastapi.testclient import TestClient

    from lstmkit.serve.app import create_app
    from lstmkit.serve.config import BatchConfig
    from lstmkit.serve.models import load_models
    from lstmkit.tasks.export import export_onnx

    run.train(toy, config(), tmp_path / "m", command=["lstmkit", "toy", "train"])
    card = (tmp_path / "m" / "README.md").read_text()
    assert "# m: an lstmkit toy regressor" in card and "```\nlstmkit toy train\n```" in card
    assert "| mse |" in card and "Knows one line." in card
    result = export_onnx(tmp_path / "m", tmp_path / "toy.onnx")
    assert result["max_difference"] <= 1e-6
    assert result["validation"]["onnx_change"]["mse"] == pytest.approx(0, abs=1e-6)
    w, b = (p.item() for p in run.load(tmp_path / "m").model.parameters())
    for runtime in ("eager", "onnx"):
        models = load_models({"toy": tmp_path / "m"}, BatchConfig(), runtime=runtime)
        assert isinstance(models["toy"].predictor.model, OrtToy) == (runtime == "onnx")
        with TestClient(create_app(models)) as client:
            (info_,) = client.get("/v1/models").json()["models"]
            assert info_["widget"] == "generic" and info_["endpoints"] == ["predict", "sessions"]
            r = client.post("/v1/models/toy/predict", json={"inputs": [0.0, 2.0]})
            assert r.json()["outputs"] == [
                {"y": pytest.approx(b, abs=1e-5)},
                {"y": pytest.approx(2 * w + b, abs=1e-5)},
            ]
            r = client.post("/v1/models/toy/predict", json={"inputs": [1.0, "two"]})
            assert r.status_code == 422 and r.json()["error"]["field"] == "inputs[1]"
            assert "must be a number, got 'two'" in r.json()["error"]["message"]
            sid = client.post("/v1/models/toy/sessions").json()["session_id"]
            url = f"/v1/models/toy/sessions/{sid}/step"
            client.post(url, json={"input": [1.0, 3.0]})
            step = client.post(url, json={"input": [5.0]}).json()
            assert step["step"] == 2 and step["mean"]["y"] == pytest.approx(3 * w + b, abs=1e-5)
            assert client.post(url, json={"input": []}).status_code == 422


def test_toy_task_resumes_bitwise(toy, tmp_path):
    run.train(toy, config(), tmp_path / "straight")
    run.train(toy, config(max_steps=10), tmp_path / "split")
    run.train(toy, config(), tmp_path / "split", resume=True)
    a = load_file(str(tmp_path / "straight" / MODEL_FILE))
    b = load_file(str(tmp_path / "split" / MODEL_FILE))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_predictor_loads_once(toy, tmp_path, monkeypatch):
    run.train(toy, config(epochs=1), tmp_path / "m")
    predictor = run.load(tmp_path / "m")
    first = predictor.predict([1.0, 2.0])

    def no_reads(*args, **kwargs):
        raise AssertionError("a file was read after loading")

    monkeypatch.setattr("builtins.open", no_reads)
    monkeypatch.setattr("pathlib.Path.read_text", no_reads)
    monkeypatch.setattr("pathlib.Path.read_bytes", no_reads)
    monkeypatch.setattr("safetensors.torch.load_file", no_reads)
    assert predictor.predict([1.0, 2.0]) == first


def test_generic_cli_for_a_registered_task(toy, tmp_path, capsys):
    out = str(tmp_path / "m")
    assert (
        main(
            [
                "toy",
                "train",
                "--out",
                out,
                "--no-progress",
                "--train.tensorboard",
                "false",
                "--max-steps",
                "5",
            ]
        )
        == 0
    )
    assert "toy mse" in capsys.readouterr().out
    assert (
        main(
            ["toy", "train", "--out", out, "--resume", "--no-progress", "--train.tensorboard=false"]
        )
        == 0
    )
    assert json.loads((tmp_path / "m" / "results.json").read_text())["steps"] == 24
    capsys.readouterr()
    assert main(["predict", "--model", out, "0", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["y"] for line in lines] == [
        o["y"] for o in run.load(out).predict([0.0, 1.0])
    ]
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--model", out, "--json", str(report)]) == 0
    assert json.loads(report.read_text())["mse"] == pytest.approx(run.evaluate(out)["mse"])
    assert main(["toy", "train", "--out", out]) == 2  # a trained model is not replaced
    assert "--overwrite" in capsys.readouterr().err


def test_registry():
    assert {"sentiment", "lm", "lab"} <= set(TASKS)
    assert get_task("lab").name == "lab"
    with pytest.raises(ValueError, match="unknown task 'nope'; known tasks: .*lab"):
        get_task("nope")
    with pytest.raises(ValueError, match="already registered"):
        register("lab", TOY)


def test_model_dirs_of_the_wrong_task_or_format(toy, tmp_path):
    run.train(toy, config(epochs=1), tmp_path / "m")
    with pytest.raises(ModelDirError, match="holds a 'toy' model, not a 'lab' model"):
        get_task("lab").load(tmp_path / "m")
    with pytest.raises(ModelDirError, match="holds a 'toy' model, not a 'sentiment' model"):
        run.evaluate(tmp_path / "m", task="sentiment")
    raw = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**raw, "format": 2, "lstmkit": "9.0"}))
    with pytest.raises(ModelDirError, match=r"format 2 was written by a newer lstmkit \(9.0\)"):
        run.load(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(ModelDirError, match="not valid JSON"):
        run.load(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps({**raw, "config": [1]}))
    with pytest.raises(ModelDirError, match='"config" must be a mapping'):
        run.load(tmp_path / "m")
    with pytest.raises(ModelDirError, match="no config.json"):
        run.load(tmp_path)
    with pytest.raises(ModelDirError, match="no such directory"):
        run.load(tmp_path / "missing")


LAB = {
    "data": {"T": 12, "steps_per_epoch": 2, "val_size": 10, "test_size": 10},
    "model": {"hidden_size": 4},
    "train": {"epochs": 1, "progress": False, "tensorboard": False},
}


def test_resume_checks_task_and_model_before_reading_data(toy, tmp_path):
    run.train("lab", from_dict(get_task("lab").config_class, LAB), tmp_path / "lab")
    with pytest.raises(ModelDirError, match="holds a 'lab' model, not a 'toy' model"):
        run.train(toy, config(), tmp_path / "lab", resume=True)
    other = from_dict(get_task("lab").config_class, {"model": {"hidden_size": 5}})
    with pytest.raises(ModelDirError, match="model.hidden_size 4 there, 5 now"):
        run.train("lab", other, tmp_path / "lab", resume=True)


def test_lab_predictor(tmp_path):
    lab = get_task("lab")
    cfg = from_dict(
        lab.config_class,
        {
            "data": {"T": 12, "steps_per_epoch": 2, "val_size": 10, "test_size": 10},
            "model": {"hidden_size": 4},
            "train": {"epochs": 1, "progress": False, "tensorboard": False},
        },
    )
    run.train(lab, cfg, tmp_path)
    predictor = run.load(tmp_path)
    seq = [[0.5, 1.0], [0.25, 0.0], [0.125, 1.0]]
    out = predictor.predict([seq])
    with torch.no_grad():
        expected = predictor.model(torch.tensor(seq).unsqueeze(1))
    assert out == [{"prediction": pytest.approx(float(expected[0]))}]
    with pytest.raises(ValueError, match=r"input 1: expected a sequence of shape \(L, 2\)"):
        predictor.predict([[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="JSON list of steps"):
        predictor.parse_input("[[0.5, 1]")


def test_override_forms_mix(toy, tmp_path):
    out = tmp_path / "m"
    argv = [
        "toy",
        "train",
        "--out",
        str(out),
        "--train.lr=0.2",
        "--no-progress",
        "--train.epochs",
        "1",
        "--train.tensorboard=false",
    ]
    assert main(argv) == 0
    train = json.loads((out / "config.json").read_text())["config"]["train"]
    assert (train["lr"], train["epochs"], train["tensorboard"]) == (0.2, 1, False)


def test_a_task_that_does_not_shard_is_refused_under_torchrun_in_one_place(
    toy, tmp_path, monkeypatch
):
    from types import SimpleNamespace

    from lstmkit.tasks import run as run_module

    two = SimpleNamespace(rank=0, world_size=2, is_main=True)
    monkeypatch.setattr(run_module.distributed, "setup", lambda: two)
    monkeypatch.setattr(toy, "shards", False, raising=False)
    with pytest.raises(ValueError, match=r"^the toy task trains in one process \(no torchrun\)$"):
        run.train(toy, config(), tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_keep_callbacks_is_the_standard_policy():
    from lstmkit.train import EarlyStopping, ModelCheckpoint, keep_callbacks

    best = keep_callbacks("val_owa", "min", patience=3)
    assert [type(c) for c in best] == [EarlyStopping, ModelCheckpoint]
    assert best[0].restore_best_weights and best[1].save_best_only
    last = keep_callbacks("val_wer", "min", "last", 2)
    assert [type(c) for c in last] == [EarlyStopping] and not last[0].restore_best_weights
    (only,) = keep_callbacks("val_nll", "min", "last")
    assert isinstance(only, ModelCheckpoint) and not only.save_best_only
    with pytest.raises(ValueError, match="keep must be one of best, last, got 'first'"):
        keep_callbacks("val_loss", keep="first")
