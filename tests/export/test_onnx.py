"""ONNX export: every graph against the eager model in onnxruntime (within 1e-4) over
configurations, dynamic batch and sequence length, generation through the step graph, the
refused variants, int8 quantization and ``lstmkit export``'s report."""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter

import numpy as np
import onnx
import pytest
import torch

from lstmkit.cli.main import main
from lstmkit.export.runtime import session
from lstmkit.models import LanguageModel, LMModelConfig
from lstmkit.tasks import run
from lstmkit.tasks.export import use_onnx
from lstmkit.tasks.lm.export import OrtLM
from lstmkit.tasks.lm.generate import generate
from lstmkit.tasks.sentiment.export import OrtSentiment
from lstmkit.tasks.sentiment.model import (
    RecurrentEncoder,
    SentimentClassifier,
    SentimentModelConfig,
)
from tests.export.helpers import export_graph, max_difference, random_feeds

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = 1e-4


def classifier(seed: int = 0, **kw) -> SentimentClassifier:
    torch.manual_seed(seed)
    cfg = SentimentModelConfig(embed_size=8, hidden_size=6, **kw)
    model = SentimentClassifier(RecurrentEncoder(40, cfg), cfg).eval()
    with torch.no_grad():  # peephole weights start at zero: make them matter
        for name, p in model.named_parameters():
            if "weight_c" in name:
                p.normal_(0, 0.5)
    return model


def save(graph: onnx.ModelProto, path) -> str:
    onnx.save(graph, str(path))
    return str(path)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"bidirectional": False, "pooling": "last"},
        {"num_layers": 2, "pooling": "max+mean+last", "peephole": True},
        {"num_layers": 3, "pooling": "attention", "head_hidden": 5, "bidirectional": False},
        {"pooling": "attention+max", "peephole": True, "zoneout": 0.3, "weight_drop": 0.2},
    ],
    ids=["default", "uni-last", "2-layers-peephole", "3-layers-attention", "train-variants"],
)
def test_sentiment_graph_matches_eager(kw, tmp_path):
    model = classifier(**kw)
    graph = export_graph("sentiment", model)
    ops = Counter(n.op_type for n in graph.graph.node)
    assert ops["LSTM"] == model.encoder.rnn.num_layers
    sess = session(save(graph, tmp_path / "s.onnx"))
    assert max_difference("sentiment", model, sess) <= TOL
    # dynamic axes: other batch sizes and lengths through the same session
    ort = OrtSentiment(tmp_path / "s.onnx")
    for n, steps in ((1, 1), (7, 23)):
        feeds = random_feeds("sentiment", model, batch=n, steps=steps, seed=n)
        ids, lengths = torch.from_numpy(feeds["ids"]), torch.from_numpy(feeds["lengths"])
        with torch.no_grad():
            expected = model(ids, lengths)
        assert (ort(ids, lengths) - expected).abs().max() <= TOL


@pytest.mark.parametrize("peephole", [False, True])
def test_lm_step_graph_generates_what_eager_generates(peephole, tmp_path):
    from lstmkit.data.tokenizer import Tokenizer

    tok = Tokenizer.train(["the cat sat on the mat. " * 3], "char")
    torch.manual_seed(1)
    model = LanguageModel(tok.vocab_size, LMModelConfig(8, 16, 2, peephole=peephole)).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.embedding.weight, std=1.0)
    graph = export_graph("lm", model)
    assert Counter(n.op_type for n in graph.graph.node)["LSTM"] == 2
    path = save(graph, tmp_path / "lm.onnx")
    assert max_difference("lm", model, session(path)) <= TOL
    ort = OrtLM(path)
    for options in ({"temperature": 0}, {"temperature": 0.9, "seed": 5}):
        eager = "".join(generate(model, tok, "the ", 60, **options))
        assert "".join(generate(ort, tok, "the ", 60, **options)) == eager


def test_tasks_without_a_graph_are_refused():
    from types import SimpleNamespace

    from lstmkit.tasks.export import onnx_export

    with pytest.raises(ValueError, match="the poetry task has no ONNX export"):
        onnx_export(SimpleNamespace(name="poetry"))
    with pytest.raises(ValueError, match="unknown task 'poetry'"):
        export_graph("poetry", LanguageModel(10, LMModelConfig(4, 4, 1)))


def run_cli(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(argv)
    return rc, out.getvalue()


def test_export_command_fp32_and_int8(model_dirs, tmp_path):
    imdb = model_dirs["imdb"]
    accuracy = json.loads((imdb / "results.json").read_text())["accuracy"]
    rc, out = run_cli(["export", "--model", str(imdb), "--out", str(tmp_path / "s.onnx")])
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"wrote {tmp_path / 's.onnx'} (")
    assert float(lines[1].rsplit(" ", 1)[1]) <= TOL
    assert lines[2:] == [
        f"validation eager: accuracy {accuracy:.4f}",
        f"validation onnx: accuracy {accuracy:.4f}",
        "validation onnx_change: accuracy +0.0000",
    ]
    rc, out = run_cli(
        ["export", "--model", str(imdb), "--out", str(tmp_path / "s8.onnx"), "--quantize", "int8"]
    )
    assert rc == 0
    graph = onnx.load(str(tmp_path / "s8.onnx")).graph
    ops = Counter(n.op_type for n in graph.node)
    assert ops["DynamicQuantizeLSTM"] == 1 and ops["MatMulInteger"] == 1 and not ops["LSTM"]
    # the embedding table, most of the weights, is stored in 8 bits and dequantized per lookup
    (table,) = [
        t
        for t in graph.initializer
        if t.name.endswith("_quantized") and len(t.dims) == 2 and t.dims[1] == 16
    ]
    assert table.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    assert ops["DequantizeLinear"] == 1
    lines = out.splitlines()
    assert float(lines[1].rsplit(" ", 1)[1]) <= 0.15  # int8 rounding (0.075 on these feeds)
    int8 = float(lines[3].rsplit(" ", 1)[1])
    assert lines[4] == f"validation int8_change: accuracy {int8 - accuracy:+.4f}"
    # the int8 graph serves through the unchanged Predictor
    texts = ["A moving film.", "Dull and far too long."]
    eager = run.load(imdb).predict(texts)
    fp32 = use_onnx(run.load(imdb), tmp_path / "s.onnx").predict(texts)
    q = use_onnx(run.load(imdb), tmp_path / "s8.onnx").predict(texts)
    assert np.allclose([o["positive"] for o in fp32], [o["positive"] for o in eager], atol=TOL)
    assert np.allclose([o["positive"] for o in q], [o["positive"] for o in eager], atol=0.05)


def test_export_command_errors(model_dirs, tmp_path, capsys):
    assert main(["export", "--model", str(tmp_path), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "is not a model directory (no config.json)" in capsys.readouterr().err


@pytest.mark.parametrize("runtime, tol", [("onnx", TOL), ("int8", 0.05)])
def test_serving_the_graph(model_dirs, runtime, tol):
    from fastapi.testclient import TestClient

    from lstmkit.serve.app import create_app
    from lstmkit.serve.config import BatchConfig
    from lstmkit.serve.models import load_models

    models = load_models(dict(model_dirs), BatchConfig(), runtime=runtime)
    assert type(models["imdb"].predictor.model) is OrtSentiment
    texts = ["A moving film.", "Dull and far too long."]
    with TestClient(create_app(models)) as client:
        got = client.post("/v1/models/imdb/predict", json={"inputs": texts}).json()["outputs"]
        sid = client.post("/v1/models/chars/sessions").json()["session_id"]
        step = client.post(f"/v1/models/chars/sessions/{sid}/step", json={"input": "the c"})
    eager = run.load(model_dirs["imdb"]).predict(texts)
    assert np.allclose([o["positive"] for o in got], [o["positive"] for o in eager], atol=tol)
    assert step.status_code == 200 and step.json()["scored"] == 4


@pytest.mark.parametrize("problem", ["adding", "temporal_order", "copy"])
def test_lab_graphs_match_eager(problem, tmp_path):
    from lstmkit.tasks.lab.export import OrtLab
    from lstmkit.tasks.lab.task import build_model, load_config

    torch.manual_seed(0)
    model_config = {"hidden_size": 8, "num_layers": 2, "peephole": True}
    config = load_config({"data": {"problem": problem, "T": 20}, "model": model_config})
    model = build_model(config).eval()
    path = save(export_graph("lab", model), tmp_path / "lab.onnx")
    assert max_difference("lab", model, session(path)) <= TOL
    x = torch.randn(13, 3, model.rnn.input_size)
    with torch.no_grad():
        expected = model(x)  # no lengths: every sequence to the end, as LabPredictor runs it
    assert (OrtLab(path)(x) - expected).abs().max() <= TOL


def test_export_command_on_a_lab_model(tmp_path):
    out = tmp_path / "adding"
    flags = [
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
        "--max-steps",
        "3",
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["lab", "adding", *flags, "--out", str(out)]) == 0
    solved = json.loads((out / "results.json").read_text())["solved_fraction"]
    rc, printed = run_cli(["export", "--model", str(out), "--out", str(tmp_path / "a.onnx")])
    lines = printed.splitlines()
    assert rc == 0 and float(lines[1].rsplit(" ", 1)[1]) <= TOL
    assert lines[2:] == [
        f"validation eager: solved_fraction {solved:.4f}",
        f"validation onnx: solved_fraction {solved:.4f}",
        "validation onnx_change: solved_fraction +0.0000",
    ]


def _perturb(model: torch.nn.Module) -> None:
    """Layer-norm gains of 1, shifts and peepholes of 0 hide mistakes: make them matter."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln_" in name or "weight_c" in name:
                p.normal_(0.5, 0.5)


@pytest.mark.parametrize(
    "kw",
    [
        {"layer_norm": True},
        {"layer_norm": True, "peephole": True, "num_layers": 2, "pooling": "last+attention"},
        {"layer_norm": True, "bidirectional": False, "pooling": "max"},
    ],
    ids=["ln-bi", "ln-peephole-2-layers", "ln-uni"],
)
def test_variants_without_an_lstm_op_export_as_a_loop(kw, tmp_path):
    model = classifier(**kw)
    _perturb(model)
    graph = export_graph("sentiment", model)
    ops = Counter(n.op_type for n in graph.graph.node)
    dirs = 2 if model.encoder.rnn.bidirectional else 1
    assert ops["LSTM"] == 0 and ops["Scan"] == model.encoder.rnn.num_layers * dirs
    path = save(graph, tmp_path / "loop.onnx")
    assert max_difference("sentiment", model, session(path)) <= TOL
    ort = OrtSentiment(path)
    feeds = random_feeds("sentiment", model, batch=6, steps=17, seed=9)
    ids, lengths = torch.from_numpy(feeds["ids"]), torch.from_numpy(feeds["lengths"])
    with torch.no_grad():
        assert (ort(ids, lengths) - model(ids, lengths)).abs().max() <= TOL


def test_coupled_gates_and_projections_export_as_a_loop(tmp_path):
    from lstmkit.nn import LSTM
    from lstmkit.tasks.lab.task import build_model, load_config

    model = classifier()
    torch.manual_seed(3)
    model.encoder.rnn = LSTM(8, 6, bidirectional=True, coupled=True, peephole=True).eval()
    _perturb(model)
    path = save(export_graph("sentiment", model), tmp_path / "cifg.onnx")
    assert max_difference("sentiment", model, session(path)) <= TOL
    lab = build_model(load_config({"data": {"problem": "adding", "T": 20}})).eval()
    lab.rnn = LSTM(2, 8, num_layers=2, proj_size=3, layer_norm=True).eval()
    lab.head = torch.nn.Linear(3, 1)
    _perturb(lab)
    path = save(export_graph("lab", lab), tmp_path / "proj.onnx")
    assert max_difference("lab", lab, session(path)) <= TOL


def test_lm_step_graph_with_layer_norm(tmp_path):
    torch.manual_seed(2)
    model = LanguageModel(12, LMModelConfig(8, 16, 2, layer_norm=True)).eval()
    _perturb(model)
    path = save(export_graph("lm", model), tmp_path / "lm.onnx")
    assert max_difference("lm", model, session(path)) <= TOL
