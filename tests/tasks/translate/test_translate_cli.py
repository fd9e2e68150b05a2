"""The translate CLI end to end on the bundled Multi30k sample with a tiny model: train ->
run -> evaluate -> resume, attention files, the model directory's checks, and bad input."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from lstmkit.cli.main import main
from lstmkit.data.parallel import read_lines
from lstmkit.tasks.translate.batches import make_batch
from lstmkit.tasks.translate.task import SAMPLE

TINY = [
    "--model.emb_size",
    "16",
    "--model.enc_hidden",
    "16",
    "--model.dec_hidden",
    "24",
    "--data.vocab_size",
    "300",
    "--no-progress",
]

pytestmark = pytest.mark.usefixtures("one_thread")


def run(argv: list[str], stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("translate") / "model"
    rc, stdout, _ = run(
        [
            "translate",
            "train",
            "--out",
            str(out),
            "--max-steps",
            "12",
            "--train.epochs",
            "2",
            "--decode.beam",
            "2",
            *TINY,
        ]
    )
    assert rc == 0, stdout
    return out, stdout


def test_train_on_the_bundled_sample(model):
    out, stdout = model
    assert "bundled with lstmkit" in stdout and "500 training pairs" in stdout
    assert "100 validation pairs" in stdout and "signature: nrefs:1|case:mixed" in stdout
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "translate" and results["n"] == 100 and results["steps"] == 12
    assert results["train_pairs"] == 500 and results["pairs_seen"] == 12 * 64
    assert 0 <= results["bleu"] <= 100 and 0 <= results["chrf"] <= 100
    assert results["signature"]["bleu"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert results["signature"]["chrf"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0")
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "translate" and config["artifacts"]["src_vocab"] == "vocab.src.json"
    assert (out / "vocab.src.json").is_file() and (out / "vocab.tgt.json").is_file()
    weights = load_file(out / "model.safetensors")
    assert weights["tgt_embed.weight"].shape[0] == config["artifacts"]["tgt_vocab_size"]


def test_run_keeps_order_and_empty_lines(model, tmp_path):
    out, _ = model
    src = tmp_path / "in.de"
    src.write_text("Ein Mann fährt Fahrrad.\n\nZwei Hunde spielen im Schnee.\n", encoding="utf-8")
    rc, stdout, _ = run(["translate", "run", "--model", str(out), "--file", str(src)])
    lines = stdout.split("\n")
    assert rc == 0 and len(lines) == 4 and lines[1] == "" and lines[3] == ""
    rc, js, _ = run(
        [
            "translate",
            "run",
            "--model",
            str(out),
            "--json",
            "--beam",
            "2",
            "--n-best",
            "2",
            "Ein Mann fährt Fahrrad.",
        ]
    )
    (item,) = json.loads(js)
    assert item["source"] == "Ein Mann fährt Fahrrad." and item["translation"] == lines[0]
    assert len(item["n_best"]) == 2 and item["n_best"][0]["score"] >= item["n_best"][1]["score"]
    rc, greedy, _ = run(
        ["translate", "run", "--model", str(out), "--beam", "1", "Ein Mann fährt Fahrrad."]
    )
    from lstmkit.tasks import run as runner
    from lstmkit.tasks.translate.decode import greedy as greedy_search

    predictor = runner.load(out)
    batch = make_batch([predictor.src_vocab.encode("Ein Mann fährt Fahrrad.")], None, [0])
    (hyp,) = greedy_search(predictor.model, batch.src, batch.src_lengths)
    assert rc == 0 and greedy == predictor.tgt_vocab.decode(hyp.tokens) + "\n"


def test_evaluate_with_src_and_ref(model, tmp_path):
    out, _ = model
    report = tmp_path / "eval.json"
    rc, stdout, _ = run(
        [
            "translate",
            "evaluate",
            "--model",
            str(out),
            "--src",
            str(SAMPLE / "val.de.gz"),
            "--ref",
            str(SAMPLE / "val.en.gz"),
            "--beam",
            "1",
            "--json",
            str(report),
        ]
    )
    assert rc == 0 and "BLEU" in stdout
    result = json.loads(report.read_text())
    assert result["n"] == 100 and result["beam"] == 1 and "tok:13a" in result["signature"]["bleu"]
    # the same sentences through `run` score the same BLEU
    from sacrebleu.metrics import BLEU

    rc, stdout, _ = run(
        [
            "translate",
            "run",
            "--model",
            str(out),
            "--beam",
            "1",
            "--file",
            str(SAMPLE / "val.de.gz"),
        ]
    )
    hyps = stdout.split("\n")[:-1]
    refs = read_lines(SAMPLE / "val.en.gz", raw=True)
    assert BLEU().corpus_score(hyps, [refs]).score == pytest.approx(result["bleu"], abs=0.01)


def test_resume_continues_exactly(tmp_path):
    args = ["translate", "train", "--train.epochs", "2", "--decode.beam", "1", *TINY]
    full, part = tmp_path / "full", tmp_path / "part"
    assert run([*args, "--out", str(full)])[0] == 0
    assert run([*args, "--out", str(part), "--max-steps", "9"])[0] == 0
    rc, stdout, _ = run([*args, "--out", str(part), "--resume"])
    assert rc == 0
    a, b = load_file(full / "model.safetensors"), load_file(part / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] == b[name]).all(), name


def test_attention_files(model, tmp_path):
    out, _ = model
    rc, stdout, _ = run(
        [
            "translate",
            "attention",
            "--model",
            str(out),
            "Ein Mann fährt Fahrrad.",
            "--out",
            str(tmp_path / "att"),
        ]
    )
    assert rc == 0
    png, page = stdout.split()
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = Path(page).read_text(encoding="utf-8")
    assert "<table>" in text and "Fahrrad" in text and "<script" not in text


def test_bad_input(model, tmp_path):
    out, _ = model
    src, tgt = tmp_path / "s.de.gz", tmp_path / "t.en"
    src.write_bytes(gzip.compress(b"a\nb\nc\n"))
    tgt.write_text("x\ny\n")
    rc, _, err = run(
        ["translate", "evaluate", "--model", str(out), "--src", str(src), "--ref", str(tgt)]
    )
    assert rc == 2 and "has 3 lines" in err and "has 2" in err
    bad = tmp_path / "bad.de"
    bad.write_bytes(b"ok\n\xff\n")
    rc, _, err = run(["translate", "run", "--model", str(out), "--file", str(bad)])
    assert rc == 2 and "bad.de, line 2: not UTF-8" in err
    rc, _, err = run(["translate", "train", "--out", str(tmp_path / "x"), "--src", str(src)])
    assert rc == 2 and "data.src and data.tgt go together" in err
    (tmp_path / "vocab").mkdir()
    rc, _, err = run(["translate", "run", "--model", str(tmp_path / "vocab"), "x"])
    assert rc == 2 and "not a model directory" in err


def test_run_refuses_empty_texts_and_beams_wider_than_the_vocabulary(model, tmp_path):
    out, _ = model
    translate = ["translate", "run", "--model", str(out)]
    assert run([*translate, ""]) == (2, "", "lstmkit: error: input 1 is empty\n")
    assert run([*translate, "Ein Mann.", " \t "]) == (2, "", "lstmkit: error: input 2 is empty\n")
    size = json.loads((out / "config.json").read_text())["artifacts"]["tgt_vocab_size"]
    assert 100 < size <= 300  # --data.vocab_size 300
    for beam in (0, size + 1, 100000):
        refused = (
            f"lstmkit: error: --beam must be in [1, {size}] (1: greedy; at most the target "
            f"vocabulary's {size} subwords), got {beam}\n"
        )
        assert run([*translate, "--beam", str(beam), "Ein Mann."]) == (2, "", refused)
        rc, stdout, err = run(
            [
                "translate",
                "attention",
                "--model",
                str(out),
                "--out",
                str(tmp_path),
                "--beam",
                str(beam),
                "Ein Mann.",
            ]
        )
        assert (rc, stdout, err) == (2, "", refused)
        rc, stdout, err = run(["translate", "evaluate", "--model", str(out), "--beam", str(beam)])
        assert (rc, stdout, err) == (2, "", refused)
    rc, stdout, err = run([*translate, "--json", "--beam", str(size), "--n-best", "3", "Ein Mann."])
    assert (rc, err) == (0, "") and len(json.loads(stdout)[0]["n_best"]) == 3


def test_options_joint_unigram_feeding_additive_variant(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("label_smoothing: 0.0\nkeep: last\n")
    out = tmp_path / "m"
    rc, stdout, _ = run(
        [
            "translate",
            "train",
            "--config",
            str(config),
            "--out",
            str(out),
            "--max-steps",
            "3",
            "--data.joint",
            "true",
            "--data.subwords",
            "unigram",
            "--model.input_feeding",
            "true",
            "--model.attention",
            "additive",
            "--model.encoder.layer_norm",
            "true",
            "--decode.beam",
            "2",
            *TINY,
        ]
    )
    assert rc == 0 and "(unigram, joint)" in stdout
    config = json.loads((out / "config.json").read_text())
    assert config["artifacts"]["src_vocab"] == config["artifacts"]["tgt_vocab"] == "vocab.json"
    assert config["config"]["model"]["encoder"]["layer_norm"] is True
    weights = load_file(out / "model.safetensors")
    assert "encoder.ln_c_weight_l0_reverse" in weights  # the layer-normalised encoder
    assert "cells.0.weight_ih" in weights and "attention.v_a.weight" in weights
    rc, stdout, _ = run(["translate", "run", "--model", str(out), "Ein Hund."])
    assert rc == 0 and stdout.count("\n") == 1


def test_checkpoint_averaging_averages_the_last_epochs():
    import torch

    from lstmkit.tasks.translate.task import AverageCheckpoints

    class Trainer:
        model = torch.nn.Linear(2, 1, bias=False)

    trainer, avg = Trainer(), AverageCheckpoints(2)
    for value in (1.0, 2.0, 4.0):
        torch.nn.init.constant_(trainer.model.weight, value)
        avg.on_epoch_end(trainer, {})
    logs = {}
    avg.on_train_end(trainer, logs)
    assert trainer.model.weight.tolist() == [[3.0, 3.0]] and logs["averaged_epochs"] == 2


def test_the_generic_commands_read_a_translate_directory(model, tmp_path):
    out, _ = model
    rc, stdout, _ = run(["predict", "--model", str(out), "Ein Hund läuft."])
    rc2, direct, _ = run(["translate", "run", "--model", str(out), "Ein Hund läuft."])
    assert rc == rc2 == 0 and stdout == direct
    report = tmp_path / "r.json"
    rc, _, _ = run(["evaluate", "--model", str(out), "--json", str(report)])
    result = json.loads(report.read_text())
    assert rc == 0 and result["task"] == "translate" and result["n"] == 100
    assert result["data"].endswith("val.de.gz")
