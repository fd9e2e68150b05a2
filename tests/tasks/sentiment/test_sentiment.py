"""The sentiment task against hand computations: encoders and poolings over padded batches,
the LM encoder's chunked reading and truncated gradients, config validation, the metrics
against scikit-learn, truncation and bucketing; a tiny model beats chance on the bundled
sample; the CLI's train -> evaluate -> predict round trip; the LM-pretrained (ULMFiT) path end
to end on a synthetic archive."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import random
import shutil
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from sklearn import metrics as skm

from lstmkit.cli.main import main
from lstmkit.data.imdb import clean_text, load_imdb, split_reviews
from lstmkit.data.tokenizer import Tokenizer
from lstmkit.data.word_vectors import word2vec_embeddings
from lstmkit.models import LanguageModel, LMModelConfig
from lstmkit.tasks import run as runner
from lstmkit.tasks.lm import task as lm_task
from lstmkit.tasks.sentiment import task
from lstmkit.tasks.sentiment.model import (
    LMEncoder,
    Pooling,
    RecurrentEncoder,
    SentimentClassifier,
    SentimentModelConfig,
)

POOLINGS = ["last", "max", "mean", "attention", "max+mean+last"]
VOCAB = 30
TOL = 1e-10


pytestmark = pytest.mark.usefixtures("one_thread")


def classifier(pooling: str, bidirectional: bool = True, num_layers: int = 1, seed: int = 0):
    """A tiny float64 classifier in eval mode."""
    torch.manual_seed(seed)
    cfg = SentimentModelConfig(
        embed_size=8,
        hidden_size=6,
        num_layers=num_layers,
        bidirectional=bidirectional,
        pooling=pooling,
        head_hidden=5,
    )
    return SentimentClassifier(RecurrentEncoder(VOCAB, cfg), cfg).double().eval()


def batch(lengths: list[int], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids (L, N) padded with 0 after each review's length."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (max(lengths), len(lengths)), generator=gen)
    for n, length in enumerate(lengths):
        ids[length:, n] = 0
    return ids, torch.tensor(lengths)


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


# -- the classifier over padded batches -------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("pooling", POOLINGS)
def test_shapes_with_variable_lengths(pooling, bidirectional):
    model = classifier(pooling, bidirectional)
    ids, lengths = batch([9, 3, 5, 1])
    features = 6 * (2 if bidirectional else 1)
    outputs, last = model.encoder(ids, lengths)
    assert outputs.shape == (9, 4, features) and last.shape == (4, features)
    assert model.encoder.output_size == features
    assert model.pooling.output_size == features * len(pooling.split("+"))
    mask = torch.arange(9).unsqueeze(1) < lengths
    pooled = model.pooling(outputs, mask, last)
    assert pooled.shape == (4, model.pooling.output_size)
    assert torch.isfinite(pooled).all()
    logits = model(ids, lengths)
    assert logits.shape == (4, 2) and logits.dtype == torch.float64
    with pytest.raises(ValueError, match="shape"):
        model(ids[:, 0], lengths[:1])


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("pooling", POOLINGS)
def test_logits_do_not_depend_on_padding(pooling, bidirectional):
    model = classifier(pooling, bidirectional, num_layers=2)
    lengths = [7, 4, 2, 1]
    ids, lens = batch(lengths)
    with torch.no_grad():
        logits = model(ids, lens)
        # five more padding steps, and junk (real token ids) in every padded position
        longer = torch.cat([ids, torch.zeros(5, 4, dtype=torch.long)])
        junk = torch.randint(1, VOCAB, longer.shape, generator=torch.Generator().manual_seed(7))
        padded = torch.arange(12).unsqueeze(1) >= lens
        assert padded.sum() == 48 - sum(lengths)
        longer = torch.where(padded, junk, longer)
        assert (longer[padded] != 0).any()
        torch.testing.assert_close(model(longer, lens), logits, rtol=0, atol=TOL)
        # and each review alone, unpadded
        for n, length in enumerate(lengths):
            alone = model(ids[:length, n : n + 1], torch.tensor([length]))
            torch.testing.assert_close(alone[0], logits[n], rtol=0, atol=TOL)
    assert not torch.allclose(logits[0], logits[1])  # the reviews do differ


@pytest.mark.parametrize("bidirectional", [True, False])
def test_last_is_the_top_layers_h_n_at_each_reviews_own_end(bidirectional):
    model = classifier("last", bidirectional, num_layers=2)
    enc = model.encoder
    lengths = [6, 2, 4]
    ids, lens = batch(lengths, seed=3)
    with torch.no_grad():
        outputs, last = enc(ids, lens)
        mask = torch.arange(6).unsqueeze(1) < lens
        torch.testing.assert_close(model.pooling(outputs, mask, last), last, rtol=0, atol=0)
        for n, length in enumerate(lengths):
            out, (h_n, _) = enc.rnn(enc.embedding(ids[:length, n : n + 1]))
            assert h_n.shape == ((4 if bidirectional else 2), 1, 6)
            top = h_n[-2:] if bidirectional else h_n[-1:]
            torch.testing.assert_close(last[n], torch.cat(list(top), -1)[0], rtol=0, atol=TOL)
            # forward: the output at the review's last step; reverse: at its first
            torch.testing.assert_close(last[n, :6], outputs[length - 1, n, :6], rtol=0, atol=TOL)
            if bidirectional:
                torch.testing.assert_close(last[n, 6:], outputs[0, n, 6:], rtol=0, atol=TOL)
            # padded outputs are exactly zero
            assert (outputs[length:, n] == 0).all()
    # not the output at the padded end: review 1 (length 2) has zeros there
    assert last[1].abs().min() > 0


def test_masked_max_mean_attention_equal_hand_computations():
    torch.manual_seed(0)
    lengths = torch.tensor([5, 2, 3])
    outputs = torch.randn(5, 3, 4, dtype=torch.float64) - 2.0  # mostly negative
    mask = torch.arange(5).unsqueeze(1) < lengths
    outputs = torch.where(mask.unsqueeze(-1), outputs, torch.full_like(outputs, 100.0))  # junk
    last = torch.randn(3, 4, dtype=torch.float64)
    pool = Pooling("max+mean+attention+last", 4).double()
    assert pool.output_size == 16
    with torch.no_grad():
        got = pool(outputs, mask, last)
        for n, length in enumerate(lengths.tolist()):
            valid = outputs[:length, n]  # (length, 4)
            scores = pool.attention(valid)[:, 0]
            weights = scores.exp() / scores.exp().sum()
            expected = torch.cat(
                [
                    valid.max(0).values,
                    valid.sum(0) / length,
                    (weights.unsqueeze(1) * valid).sum(0),
                    last[n],
                ]
            )
            torch.testing.assert_close(got[n], expected, rtol=0, atol=TOL)
    # the hand values by example: review 1's first feature over its two valid steps
    a, b = outputs[0, 1, 0].item(), outputs[1, 1, 0].item()
    assert got[1, 0].item() == max(a, b) < 0  # the junk (100) would win an unmasked max
    assert got[1, 4].item() == pytest.approx((a + b) / 2, abs=TOL)


# -- the LM encoder ---------------------------------------------------------------------------


def tiny_lm(vocab: int = 20, seed: int = 0) -> LanguageModel:
    torch.manual_seed(seed)
    cfg = LMModelConfig(
        embed_size=8,
        hidden_size=12,
        num_layers=2,
        dropout=0.0,
        dropouth=0.0,
        dropouti=0.0,
        dropoute=0.0,
        weight_drop=0.0,
    )
    return LanguageModel(vocab, cfg)


def test_lm_encoder_in_chunks_equals_one_pass_of_each_review():
    lm = tiny_lm().double().eval()
    enc = LMEncoder(lm, chunk_len=3, grad_chunks=20)
    assert enc.output_size == 8
    # chunks [0,3) [3,6) [6,9) [9,10): review 1 ends on a chunk boundary, 2 and 3 before the
    # last chunk (their state must survive the chunks they sit out)
    lengths = [10, 6, 4, 2]
    gen = torch.Generator().manual_seed(5)
    ids = torch.randint(1, 20, (10, 4), generator=gen)
    with torch.no_grad():
        outputs, last = enc(ids, torch.tensor(lengths))
        assert outputs.shape == (10, 4, 8) and last.shape == (4, 8)
        for n, length in enumerate(lengths):
            _, state, (raw, _) = lm(ids[:length, n : n + 1], return_hidden=True)
            torch.testing.assert_close(outputs[:length, n], raw[:, 0], rtol=0, atol=TOL)
            torch.testing.assert_close(last[n], state[-1][0][0, 0], rtol=0, atol=TOL)
            if length < 10:  # the state after its own last token, not after the padding
                assert not torch.allclose(last[n], outputs[-1, n])


def test_lm_encoder_classifier_logits_equal_each_review_alone():
    cfg = SentimentModelConfig(pooling="max+mean+last+attention", chunk_len=3)
    torch.manual_seed(2)
    model = SentimentClassifier(LMEncoder(tiny_lm(), 3, 20), cfg).double().eval()
    lengths = [8, 5, 1]
    ids = torch.randint(1, 20, (8, 3), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        logits = model(ids, torch.tensor(lengths))
        for n, length in enumerate(lengths):
            alone = model(ids[:length, n : n + 1], torch.tensor([length]))
            torch.testing.assert_close(alone[0], logits[n], rtol=0, atol=TOL)


@pytest.mark.parametrize("steps", [9, 8])
def test_lm_encoder_gradients_reach_only_the_last_grad_chunks(steps):
    # chunk_len 3: chunk 1 reads tokens 2-4 only, chunk 2 tokens 5-7, chunk 3 tokens 8-10
    chunks = [[2, 3, 4], [5, 6, 7], [8, 9, 10]]
    column = [t for chunk in chunks for t in chunk][:steps]
    ids = torch.tensor(column).unsqueeze(1).repeat(1, 2)
    lengths = torch.tensor([steps, steps])
    for grad_chunks, trained in ((1, {8, 9, 10}), (2, {5, 6, 7, 8, 9, 10}), (3, set(range(2, 11)))):
        lm = tiny_lm(vocab=12)
        enc = LMEncoder(lm, chunk_len=3, grad_chunks=grad_chunks)
        outputs, last = enc(ids, lengths)
        (outputs.pow(2).sum() + last.sum()).backward()
        grad = lm.embedding.weight.grad
        present = set(column)
        for token in range(12):
            if token in trained & present:
                assert grad[token].abs().sum() > 0, (grad_chunks, token)
            else:
                assert (grad[token] == 0).all(), (grad_chunks, token)
        for layer in lm.layers:
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())


# -- adversarial training -----------------------------------------------------------------------


def test_adversarial_step_equals_a_hand_computation():
    torch.manual_seed(0)
    cfg = SentimentModelConfig(
        embed_size=8, hidden_size=6, dropout=0.0, dropouti=0.0, adversarial=2.5
    )
    model = SentimentClassifier(RecurrentEncoder(VOCAB, cfg), cfg).double().train()
    ids, lengths = batch([7, 3, 5])
    labels = torch.tensor([1, 0, 1])
    out = task.sentiment_step(model, task.Batch(ids, lengths, labels), adversarial=2.5)
    # by hand: the gradient of the clean loss at the embeddings, scaled to norm 2.5 a review
    x = model.encoder.embedding(ids).detach().requires_grad_()
    clean = torch.nn.functional.cross_entropy(
        model.classify(model.encoder.encode(x, lengths), lengths), labels
    )
    (g,) = torch.autograd.grad(clean, x)
    r = torch.stack([2.5 * g[:, n] / g[:, n].norm() for n in range(3)], 1)
    assert torch.allclose(r[:, 1].norm(), torch.tensor(2.5, dtype=torch.float64))
    assert r[3:, 1].abs().max() == 0  # padding gets no perturbation: it has no gradient
    perturbed = torch.nn.functional.cross_entropy(
        model.classify(model.encoder.encode(x.detach() + r, lengths), lengths), labels
    )
    # the step takes the cross-entropy of float32 logits
    assert abs(float(out.loss.detach()) - float((clean + perturbed).detach())) <= 1e-6
    assert abs(out.metrics["adversarial_loss"] - float(perturbed.detach())) <= 1e-6
    assert float(perturbed.detach()) > float(clean.detach())  # the perturbation is adversarial
    out.loss.backward()  # gradients reach the weights through both passes
    assert model.encoder.rnn.weight_hh_l0.grad.abs().sum() > 0
    model.eval()  # evaluation is the plain forward
    plain = task.sentiment_step(model, task.Batch(ids, lengths, labels), adversarial=2.5)
    assert "adversarial_loss" not in plain.metrics


def test_adversarial_step_with_a_frozen_embedding_table():
    torch.manual_seed(0)
    cfg = SentimentModelConfig(
        embed_size=8, hidden_size=6, dropout=0.0, dropouti=0.0, freeze_embeddings=True
    )
    model = SentimentClassifier(RecurrentEncoder(VOCAB, cfg), cfg).train()
    assert not model.encoder.embedding.weight.requires_grad
    ids, lengths = batch([7, 3, 5])
    labels = torch.tensor([1, 0, 1])
    out = task.sentiment_step(model, task.Batch(ids, lengths, labels), adversarial=2.5)
    with torch.no_grad():
        clean = float(torch.nn.functional.cross_entropy(model(ids, lengths), labels))
    adversarial = out.metrics["adversarial_loss"]
    assert adversarial > clean  # the perturbation still follows the loss gradient
    assert abs(float(out.loss.detach()) - (clean + adversarial)) <= 1e-5
    out.loss.backward()
    assert model.encoder.embedding.weight.grad is None
    assert model.encoder.rnn.weight_ih_l0.grad.abs().sum() > 0


def test_adversarial_training_through_the_cli(tmp_path):
    out = tmp_path / "adv"
    rc, stdout, err = run(
        [
            "sentiment",
            "train",
            "--out",
            str(out),
            *TINY,
            "--max-steps",
            "3",
            "--model.adversarial",
            "1.0",
        ]
    )
    assert rc == 0, err
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["model"]["adversarial"] == 1.0
    logged = (out / "train_log.csv").read_text().splitlines()
    assert "adversarial_loss" in logged[0] and len(logged) == 4  # header + 3 steps


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pooling": "maximum"}, "model.pooling must join distinct names"),
        ({"pooling": "max+max"}, "model.pooling must join distinct names"),
        ({"pooling": "max+"}, "model.pooling"),
        ({"dropout": 1.0}, r"model.dropout must be in \[0, 1\)"),
        ({"dropouti": -0.1}, r"model.dropouti must be in \[0, 1\)"),
        ({"hidden_size": 0}, "model.hidden_size must be positive"),
        ({"num_classes": 1}, "model.num_classes must be >= 2"),
        ({"adversarial": -1.0}, "model.adversarial must be >= 0"),
        ({"adversarial": 2.0, "pretrained": "lm"}, "does not apply with model.pretrained"),
        ({"embeddings": "glove"}, "model.embeddings must be one of random, word2vec; got 'glove'"),
        ({"embeddings": "word2vec", "pretrained": "lm"}, "model.pretrained brings its own"),
    ],
)
def test_model_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SentimentModelConfig(**kwargs)


def test_load_config_rejects_unknown_keys_and_keeps_defaults():
    with pytest.raises(ValueError, match=r"unknown key\(s\) model.hiden_size"):
        task.load_config({"model": {"hiden_size": 16}})
    with pytest.raises(ValueError, match="data.tokenizer must be word or bpe"):
        task.load_config({"data": {"tokenizer": "char"}})
    cfg = task.load_config({"model": {"hidden_size": "16", "pooling": "max+mean+last"}})
    assert cfg.model.hidden_size == 16 and cfg.model.embed_size == 64
    assert cfg.train.monitor == "val_accuracy" and cfg.train.lr == 3e-3  # the task's defaults
    with pytest.raises(ValueError, match="data.unsup feeds model.embeddings: word2vec"):
        task.load_config({"data": {"unsup": True}})
    with pytest.raises(ValueError, match="unknown key\\(s\\) word2vec.epoch"):
        task.load_config({"word2vec": {"epoch": 3}})
    rc, _, err = run(["sentiment", "train", "--model.hiden_size", "8"])
    assert rc == 2 and "unknown key(s) model.hiden_size" in err


# -- metrics ----------------------------------------------------------------------------------

PROBS = torch.tensor(
    [
        [0.9, 0.1],
        [0.2, 0.8],
        [0.6, 0.4],
        [0.3, 0.7],
        [0.45, 0.55],
        [0.8, 0.2],
        [0.1, 0.9],
        [0.7, 0.3],
    ]
)
LABELS = [0, 1, 1, 1, 0, 0, 1, 1]  # predicted: 0 1 0 1 1 0 1 0


def test_scores_equal_sklearn_and_hand_values():
    r = task.scores(PROBS, LABELS)
    pred = [0, 1, 0, 1, 1, 0, 1, 0]
    p1 = PROBS[:, 1].tolist()
    # tn 2, fp 1, fn 2, tp 3
    assert r["confusion_matrix"] == [[2, 1], [2, 3]]
    assert r["confusion_matrix"] == skm.confusion_matrix(LABELS, pred).tolist()
    assert r["accuracy"] == pytest.approx(5 / 8) == skm.accuracy_score(LABELS, pred)
    # precision neg 2/4, pos 3/4; recall neg 2/3, pos 3/5; F1 neg 4/7, pos 2/3
    assert r["precision"] == pytest.approx(0.625)
    assert r["precision"] == pytest.approx(skm.precision_score(LABELS, pred, average="macro"))
    assert r["recall"] == pytest.approx(19 / 30)
    assert r["recall"] == pytest.approx(skm.recall_score(LABELS, pred, average="macro"))
    assert r["f1"] == pytest.approx(13 / 21)
    assert r["f1"] == pytest.approx(skm.f1_score(LABELS, pred, average="macro"))
    # 13 of the 15 (positive, negative) pairs are ranked right
    assert r["roc_auc"] == pytest.approx(13 / 15)
    assert r["roc_auc"] == pytest.approx(skm.roc_auc_score(LABELS, p1))
    assert r["report"]["neg"]["precision"] == pytest.approx(0.5)
    assert r["report"]["pos"]["recall"] == pytest.approx(0.6)
    assert r["report"]["pos"]["support"] == 5 and r["n"] == 8
    assert "accuracy" not in r["report"]


def test_format_report_shows_the_numbers():
    text = task.format_report(task.scores(PROBS, LABELS))
    assert "[[2, 1], [2, 3]]" in text
    assert "ROC-AUC 0.8667" in text
    lines = text.splitlines()
    assert lines[1].split() == ["neg", "0.5000", "0.6667", "0.5714", "3"]
    assert lines[2].split() == ["pos", "0.7500", "0.6000", "0.6667", "5"]
    assert next(x for x in lines if x.strip().startswith("accuracy")).split() == [
        "accuracy",
        "0.6250",
        "8",
    ]


# -- encoding and batches ---------------------------------------------------------------------


def test_encode_reviews_truncates_head_and_tail_and_never_returns_empty():
    words = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
    tok = Tokenizer.train([" ".join(words)] * 2, "word", min_frequency=1)
    wid = {w: tok.encode(w)[0] for w in words}
    texts = [" ".join(words), "a b c d", "b c d e f", "", "zzz"]
    enc = task.encode_reviews(tok, texts, [1, 0, 1, 0, 1], max_len=4)
    assert enc.truncated == 2  # 10 and 5 words; exactly 4 is not truncated
    assert enc.ids[0] == [wid["a"], wid["h"], wid["i"], wid["j"]]  # 4 // 4 = 1 head + 3 tail
    assert enc.ids[1] == [wid["a"], wid["b"], wid["c"], wid["d"]]
    assert enc.ids[2] == [wid["b"], wid["d"], wid["e"], wid["f"]]
    assert enc.ids[3] == [tok.unk_id] == [1]  # nothing to read: one <unk>
    assert enc.ids[4] == [tok.unk_id]
    assert enc.labels == [1, 0, 1, 0, 1]


def test_loader_yields_every_review_once_per_epoch_time_major():
    rng = random.Random(0)
    ids = [[rng.randrange(2, 50) for _ in range(rng.randint(1, 15))] for _ in range(23)]
    data = task.Encoded(ids, list(range(23)), 0)  # label = index, to find each review
    dl = task.loader(data, batch_size=4, shuffle=True, seed=3, pad_id=0)
    orders = []
    for epoch in range(2):
        dl.batch_sampler.set_epoch(epoch)
        seen, spans = [], []
        for b in dl:
            length, n = b.ids.shape
            assert n == len(b.labels) == len(b.lengths) <= 4
            assert length == int(b.lengths.max())
            for j, k in enumerate(b.labels.tolist()):
                assert b.lengths[j] == len(ids[k])
                assert b.ids[: len(ids[k]), j].tolist() == ids[k]
                assert (b.ids[len(ids[k]) :, j] == 0).all()
            seen += b.labels.tolist()
            spans.append((int(b.lengths.min()), int(b.lengths.max())))
        assert sorted(seen) == list(range(23))
        assert len(spans) == 6  # 5 batches of 4 and one of 3
        spans.sort()  # one pool (23 < 4 * 50): the batches cut the length order
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
        orders.append(seen)
    assert orders[0] != orders[1]  # reshuffled per epoch
    fixed = task.loader(data, batch_size=4, shuffle=False, seed=0, pad_id=0)
    lengths = [len(ids[k]) for b in fixed for k in b.labels.tolist()]
    assert lengths == sorted(lengths) and len(lengths) == 23


# -- a tiny model on the bundled sample, through the CLI --------------------------------------

TINY = [
    "--no-progress",
    "--seed",
    "0",
    "--data.max_len",
    "64",
    "--data.batch_size",
    "16",
    "--data.vocab_size",
    "5000",
    "--model.embed_size",
    "32",
    "--model.hidden_size",
    "16",
    "--model.pooling",
    "mean",
    "--train.epochs",
    "2",
    "--train.lr",
    "1e-2",
    "--train.tensorboard",
    "false",
]


@pytest.fixture(scope="module")
def trained(one_thread, tmp_path_factory):
    out = tmp_path_factory.mktemp("sentiment") / "model"
    rc, stdout, err = run(["sentiment", "train", "--out", str(out), *TINY])
    assert rc == 0, err
    assert "bundled with lstmkit" in stdout and "validation accuracy" in stdout
    return out


def test_tiny_model_beats_chance_on_the_sample(trained):
    results = json.loads((trained / "results.json").read_text())
    assert results["n"] == 500 and results["train_reviews"] == 5500
    assert (results["task"], results["split"]) == ("sentiment", "val")
    assert results["data"] == str(task.SAMPLE)
    # chance is 0.5 +- 0.022 on 500 reviews
    assert results["accuracy"] >= 0.65
    assert results["roc_auc"] >= 0.7
    assert sum(map(sum, results["confusion_matrix"])) == 500


def test_model_directory(trained):
    names = {p.name for p in trained.iterdir()}
    expected = {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "metrics.json",
        "train_log.csv",
        "results.json",
    }
    assert expected <= names
    config = json.loads((trained / "config.json").read_text())
    results = json.loads((trained / "results.json").read_text())
    metrics = json.loads((trained / "metrics.json").read_text())
    assert (config["task"], config["format"]) == ("sentiment", 1)
    assert config["config"]["model"]["hidden_size"] == 16
    assert config["artifacts"]["vocab_size"] == Tokenizer.load(trained).vocab_size
    assert config["artifacts"]["tokenizer"] == "tokenizer.json"
    with open(trained / "train_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == results["steps"] > 0
    # the saved weights are the best epoch's: the best validation accuracy of the history
    best = max(e["val_accuracy"] for e in metrics["history"])
    assert results["accuracy"] == pytest.approx(best, abs=1e-6)
    assert metrics["history"][metrics["best_epoch"] - 1]["val_accuracy"] == best
    # results.json holds the per-class report, consistent with the scores and the matrix
    (tn, fp), (fn, tp) = results["confusion_matrix"]
    assert results["report"]["neg"]["support"] == tn + fp
    assert results["report"]["pos"]["support"] == fn + tp
    assert results["report"]["pos"]["recall"] == pytest.approx(tp / (fn + tp))
    assert results["report"]["macro avg"]["f1-score"] == results["f1"]
    predictor = task.TASK.load(trained)
    model, tok, cfg = predictor.model, predictor.tokenizer, predictor.config
    assert not model.training and cfg.model.pooling == "mean"
    assert model.encoder.embedding.num_embeddings == tok.vocab_size


def test_evaluate_val_reproduces_the_training_scores(trained, tmp_path):
    scores_file = tmp_path / "val.json"
    rc, stdout, err = run(
        [
            "sentiment",
            "evaluate",
            "--model",
            str(trained),
            "--split",
            "val",
            "--json",
            str(scores_file),
        ]
    )
    assert rc == 0, err
    results = json.loads((trained / "results.json").read_text())
    got = json.loads(scores_file.read_text())
    assert got["split"] == "val" and got["n"] == 500
    assert (got["task"], got["model"]) == ("sentiment", str(trained))
    assert got["accuracy"] == results["accuracy"]
    assert got["confusion_matrix"] == results["confusion_matrix"]
    assert got["roc_auc"] == pytest.approx(results["roc_auc"], abs=1e-12)
    (tn, fp), (fn, tp) = got["confusion_matrix"]
    assert f"[[{tn}, {fp}], [{fn}, {tp}]]" in stdout
    assert "val split of" in stdout and "500 reviews" in stdout


def test_evaluate_test_split_missing_from_the_sample(trained):
    rc, _, err = run(["sentiment", "evaluate", "--model", str(trained), "--split", "test"])
    assert rc == 2
    assert "aclImdb/test not found" in err and task.SAMPLE.name in err


def test_predict_texts_prints_a_line_each(trained):
    texts = [
        "A wonderful, moving film with great acting.",
        "Boring, awful and a waste of time. The worst movie I have seen this year, by a long way.",
    ]
    expected = task.TASK.load(trained).predict(texts)
    rc, stdout, err = run(["sentiment", "predict", "--model", str(trained), *texts])
    assert rc == 0, err
    lines = stdout.splitlines()
    assert len(lines) == 2
    for line, text, r in zip(lines, texts, expected):
        label, prob, short = line.split("\t")
        assert label == r["label"] in ("neg", "pos")
        assert float(prob) == pytest.approx(r["probability"], abs=5e-5)
        assert 0.5 <= r["probability"] <= 1
        assert r["probability"] == pytest.approx(max(r["positive"], 1 - r["positive"]))
        assert short == (text if len(text) <= 60 else text[:57] + "...")
    assert lines[1].endswith("...")


def stdin(text: str) -> io.TextIOWrapper:
    """A standard input holding ``text`` (UTF-8 bytes under it, as a real one has)."""
    return io.TextIOWrapper(io.BytesIO(text.encode("utf-8")), encoding="utf-8")


def test_predict_json_from_stdin(trained, monkeypatch):
    monkeypatch.setattr(sys, "stdin", stdin("a great film\n\n   \nawful, dull plot\n"))
    rc, stdout, err = run(["sentiment", "predict", "--model", str(trained), "--json"])
    assert rc == 0, err
    got = json.loads(stdout)
    assert [g["input"] for g in got] == ["a great film", "awful, dull plot"]
    expected = task.TASK.load(trained).predict(["a great film", "awful, dull plot"])
    for g, r in zip(got, expected):
        assert g["label"] == r["label"] == ("pos" if g["positive"] >= 0.5 else "neg")
        assert g["probability"] == pytest.approx(r["probability"], abs=1e-12)


def test_predict_rejects_empty_input(trained, monkeypatch):
    rc, _, err = run(["sentiment", "predict", "--model", str(trained), "fine", "<br />"])
    assert rc == 2 and "input 2 is empty" in err
    monkeypatch.setattr(sys, "stdin", stdin("\n  \n"))
    rc, _, err = run(["sentiment", "predict", "--model", str(trained)])
    assert rc == 2 and "no text to classify" in err


def test_gate_heatmap_of_a_review_reads_the_encoders_lstm(trained, tmp_path):
    text = "A wonderful film. " * 30  # longer than data.max_len: nothing is truncated
    predictor = task.TASK.load(trained)
    rnn, x, tokens = predictor.gate_inputs(text)
    model, tokenizer, config = predictor.model, predictor.tokenizer, predictor.config
    assert len(tokens) > config.data.max_len
    assert tokens == tokenizer.hf.encode(clean_text(text)).tokens
    ids = torch.tensor(tokenizer.encode(clean_text(text)))
    torch.testing.assert_close(x, model.encoder.embedding(ids), rtol=0, atol=0)
    torch.testing.assert_close(rnn.state_dict(), model.encoder.rnn.state_dict(), rtol=0, atol=0)
    _, _, gates = rnn(x, return_gates=True)
    out = tmp_path / "gates"
    rc, stdout, err = run(["sentiment", "gates", "--model", str(trained), text, "--out", str(out)])
    assert rc == 0, err
    assert stdout.split() == [str(out) + ".png", str(out) + ".html"]
    page = (tmp_path / "gates.html").read_text()
    assert "wonderful" in page and "data:image/png;base64," in page
    assert gates.f.shape[-2] == len(tokens)  # (layers * directions, L, H): every token
    rc, _, err = run(["sentiment", "gates", "--model", str(trained), "<br />"])
    assert rc == 2 and "the text is empty" in err


def test_resume_of_a_finished_run_keeps_the_best_epochs_model(tmp_path, monkeypatch):
    from lstmkit.train.trainer import Trainer

    # the validation accuracy the callbacks see is set per epoch, so that the best epoch is
    # the second of four on every machine (which epoch really scores best depends on the
    # CPU's floating point); the real scores and each epoch's weights are recorded
    monitored = [0.7, 0.8, 0.75, 0.6]
    real, weights_at = [], []
    evaluate = Trainer.evaluate

    def scripted(self, model, data):
        scores = evaluate(self, model, data)
        real.append(scores["accuracy"])
        weights_at.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return {**scores, "accuracy": monitored[len(real) - 1]}

    monkeypatch.setattr(Trainer, "evaluate", scripted)
    out = tmp_path / "model"
    args = [
        "sentiment",
        "train",
        "--out",
        str(out),
        *TINY,
        "--train.epochs",
        "4",
        "--train.lr",
        "1e-1",
        "--train.schedule",
        "constant",
    ]
    rc, _, err = run(args)
    assert rc == 0, err
    assert len(real) == 4
    before = json.loads((out / "results.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["val_accuracy"] for e in metrics["history"]] == monitored
    assert metrics["best_epoch"] == 2
    # the model is the second epoch's weights (not the last's), scored as such
    weights = load_file(str(out / "model.safetensors"))
    assert any(not torch.equal(value, weights_at[-1][name]) for name, value in weights.items())
    for name, value in weights.items():
        assert torch.equal(value, weights_at[1][name]), name
    assert before["accuracy"] == pytest.approx(real[1], abs=1e-6)
    rc, _, err = run([*args, "--resume"])  # nothing left to train
    assert rc == 0, err
    assert len(real) == 4
    after = json.loads((out / "results.json").read_text())
    assert after["accuracy"] == before["accuracy"] and after["steps"] == before["steps"] == 4 * 344
    for name, value in load_file(str(out / "model.safetensors")).items():
        assert torch.equal(value, weights[name]), name


# -- the LM-pretrained path (ULMFiT) ----------------------------------------------------------

POS = [
    "great",
    "wonderful",
    "superb",
    "brilliant",
    "loved",
    "delightful",
    "masterpiece",
    "charming",
]
NEG = ["awful", "terrible", "boring", "dreadful", "hated", "dull", "waste", "horrible"]
NEUTRAL = [
    "the",
    "movie",
    "film",
    "plot",
    "acting",
    "was",
    "and",
    "it",
    "this",
    "story",
    "cast",
    "scene",
]


def write_archive(path: Path, n: int = 40, seed: int = 0) -> Path:
    """A tiny aclImdb archive: train/pos, train/neg and train/unsup, ``n`` reviews each."""
    rng = random.Random(seed)
    with tarfile.open(path, "w:gz") as tar:
        for folder, words, rating in (("pos", POS, 9), ("neg", NEG, 2), ("unsup", POS + NEG, 0)):
            for i in range(n):
                size = rng.randint(8, 16)
                text = " ".join(rng.choice(words if k % 2 else NEUTRAL) for k in range(size))
                data = (text + ".").encode()
                info = tarfile.TarInfo(f"aclImdb/train/{folder}/{i}_{rating}.txt")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_lm_pretrained_classifier_end_to_end(tmp_path):
    archive = write_archive(tmp_path / "tiny_imdb.tar.gz")
    lm_dir, out = tmp_path / "lm", tmp_path / "clf"
    rc, _, err = run(
        [
            "lm",
            "train",
            "--data",
            str(archive),
            "--out",
            str(lm_dir),
            "--no-progress",
            "--data.source",
            "imdb",
            "--data.split",
            "random",  # the archive has no urls files
            "--data.tokenizer",
            "bpe",
            "--data.vocab_size",
            "120",
            "--data.val_size",
            "10",
            "--data.batch_size",
            "4",
            "--data.bptt",
            "16",
            "--data.eval_batch_size",
            "2",
            "--model.embed_size",
            "8",
            "--model.hidden_size",
            "12",
            "--model.num_layers",
            "2",
            "--train.epochs",
            "1",
            "--train.tensorboard",
            "false",
        ]
    )
    assert rc == 0, err
    lm_predictor = lm_task.TASK.load(lm_dir)
    lm, lm_tok = lm_predictor.model, lm_predictor.tokenizer
    lm_weights = {k: v.clone() for k, v in lm.state_dict().items()}

    # the classifier built on the LM starts from the LM's embedding and layers
    cfg = task.load_config({"model": {"pretrained": str(lm_dir), "chunk_len": 8}})
    model = task.build_model(cfg, lm_tok.vocab_size, lm_tok.pad_id)
    encoder = model.encoder.state_dict()
    assert set(encoder) == {k for k in lm_weights if not k.startswith("decoder")}
    assert len(encoder) == 9  # embedding + 4 tensors per layer
    for name, value in encoder.items():
        assert torch.equal(value, lm_weights[name]), name

    sentiment = [
        "sentiment",
        "train",
        "--data",
        str(archive),
        "--out",
        str(out),
        "--no-progress",
        "--model.pretrained",
        str(lm_dir),
        "--model.chunk_len",
        "8",
        "--model.grad_chunks",
        "2",
        "--data.max_len",
        "32",
        "--data.val_size",
        "20",
        "--data.batch_size",
        "8",
        "--data.split",
        "random",
        "--train.epochs",
        "2",
        "--train.tensorboard",
        "false",
        "--finetune.gradual_unfreezing",
        "true",
    ]
    rc, _, err = run(sentiment)
    assert rc == 0, err
    assert Tokenizer.load(out).hf.to_str() == lm_tok.hf.to_str()  # the LM's tokenizer
    # groups: embedding, LSTM 1, LSTM 2, pooling + head: three stages, then everything
    stages = out / "stages"
    assert sorted(p.name for p in stages.iterdir()) == ["1", "2", "3"]
    # each stage unfroze one more group from the top: what it froze still is the LM's
    frozen = {
        "1": ("embedding", "layers.0", "layers.1"),
        "2": ("embedding", "layers.0"),
        "3": ("embedding",),
        "final": (),
    }
    for stage, groups in frozen.items():
        directory = out if stage == "final" else stages / stage
        assert (directory / "metrics.json").is_file()
        saved = load_file(str(directory / "model.safetensors"))
        for name in encoder:
            same = torch.equal(saved[f"encoder.{name}"], lm_weights[name])
            assert same == name.startswith(groups), (stage, name)

    results = json.loads((out / "results.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert results["n"] == 20 and config["artifacts"]["encoder"]["hidden_size"] == 12
    texts = ["a superb and charming film.", "a dull, dreadful movie."]
    before = task.TASK.load(out).predict(texts)

    rc, _, err = run([*sentiment, "--resume"])  # a finished run: nothing left to do
    assert rc == 0, err
    assert json.loads((out / "results.json").read_text())["accuracy"] == results["accuracy"]

    shutil.rmtree(lm_dir)  # the model directory stands on its own
    predictor = runner.load(out)  # the task read from config.json
    model, loaded = predictor.model, predictor.config
    assert predictor.task == "sentiment" and loaded.model.pretrained == str(lm_dir)
    assert isinstance(model.encoder, LMEncoder) and model.encoder.output_size == 8
    assert predictor.predict(texts) == before
    assert runner.evaluate(out, None, "val")["accuracy"] == results["accuracy"]


def test_word2vec_embeddings_learn_from_train_and_unsup_never_validation(tmp_path, monkeypatch):
    archive = write_archive(tmp_path / "tiny_imdb.tar.gz")
    seen: list[list[str]] = []
    tables: list[torch.Tensor] = []

    def spy(tokenizer, texts, dim, config, seed):
        seen.append(list(texts))
        table, learned = word2vec_embeddings(tokenizer, texts, dim, config, seed)
        tables.append(table)
        return table, learned

    monkeypatch.setattr(task, "word2vec_embeddings", spy)
    # the trainer's first step must start from the word2vec table: record the weights it sees
    starts: list[torch.Tensor] = []
    first_rnn: list[torch.Tensor] = []
    real_step = task.sentiment_step

    def first_step(model, batch, *args, **kwargs):
        if not starts:
            starts.append(model.encoder.embedding.weight.detach().clone())
            first_rnn.append(model.encoder.rnn.weight_hh_l0.detach().clone())
        return real_step(model, batch, *args, **kwargs)

    monkeypatch.setattr(task, "sentiment_step", first_step)
    out = tmp_path / "w2v"
    argv = [
        "sentiment",
        "train",
        "--data",
        str(archive),
        "--out",
        str(out),
        "--no-progress",
        "--data.split",
        "random",
        "--data.val_size",
        "20",
        "--data.batch_size",
        "8",
        "--model.embed_size",
        "8",
        "--model.hidden_size",
        "6",
        "--model.embeddings",
        "word2vec",
        "--data.unsup",
        "true",
        "--word2vec.workers",
        "1",
        "--word2vec.min_count",
        "1",
        "--model.freeze_embeddings",
        "true",
        "--model.adversarial",
        "1.0",
        "--train.tensorboard",
        "false",
    ]
    rc, stdout, err = run([*argv, "--max-steps", "2"])
    assert rc == 0, err
    reviews = list(load_imdb(archive, "train"))
    train, val = split_reviews(reviews, 20, 0, "random")
    unsup = [r.text for r in load_imdb(archive, "unsup")]
    assert seen == [[r.text for r in train] + unsup]  # 60 training + 40 unlabelled reviews
    assert not {r.text for r in val} & set(seen[0])
    assert torch.equal(starts[0], tables[0])
    # frozen: the saved table is still word2vec's, while the LSTM trained
    saved = load_file(str(out / "model.safetensors"))
    assert torch.equal(saved["encoder.embedding.weight"], tables[0])
    assert not torch.equal(saved["encoder.rnn.weight_hh_l0"], first_rnn[0])
    vocab = Tokenizer.load(out).vocab_size
    assert f"word2vec: {vocab - 2} of {vocab} embeddings learned from 100 reviews" in stdout
    # a resumed run continues its own weights: no word2vec again
    rc, stdout, err = run([*argv, "--max-steps", "4", "--resume"])
    assert rc == 0, err
    assert len(seen) == 1 and "word2vec:" not in stdout


@pytest.mark.parametrize("frozen", [False, True])
def test_adversarial_step_gradients_equal_two_backward_passes(frozen):
    # the step's single pass through the clean graph against the plain formulation:
    # backward of (clean + perturbed) with r from a separate gradient of the clean loss (the
    # step's cross-entropy is of float32 logits, so the reference's is too)
    torch.manual_seed(0)
    cfg = SentimentModelConfig(
        embed_size=8,
        hidden_size=6,
        dropout=0.0,
        dropouti=0.0,
        freeze_embeddings=frozen,
        pooling="max+mean",
    )
    model = SentimentClassifier(RecurrentEncoder(VOCAB, cfg), cfg).double().train()
    ids, lengths = batch([7, 3, 5])
    labels = torch.tensor([1, 0, 1])
    out = task.sentiment_step(model, task.Batch(ids, lengths, labels), adversarial=2.5)
    out.loss.backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    x = model.encoder.embed(ids)
    xg = x if not frozen else x.detach().requires_grad_()
    clean = torch.nn.functional.cross_entropy(
        model.classify(model.encoder.encode(xg, lengths), lengths).float(), labels
    )
    (g,) = torch.autograd.grad(clean, xg, retain_graph=True)
    r = 2.5 * g / g.pow(2).sum((0, 2), keepdim=True).sqrt()
    perturbed = torch.nn.functional.cross_entropy(
        model.classify(model.encoder.encode(xg + r, lengths), lengths).float(), labels
    )
    (clean + perturbed).backward()
    assert abs(float(out.loss.detach()) - float((clean + perturbed).detach())) <= 1e-12
    assert ("encoder.embedding.weight" in got) == (not frozen)
    assert len(got) >= 8
    for name, grad in got.items():
        torch.testing.assert_close(
            grad, dict(model.named_parameters())[name].grad, rtol=1e-10, atol=1e-12, msg=name
        )


def test_adversarial_step_refuses_ddp(tmp_path):
    import torch.distributed as dist

    cfg = SentimentModelConfig(embed_size=8, hidden_size=6)
    model = SentimentClassifier(RecurrentEncoder(VOCAB, cfg), cfg).train()
    ids, lengths = batch([7, 3, 5])
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        with pytest.raises(ValueError, match="model.adversarial is not supported with DDP"):
            task.sentiment_step(
                ddp, task.Batch(ids, lengths, torch.tensor([1, 0, 1])), adversarial=2.5
            )
        # without adversarial training the wrapped model steps as the bare one does
        labels = torch.tensor([1, 0, 1])
        torch.manual_seed(1)
        out = task.sentiment_step(ddp, task.Batch(ids, lengths, labels))
        torch.manual_seed(1)
        bare = task.sentiment_step(model, task.Batch(ids, lengths, labels))
        assert float(out.loss.detach()) == float(bare.loss.detach()) > 0
    finally:
        dist.destroy_process_group()
