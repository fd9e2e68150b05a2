"""ONNX graphs of the forecast, speech and translate models: each output against the eager
model in onnxruntime (within 1e-4) over configurations and dynamic sizes; the runtimes
(:class:`OrtForecaster`, :class:`OrtSpeech`, :class:`OrtSeq2Seq`) giving the eager
predictions (streaming speech, greedy and beam translation); ``lstmkit export`` and
``lstmkit serve --runtime onnx`` on trained directories of the three tasks."""

from __future__ import annotations

import contextlib
import io
from collections import Counter

import numpy as np
import onnx
import pytest
import torch

from lstmkit.cli.main import main
from lstmkit.export.runtime import part_path, session
from lstmkit.tasks import run
from lstmkit.tasks.forecast.export import OrtForecaster
from lstmkit.tasks.forecast.model import Forecaster, ForecastModelConfig
from lstmkit.tasks.speech.export import OrtSpeech
from lstmkit.tasks.speech.model import SpeechEnsemble, SpeechModel, SpeechModelConfig
from lstmkit.tasks.translate.decode import beam_search, greedy
from lstmkit.tasks.translate.export import OrtSeq2Seq
from lstmkit.tasks.translate.model import EncoderVariant, Seq2Seq, TranslateModelConfig
from tests.export.helpers import (
    eager_outputs,
    export_graph,
    export_graphs,
    max_difference,
    random_feeds,
)
from tests.serve.fixtures import QUIET, _train

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = 1e-4


def _perturb(model: torch.nn.Module) -> None:
    """Layer-norm gains of 1, zero shifts and zero peepholes hide mistakes: make them matter."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln_" in name or "weight_c" in name:
                p.normal_(0.5, 0.5)


def save(graph: onnx.ModelProto, path) -> str:
    onnx.save(graph, str(path))
    return str(path)


def saved_parts(task: str, model: torch.nn.Module, out) -> dict[str, str]:
    return {part: save(g, part_path(out, part)) for part, g in export_graphs(task, model).items()}


# -- forecast -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"position": True, "members": 3, "linear_skip": True},
        {"num_layers": 2, "peephole": True, "quantiles": (0.1, 0.5, 0.9)},
        {"layer_norm": True, "zoneout": 0.2, "chunk": 2},
    ],
    ids=["default", "position-ensemble-skip", "2-layers-peephole-quantiles", "layer-norm-chunk"],
)
def test_forecast_graph_matches_eager(kw, tmp_path):
    torch.manual_seed(0)
    model = Forecaster(
        ForecastModelConfig(hidden_size=8, **kw), input_size=12, horizon=5, season=4
    ).eval()
    _perturb(model)
    graph = export_graph("forecast", model)
    ops = Counter(n.op_type for n in graph.graph.node)
    lstm_ops = "Scan" if kw.get("layer_norm") else "LSTM"
    assert ops[lstm_ops] == len(model.members) * model.config.num_layers
    path = save(graph, tmp_path / "f.onnx")
    assert max_difference("forecast", model, session(path)) <= TOL
    ort = OrtForecaster(path, eager=model)
    z, phase = torch.randn(7, 12), torch.tensor([0, 1, 2, 3, 0, 5, 11])
    with torch.no_grad():
        expected, members = model(z, phase), model.forward_members(z, phase)
    got = ort(z, phase)
    assert got.shape == (7, 5, len(model.config.quantiles))
    assert (got - expected).abs().max() <= TOL
    assert (got.diff(dim=-1) >= 0).all()  # sorted: quantiles never cross
    assert all((a - b).abs().max() <= TOL for a, b in zip(ort.forward_members(z, phase), members))


def test_forecast_int8_keeps_the_head_in_float(tmp_path):
    from lstmkit.export.runtime import write_graphs
    from lstmkit.tasks.export import onnx_export

    torch.manual_seed(0)
    config = ForecastModelConfig(hidden_size=8, linear_skip=True)
    model = Forecaster(config, input_size=12, horizon=5, season=4).eval()
    files = write_graphs(onnx_export("forecast"), model, tmp_path / "f.onnx", "int8")
    ops = Counter(n.op_type for n in onnx.load(str(files[""])).graph.node)
    # the LSTM's weights in 8 bits, the head's and the skip's MatMuls in float
    linears = sum(1 + (m.skip is not None) for m in model.members)
    layers = sum(m.rnn.num_layers for m in model.members)  # one LSTM op a layer
    assert ops["DynamicQuantizeLSTM"] == layers and ops["LSTM"] == 0
    assert ops["MatMul"] == linears and ops["MatMulInteger"] == 0


# -- speech -------------------------------------------------------------------------------------


@pytest.mark.parametrize("head", ["ctc", "classify"])
@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"bidirectional": False, "num_layers": 2},
        {"subsample": 3, "pooling": "max"},
        {"subsample": 2, "bidirectional": False, "layer_norm": True},
        {"conv_channels": 3, "num_layers": 2},
        {"conv_channels": 2, "bidirectional": False},
    ],
    ids=[
        "bi",
        "uni-2-layers",
        "subsample-3",
        "uni-subsample-2-layer-norm",
        "conv-2-layers",
        "conv-uni",
    ],
)
def test_speech_graph_matches_eager(head, kw, tmp_path):
    torch.manual_seed(0)
    n_mels = 9 if kw.get("conv_channels") else 5  # the convolution pools 9 bands to 2
    model = SpeechModel(n_mels, 10, head, SpeechModelConfig(hidden_size=6, **kw)).eval()
    _perturb(model)
    graph = export_graph("speech", model)
    assert ("Conv" in {n.op_type for n in graph.graph.node}) == bool(kw.get("conv_channels"))
    path = save(graph, tmp_path / "s.onnx")
    assert max_difference("speech", model, session(path)) <= TOL
    names = {i.name for i in session(path).get_inputs()}
    assert ("h0" in names) == (not model.config.bidirectional)
    ort = OrtSpeech(path, eager=model)
    for t, lengths in ((1, [1]), (17, [17, 4, 9]), (16, [3, 16])):  # odd and even lengths
        feats, lengths = torch.randn(t, len(lengths), n_mels), torch.tensor(lengths)
        with torch.no_grad():
            expected, steps = model(feats, lengths)
        got, got_steps = ort(feats, lengths)
        assert got_steps.tolist() == steps.tolist()
        assert got.shape == expected.shape and (got - expected).abs().max() <= TOL


@pytest.mark.parametrize("conv", [0, 3])
def test_speech_graph_of_two_feature_views_matches_eager(conv, tmp_path):
    torch.manual_seed(0)
    config = SpeechModelConfig(hidden_size=6, conv_channels=conv, members=2 if conv else 1)
    model = (
        SpeechEnsemble(9, 10, config, views=2)
        if conv
        else SpeechModel(9, 10, "classify", config, views=2)
    ).eval()
    graph = export_graph("speech", model)
    (feats_info,) = [i for i in graph.graph.input if i.name == "feats"]
    assert feats_info.type.tensor_type.shape.dim[2].dim_value == 18  # two views of 9 bands
    ort = OrtSpeech(save(graph, tmp_path / "v.onnx"), eager=model)
    feats, lengths = torch.randn(11, 2, 18), torch.tensor([11, 6])
    with torch.no_grad():
        expected, _ = model(feats, lengths)
    got, _ = ort(feats, lengths)
    assert (got - expected).abs().max() <= TOL


def test_frame_convolutions_the_graph_cannot_express_are_refused():
    from lstmkit.export.graph import Graph, head

    for layer in (
        torch.nn.MaxPool1d(2, ceil_mode=True),
        torch.nn.Conv1d(1, 2, 3, padding="same"),
        torch.nn.Conv1d(1, 2, 3, padding=1, padding_mode="reflect"),
    ):
        with pytest.raises(ValueError, match=r"no ONNX export for the layer (MaxPool1d|Conv1d)\("):
            head(Graph(), "x", torch.nn.Sequential(layer))


def test_speech_ensemble_graph_matches_eager(tmp_path):
    torch.manual_seed(0)
    config = SpeechModelConfig(hidden_size=6, conv_channels=2, members=3, pooling="max")
    model = SpeechEnsemble(8, 10, config).eval()
    graph = export_graph("speech", model)
    ops = Counter(n.op_type for n in graph.graph.node)
    assert ops["LSTM"] == 3 * config.num_layers and ops["ReduceLogSumExp"] == 1
    path = save(graph, tmp_path / "e.onnx")
    assert max_difference("speech", model, session(path)) <= TOL
    ort = OrtSpeech(path, eager=model)
    feats, lengths = torch.randn(13, 3, 8), torch.tensor([13, 5, 8])
    with torch.no_grad():
        expected, _ = model(feats, lengths)
        members, _ = model.forward_members(feats, lengths)
    got, _ = ort(feats, lengths)
    assert (got - expected).abs().max() <= TOL
    # the output is the mean of the members' probabilities, not of their logits
    mean_probs = torch.stack([m.softmax(-1) for m in members]).mean(0)
    assert (got.exp() - mean_probs).abs().max() <= TOL
    assert (got.exp() - torch.stack(members).mean(0).softmax(-1)).abs().max() > 1e-3


def test_speech_step_graph_streams_as_eager(tmp_path):
    torch.manual_seed(0)
    config = SpeechModelConfig(hidden_size=6, num_layers=2, bidirectional=False, subsample=3)
    model = SpeechModel(5, 10, "ctc", config).eval()
    ort = OrtSpeech(save(export_graph("speech", model), tmp_path / "s.onnx"), eager=model)
    feats = torch.randn(30, 1, 5)
    state_e = state_o = None
    with torch.no_grad():
        for chunk in feats.split([6, 3, 12, 9]):
            expected, state_e = model.step(chunk, state_e)
            got, state_o = ort.step(chunk, state_o)
            assert (got - expected).abs().max() <= TOL
    assert all((a - b).abs().max() <= TOL for a, b in zip(state_o, state_e))
    with pytest.raises(ValueError, match="a chunk must hold a multiple of 3 frames"):
        ort.step(feats[:4])
    bi = SpeechModel(5, 10, "ctc", SpeechModelConfig(hidden_size=6)).eval()
    ort_bi = OrtSpeech(save(export_graph("speech", bi), tmp_path / "bi.onnx"), eager=bi)
    with pytest.raises(ValueError, match="streaming needs a unidirectional CTC model"):
        ort_bi.step(feats[:3])


# -- translate ----------------------------------------------------------------------------------


def seq2seq(**kw) -> Seq2Seq:
    torch.manual_seed(0)
    c = TranslateModelConfig(emb_size=8, enc_hidden=6, dec_hidden=12, **kw)
    model = Seq2Seq(30, 40, c).eval()
    _perturb(model)
    with torch.no_grad():  # sharper outputs: decoding paths that differ, not ties
        model.out_bias.normal_(0, 2)
    return model


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"input_feeding": True, "dec_layers": 2},
        {"attention": "additive"},
        {"attention": "dot", "tie_embeddings": True, "enc_layers": 2},
        {"encoder": EncoderVariant(layer_norm=True, peephole=True)},
    ],
    ids=[
        "general",
        "input-feeding-2-layers",
        "additive",
        "dot-tied-2-layers",
        "layer-norm-peephole-encoder",
    ],
)
def test_translate_graphs_match_eager_and_decode_alike(kw, tmp_path):
    model = seq2seq(**kw)
    with pytest.raises(ValueError, match="the translate task exports 2 graphs"):
        export_graph("translate", model)
    parts = saved_parts("translate", model, tmp_path / "t.onnx")
    assert sorted(parts) == ["decoder", "encoder"]
    assert parts["encoder"].endswith("t.encoder.onnx")
    for part, path in parts.items():
        assert max_difference("translate", model, session(path), part=part) <= TOL
    ort = OrtSeq2Seq(tmp_path / "t.onnx", eager=model)
    src = torch.randint(4, 30, (5, 11))
    lengths = torch.tensor([11, 3, 7, 1, 0])  # an empty source reads as one padding token
    for n, length in enumerate(lengths.tolist()):
        src[n, length:] = 0
    with torch.no_grad():
        for decode in (
            lambda m: [[h] for h in greedy(m, src, lengths, 2.0)],
            lambda m: beam_search(m, src, lengths, beam=3, n_best=2),
        ):
            expected, got = decode(model), decode(ort)
            assert sum(len(h.tokens) for row in expected for h in row) > 10  # not all empty
            assert [[h.tokens for h in row] for row in got] == [
                [h.tokens for h in row] for row in expected
            ]
            assert np.allclose(
                [h.score for row in got for h in row],
                [h.score for row in expected for h in row],
                atol=1e-4,
            )


def test_translate_feeds_cover_every_output():
    model = seq2seq()
    for part, outputs in (
        ("encoder", {"keys", "mask", "projected", "h", "c", "feed"}),
        ("decoder", {"log_probs", "weights", "h_out", "c_out", "feed_out"}),
    ):
        feeds = random_feeds("translate", model, part, batch=2, steps=4, seed=0)
        assert set(eager_outputs("translate", model, part, feeds)) == outputs


# -- trained directories: lstmkit export and serve --runtime onnx -------------------------------


@pytest.fixture(scope="module")
def dirs(one_thread, tmp_path_factory):
    root = tmp_path_factory.mktemp("graphs")
    # the fsdd-digits preset's kind of model: a frequency convolution over two feature views
    # (one needs the training set's statistics), here also an ensemble
    speech = {
        "model": {"hidden_size": 12, "num_layers": 1, "conv_channels": 2, "members": 2},
        "features": {"normalize": "utterance+global"},
        "train": {**QUIET, "max_steps": 2},
    }
    translate = {
        "data": {"vocab_size": 300},
        "decode": {"beam": 2},
        "model": {"emb_size": 16, "enc_hidden": 16, "dec_hidden": 24},
        "train": {**QUIET, "max_steps": 3},
    }
    return {
        "digits": _train("speech", speech, root / "digits"),
        "hourly": _train("forecast", {"train": {**QUIET, "max_steps": 2}}, root / "hourly"),
        "de-en": _train("translate", translate, root / "de-en"),
    }


def run_cli(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(argv)
    return rc, out.getvalue()


@pytest.mark.parametrize(
    "name, metric", [("digits", "accuracy"), ("hourly", "smape"), ("de-en", "bleu")]
)
def test_export_command_on_every_task(dirs, name, metric, tmp_path):
    out = tmp_path / f"{name}.onnx"
    rc, printed = run_cli(["export", "--model", str(dirs[name]), "--out", str(out)])
    lines = printed.splitlines()
    files = [str(part_path(out, p)) for p in (("encoder", "decoder") if name == "de-en" else "")]
    files = files or [str(out)]
    assert rc == 0 and lines[0].startswith(f"wrote {', '.join(files)} (")
    assert float(lines[1].rsplit(" ", 1)[1]) <= TOL
    eager = float(lines[2].split(f"{metric} ")[1].split(",")[0])
    assert lines[3].startswith(f"validation onnx: {metric} {eager:.4f}")
    change = float(lines[4].split(f"{metric} ")[1].split(",")[0])
    assert lines[4].startswith("validation onnx_change: ") and abs(change) <= 1e-3
    rc, printed = run_cli(
        [
            "export",
            "--model",
            str(dirs[name]),
            "--out",
            str(tmp_path / f"{name}-8.onnx"),
            "--quantize",
            "int8",
        ]
    )
    assert rc == 0 and "validation int8_change: " in printed
    graph = onnx.load(files[0].replace(f"{name}.", f"{name}-8."))
    assert not Counter(n.op_type for n in graph.graph.node)["LSTM"]  # all quantized


def test_serving_every_task_on_onnx(dirs):
    from lstmkit.serve.config import BatchConfig
    from lstmkit.serve.models import load_models

    models = load_models(dict(dirs), BatchConfig(), runtime="onnx")
    kinds = {name: type(m.predictor.model) for name, m in models.items()}
    assert kinds == {"digits": OrtSpeech, "hourly": OrtForecaster, "de-en": OrtSeq2Seq}
    sentences = ["Ein Hund rennt.", "Zwei Männer spielen Fußball im Park."]
    history = [list(np.sin(np.arange(300) / 4) + 2)]
    eager = {name: run.load(d) for name, d in dirs.items()}
    assert models["de-en"].predictor.predict(sentences) == eager["de-en"].predict(sentences)
    got = models["hourly"].predictor.predict(history)[0]
    expected = eager["hourly"].predict(history)[0]
    assert np.allclose(np.asarray(got["forecast"]), np.asarray(expected["forecast"]), atol=1e-3)
