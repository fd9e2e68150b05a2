"""The LM task against hand computations: loss, carried state, streamed evaluation, decoding;
a tiny model overfits; the CLI's train -> evaluate -> generate round trip; bad input."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lstmkit.cli.main import main
from lstmkit.data.bptt import BPTTBatch, BPTTBatches
from lstmkit.data.tokenizer import Tokenizer
from lstmkit.models import LanguageModel, LMModelConfig
from lstmkit.tasks import run
from lstmkit.tasks.lm import task
from lstmkit.tasks.lm.generate import filter_logits, generate

TEXT = "hello world, the quick brown fox jumps over the lazy dog.\n"
NO_DROPOUT = dict(dropout=0.0, dropouth=0.0, dropouti=0.0, dropoute=0.0, weight_drop=0.0)
INF = float("inf")


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(vocab: int, seed: int = 0, **overrides) -> LanguageModel:
    torch.manual_seed(seed)
    config = LMModelConfig(
        embed_size=8, hidden_size=16, num_layers=2, **{**NO_DROPOUT, **overrides}
    )
    return LanguageModel(vocab, config)


def hand_nll(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed -log softmax(logits)[y] in float64, written out."""
    lg = logits.detach().double().flatten(0, -2)
    logp = lg - lg.exp().sum(-1, keepdim=True).log()
    return -logp[torch.arange(y.numel()), y.flatten()].sum()


@torch.no_grad()
def stream_nll(model: LanguageModel, stream: torch.Tensor) -> float:
    """Summed next-token NLL of one stream read in one call from the zero state."""
    logits, _ = model(stream[:-1].unsqueeze(1))
    return float(hand_nll(logits, stream[1:]))


# -- the loss ---------------------------------------------------------------------------------


def test_loss_is_the_mean_next_token_nll_by_hand():
    model = tiny_model(12).eval()
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randint(12, (6, 3), generator=gen), torch.randint(12, (6, 3), generator=gen)
    logits, _ = model(x)
    expected = float(hand_nll(logits, y)) / 18
    assert 2.0 < expected < 3.0  # about ln 12 for an untrained model
    out = task.make_step(ar=2.0, tar=1.0)(model, BPTTBatch(x, y, 1.0), None)  # eval: no AR/TAR
    assert abs(out.loss.item() - expected) < 1e-6
    assert out.size == 18
    assert out.metrics["nll"] == pytest.approx(expected, abs=1e-6)
    assert len(out.state) == 2 and out.state[1][0].shape == (1, 3, 8)


def penalties(raw: torch.Tensor, dropped: torch.Tensor) -> tuple[float, float]:
    ar = float((dropped.detach().double() ** 2).sum() / dropped.numel())
    diff = raw[1:].detach().double() - raw[:-1].detach().double()
    return ar, float((diff**2).sum() / diff.numel())


def test_ar_and_tar_add_exactly_their_penalties_in_training():
    model = tiny_model(12).train()  # every dropout 0: training is deterministic
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randint(12, (7, 2), generator=gen), torch.randint(12, (7, 2), generator=gen)
    batch = BPTTBatch(x, y, 1.0)
    logits, _, (raw, dropped) = model(x, None, return_hidden=True)
    assert torch.equal(raw, dropped)
    nll = float(hand_nll(logits, y)) / 14
    ar, tar = penalties(raw, dropped)
    assert ar > 1e-3 and tar > 1e-3  # both terms are big enough to be seen
    for a, t in [(0.0, 0.0), (2.0, 0.0), (0.0, 3.0), (2.0, 3.0)]:
        loss = task.make_step(a, t)(model, batch, None).loss.item()
        assert loss == pytest.approx(nll + a * ar + t * tar, abs=1e-6)
    # a one-step window has no step-to-step change: TAR adds nothing
    loss1 = task.make_step(2.0, 3.0)(model, BPTTBatch(x[:1], y[:1], 1.0), None).loss.item()
    logits1, _, (raw1, _) = model(x[:1], None, return_hidden=True)
    expected1 = float(hand_nll(logits1, y[:1])) / 2 + 2.0 * (raw1.double() ** 2).mean().item()
    assert loss1 == pytest.approx(expected1, abs=1e-6)


def test_ar_uses_the_dropped_output_and_tar_the_raw_one():
    model = tiny_model(12, dropout=0.5).train()  # output dropout only
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randint(12, (7, 2), generator=gen), torch.randint(12, (7, 2), generator=gen)
    torch.manual_seed(5)
    logits, _, (raw, dropped) = model(x, None, return_hidden=True)
    assert not torch.equal(raw, dropped)
    ar, tar = penalties(raw, dropped)
    expected = float(hand_nll(logits, y)) / 14 + 2.0 * ar + 3.0 * tar
    torch.manual_seed(5)  # the same dropout mask
    loss = task.make_step(2.0, 3.0)(model, BPTTBatch(x, y, 1.0), None).loss.item()
    assert loss == pytest.approx(expected, abs=1e-6)
    assert ar != pytest.approx(penalties(raw, raw)[0], rel=1e-3)  # the two readings differ


# -- carried state ----------------------------------------------------------------------------


@torch.no_grad()
def test_state_carried_across_windows_equals_one_long_pass():
    model = tiny_model(12).double().eval()
    ids = torch.randint(12, (40, 3), generator=torch.Generator().manual_seed(4))
    full, full_state = model(ids)
    outs, state = [], None
    for a, b in [(0, 7), (7, 20), (20, 21), (21, 40)]:
        out, state = model(ids[a:b], state)
        outs.append(out)
    assert float((torch.cat(outs) - full).abs().max()) < 1e-10
    for (h, c), (h_full, c_full) in zip(state, full_state):
        assert float((h - h_full).abs().max()) < 1e-10
        assert float((c - c_full).abs().max()) < 1e-10
    fresh, _ = model(ids[7:20])  # without the carried state the outputs differ
    assert float((fresh - full[7:20]).abs().max()) > 1e-4


@torch.no_grad()
def test_bptt_batches_with_the_step_state_equal_one_pass_over_the_columns():
    model = tiny_model(12).double().eval()
    tokens = torch.randint(12, (301,), generator=torch.Generator().manual_seed(5))
    batches = BPTTBatches(tokens, batch_size=3, bptt=9, variable=True, seed=1)
    step, state, total, count = task.make_step(), None, 0.0, 0
    for batch in batches:
        out = step(model, batch, state)
        state, total, count = out.state, total + out.loss.item() * out.size, count + out.size
    columns = batches.columns  # (100, 3)
    logits, _ = model(columns[:-1])
    assert count == 99 * 3
    # the step's cross-entropy runs in float32
    assert total == pytest.approx(float(hand_nll(logits, columns[1:])), rel=1e-6)


# -- streamed evaluation ------------------------------------------------------------------------


@torch.no_grad()
def test_evaluate_ids_one_stream_equals_one_long_pass():
    model = tiny_model(12).train()
    ids = torch.randint(12, (30,), generator=torch.Generator().manual_seed(6))
    r = task.evaluate_ids(model, ids, n_chars=29, batch_size=1, bptt=7)
    assert model.training  # the mode is restored
    total = stream_nll(model.eval(), ids)
    assert (r["tokens"], r["chars"]) == (29, 29)
    assert r["nats_per_token"] == pytest.approx(total / 29, rel=1e-6)
    assert r["nats_per_char"] == pytest.approx(total / 29, rel=1e-6)


@torch.no_grad()
@pytest.mark.parametrize("length,starts", [(30, (0, 10, 20)), (31, (0, 10, 20)), (8, (0, 3, 6))])
def test_evaluate_ids_three_streams_equal_the_streams_read_separately(length, starts):
    model = tiny_model(12).eval()
    ids = torch.randint(12, (length,), generator=torch.Generator().manual_seed(7))
    n = length - 1
    r = task.evaluate_ids(model, ids, n_chars=50, batch_size=3, bptt=4)
    step = math.ceil(n / 3)
    # stream k predicts tokens k*step+1 .. (k+1)*step (the last one fewer), from zero state
    total = sum(stream_nll(model, ids[a : a + step + 1]) for a in starts)
    assert r["tokens"] == n and r["chars"] == 50
    assert r["nats_per_token"] == pytest.approx(total / n, rel=1e-6)
    assert r["nats_per_char"] == pytest.approx(total / 50, rel=1e-6)
    assert r["perplexity"] == pytest.approx(math.exp(r["nats_per_token"]), rel=1e-12)
    assert r["bits_per_char"] == pytest.approx(r["nats_per_char"] / math.log(2), rel=1e-12)
    one = task.evaluate_ids(model, ids, n_chars=50, batch_size=1)
    assert abs(one["nats_per_token"] - r["nats_per_token"]) > 1e-4  # context differs


@torch.no_grad()
def test_evaluate_text_counts_the_characters_after_the_first_token():
    tok = Tokenizer.train([TEXT], "char")
    model = tiny_model(tok.vocab_size).eval()
    r = task.evaluate_text(model, tok, TEXT, batch_size=2)
    ids = torch.tensor(tok.encode(TEXT))
    assert r["tokens"] == r["chars"] == len(TEXT) - 1
    assert r == task.evaluate_ids(model, ids, len(TEXT) - 1, batch_size=2)
    with pytest.raises(ValueError, match="at least 2 are needed"):
        task.evaluate_text(model, tok, "h", batch_size=2)
    with pytest.raises(ValueError, match=re.escape("at least 2 tokens, got shape (1,)")):
        task.evaluate_ids(model, ids[:1], 1)


# -- generation ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lm() -> tuple[LanguageModel, Tokenizer]:
    """An untrained char model whose logits are spread out (so sampling is diverse)."""
    tok = Tokenizer.train([TEXT], "char")
    model = tiny_model(tok.vocab_size, seed=2)
    with torch.no_grad():
        torch.nn.init.normal_(model.embedding.weight, std=1.5)  # tied: the decoder too
        torch.nn.init.normal_(model.decoder.bias, std=0.5)
    return model.eval(), tok


def banned_logits(logits: torch.Tensor) -> torch.Tensor:
    last = logits[-1, 0].double().clone()
    last[[0, 1]] = -INF  # <pad>, <unk>
    return last


@torch.no_grad()
def step_logits(model, tok, prompt: str, continuation: list[int]) -> list[torch.Tensor]:
    """The (banned) next-token logits before each token of ``continuation``."""
    logits, state = model(torch.tensor(tok.encode(prompt)).unsqueeze(1))
    steps = []
    for token in continuation:
        steps.append(banned_logits(logits))
        logits, state = model(torch.tensor([[token]]), state)
    return steps


@torch.no_grad()
def greedy_by_hand(model, tok, prompt: str, n: int) -> tuple[list[int], float]:
    """Greedy ids, step by step, and the smallest top-1 / top-2 logit gap on the way."""
    logits, state = model(torch.tensor(tok.encode(prompt)).unsqueeze(1))
    out, gap = [], INF
    for _ in range(n):
        last = banned_logits(logits)
        top = last.topk(2).values
        gap = min(gap, float(top[0] - top[1]))
        out.append(int(last.argmax()))
        logits, state = model(torch.tensor([[out[-1]]]), state)
    return out, gap


def log_prob(model, tok, prompt: str, continuation: list[int]) -> float:
    steps = step_logits(model, tok, prompt, continuation)
    return sum(float(s.log_softmax(-1)[t]) for s, t in zip(steps, continuation))


def text(model, tok, prompt="the ", n=30, **kw) -> str:
    return "".join(generate(model, tok, prompt, n, **kw))


@torch.no_grad()
def test_greedy_decoding_variants_equal_argmax_by_hand(lm):
    model, tok = lm
    ids, gap = greedy_by_hand(model, tok, "the ", 30)
    greedy = tok.decode(ids)
    assert len(greedy) == 30 and len(set(greedy)) >= 3
    assert gap > 1e-2  # so temperature 1e-4 is greedy but for e^-100 odds
    assert text(model, tok, temperature=0) == greedy
    assert text(model, tok, temperature=1e-4, seed=0) == greedy
    assert text(model, tok, beam=1) == greedy
    assert text(model, tok, top_k=1, seed=0) == greedy
    assert text(model, tok, top_p=1e-6, seed=1) == greedy  # the most likely token stays
    assert text(model, tok, seed=0) != greedy  # plain sampling is not greedy


def test_filter_logits_exact_masks():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()

    def kept(**kw):
        return torch.isfinite(filter_logits(logits, **kw)).tolist()

    assert kept(top_p=0.8) == [True, True, False, False]
    assert kept(top_p=0.81) == [True, True, True, False]
    assert kept(top_p=0.5) == [True, False, False, False]
    assert kept(top_p=0.3) == [True, False, False, False]
    assert kept(top_p=0.96) == [True, True, True, True]
    assert kept(top_p=1.0) == [True, True, True, True]
    assert kept(top_k=1) == [True, False, False, False]
    assert kept(top_k=3) == [True, True, True, False]
    assert kept(top_k=10) == [True, True, True, True]
    assert kept(top_k=3, top_p=0.6) == [True, True, False, False]
    out = filter_logits(logits, top_k=2)
    assert torch.equal(out[:2], logits[:2])  # kept logits are unchanged
    # order does not matter; rows of a batch are filtered separately
    shuffled = torch.tensor([[0.15, 0.5, 0.05, 0.3], [0.05, 0.15, 0.3, 0.5]]).log()
    assert torch.isfinite(filter_logits(shuffled, top_p=0.7)).tolist() == [
        [False, True, False, True],
        [False, False, True, True],
    ]
    assert torch.isfinite(filter_logits(shuffled, top_k=3)).tolist() == [
        [True, True, False, True],
        [False, True, True, True],
    ]
    for kw, msg in [
        (dict(top_k=0), "top_k must be positive, got 0"),
        (dict(top_p=0.0), "top_p must be in (0, 1], got 0.0"),
        (dict(top_p=1.5), "top_p must be in (0, 1], got 1.5"),
    ]:
        with pytest.raises(ValueError, match=re.escape(msg)):
            filter_logits(logits, **kw)


@torch.no_grad()
@pytest.mark.parametrize("kw,rank", [(dict(top_k=3), 3), (dict(top_k=5, temperature=2.0), 5)])
def test_top_k_samples_only_among_the_k_largest_logits(lm, kw, rank):
    model, tok = lm
    not_top1 = 0
    for seed in range(3):
        ids = tok.encode(text(model, tok, n=40, seed=seed, **kw))
        assert len(ids) == 40
        for token, logits in zip(ids, step_logits(model, tok, "the ", ids)):
            order = logits.argsort(descending=True).tolist()
            assert token in order[:rank]
            not_top1 += token != order[0]
    assert not_top1 >= 10  # it samples, it is not greedy


@torch.no_grad()
def test_top_p_samples_only_inside_the_nucleus(lm):
    model, tok = lm
    outside = 0
    ids = tok.encode(text(model, tok, n=40, seed=0, top_p=0.6))
    for token, logits in zip(ids, step_logits(model, tok, "the ", ids)):
        probs = logits.softmax(-1)
        sorted_probs, order = probs.sort(descending=True)
        before = sorted_probs.cumsum(-1) - sorted_probs  # mass ranked above each token
        nucleus = order[before < 0.6].tolist()
        assert token in nucleus
        outside += len(nucleus) < (probs > 0).sum()
    assert outside == 40  # the nucleus always left some tokens out


def test_seeded_sampling_is_reproducible_and_seeds_differ(lm):
    model, tok = lm
    a = text(model, tok, n=40, seed=0)
    assert len(a) == 40
    assert text(model, tok, n=40, seed=0) == a
    assert text(model, tok, n=40, seed=1) != a
    assert text(model, tok, n=40, seed=0, top_k=5) == text(model, tok, n=40, seed=0, top_k=5)


@torch.no_grad()
def test_pad_and_unk_are_never_generated():
    tok = Tokenizer.train([TEXT], "char")
    model = tiny_model(tok.vocab_size).eval()
    model.decoder.bias[:2] = 30.0  # <pad> and <unk> would win every step
    logits, _ = model(torch.tensor(tok.encode("the ")).unsqueeze(1))
    assert logits[-1, 0].topk(2).indices.sort().values.tolist() == [0, 1]
    for kw in [dict(seed=0), dict(temperature=0), dict(beam=3), dict(top_k=2, seed=1)]:
        out = text(model, tok, n=25, **kw)
        assert len(out) == 25 and "<" not in out and set(out) <= set(TEXT)


def test_decoding_is_stateful_one_token_per_step(lm, monkeypatch):
    model, tok = lm
    calls = []
    forward = model.forward

    def spy(ids, state=None, return_hidden=False):
        calls.append((tuple(ids.shape), state is None))
        return forward(ids, state, return_hidden)

    monkeypatch.setattr(model, "forward", spy)
    assert len(text(model, tok, "hello", 6, seed=0)) == 6
    # the prompt once from the zero state, then one token per step with the carried state,
    # none after the last token
    assert calls == [((5, 1), True)] + [((1, 1), False)] * 5
    calls.clear()
    assert len(text(model, tok, "hello", 6, beam=3)) == 6
    assert calls == [((5, 1), True)] + [((1, 3), False)] * 5


@torch.no_grad()
def test_beam_search_scores_at_least_greedy(lm):
    model, tok = lm
    greedy, _ = greedy_by_hand(model, tok, "the ", 12)
    out = text(model, tok, n=12, beam=3)
    assert len(out) == 12
    beam = tok.encode(out)
    lp_beam, lp_greedy = log_prob(model, tok, "the ", beam), log_prob(model, tok, "the ", greedy)
    assert lp_beam >= lp_greedy - 1e-9
    assert lp_beam > lp_greedy + 1e-3  # here the beam finds a strictly better continuation


@torch.no_grad()
def test_wide_beam_finds_the_best_two_tokens_exhaustively(lm):
    model, tok = lm
    best, best_lp = None, -INF
    logits, state = model(torch.tensor(tok.encode("the ")).unsqueeze(1))
    first = banned_logits(logits).log_softmax(-1)
    for t1 in range(2, tok.vocab_size):
        second = banned_logits(model(torch.tensor([[t1]]), state)[0]).log_softmax(-1)
        t2 = int(second.argmax())
        if float(first[t1] + second[t2]) > best_lp:
            best, best_lp = [t1, t2], float(first[t1] + second[t2])
    out = text(model, tok, n=2, beam=tok.vocab_size)
    assert tok.encode(out) == best
    assert log_prob(model, tok, "the ", best) == pytest.approx(best_lp, abs=1e-9)


def test_generate_bad_arguments(lm):
    model, tok = lm
    for prompt, msg in [
        ("héllo, world?", "the prompt has characters the model never saw: ['?', 'é']"),
        ("", "the prompt is empty"),
    ]:
        with pytest.raises(ValueError, match=re.escape(msg)):
            text(model, tok, prompt)
    for kw, msg in [
        (dict(n=-1), "max_new must be >= 0, got -1"),
        (dict(temperature=-0.5), "temperature must be a finite number >= 0, got -0.5"),
        (dict(temperature=INF), "temperature must be a finite number >= 0, got inf"),
        (dict(beam=0), "beam must be >= 1, got 0"),
    ]:
        with pytest.raises(ValueError, match=re.escape(msg)):
            text(model, tok, **kw)
    assert text(model, tok, n=0) == ""


# -- training -----------------------------------------------------------------------------------

HELLO = "hello world, " * 40  # 520 characters: 468 to train on, the last 52 to validate


def tiny_train_config(path: Path, **data) -> task.LMConfig:
    return task.load_config(
        {
            "data": {
                "path": str(path),
                "batch_size": 4,
                "bptt": 16,
                "variable_bptt": False,
                "eval_batch_size": 1,
                **data,
            },
            "model": {"embed_size": 16, "hidden_size": 32, "num_layers": 1, **NO_DROPOUT},
            "train": {
                "lr": 0.01,
                "epochs": 40,
                "weight_decay": 0.0,
                "progress": False,
                "tensorboard": False,
            },
            "ar": 0.0,
            "tar": 0.0,
        }
    )


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    root = tmp_path_factory.mktemp("overfit")
    (root / "hello.txt").write_text(HELLO)
    results = run.train(task.TASK, tiny_train_config(root / "hello.txt"), root / "model")
    return root / "model", results


def test_a_tiny_model_overfits_a_repetitive_text(overfit):
    model_dir, r = overfit
    # vocab: <pad> <unk> " " "," d e h l o r w; 40 epochs of 117 // 16 = 8 windows
    assert (r["vocab_size"], r["train_tokens"], r["tokens"], r["steps"]) == (11, 468, 51, 320)
    assert (r["task"], r["split"], r["chars"]) == ("lm", "val", 51)
    assert r["train_tokens_seen"] == 320 * 4 * 16
    assert r["nats_per_char"] < 0.1
    assert r["bits_per_char"] == pytest.approx(r["nats_per_char"] / math.log(2))
    assert r["perplexity"] == pytest.approx(math.exp(r["nats_per_token"]))
    with open(model_dir / "train_log.csv") as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    assert len(losses) == 320
    assert losses[0] == pytest.approx(math.log(11), abs=0.15)  # uniform at first
    assert max(losses[-8:]) < 0.1
    predictor = task.TASK.load(model_dir)
    model, tok, config = predictor.model, predictor.tokenizer, predictor.config
    assert config.model.hidden_size == 32 and tok.kind == "char"
    assert predictor.artifacts["vocab_size"] == 11 and not model.training
    assert text(model, tok, "hello", 20, temperature=0) == " world, hello world,"
    assert text(model, tok, "wor", 10, beam=3) == "ld, hello "


# -- the command line ---------------------------------------------------------------------------

CAT = "the cat sat on the mat.\n" * 12  # 288 characters: 260 to train on, 28 to validate
TINY_FLAGS = [
    "--no-progress",
    "--data.batch_size",
    "2",
    "--data.bptt",
    "8",
    "--data.eval_batch_size",
    "1",
    "--model.embed_size",
    "8",
    "--model.hidden_size",
    "16",
    "--model.num_layers",
    "1",
    "--train.tensorboard",
    "false",
]


def lm_train(data: Path, out: Path, *flags: str) -> int:
    return main(["lm", "train", "--data", str(data), "--out", str(out), *TINY_FLAGS, *flags])


def test_cli_train_evaluate_generate_round_trip(tmp_path, capsys):
    data = tmp_path / "cat.txt"
    data.write_text(CAT)
    out = tmp_path / "model"
    assert lm_train(data, out, "--train.epochs", "2", "--seed", "3") == 0
    printed = capsys.readouterr().out
    files = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "metrics.json",
        "train_log.csv",
        "results.json",
    } <= files
    results = json.loads((out / "results.json").read_text())
    config = json.loads((out / "config.json").read_text())
    # vocab: <pad> <unk> "\n" " " . a c e h m n o s t; 260 // 2 columns - 1 = 129 steps in
    # windows of 8 = 17 per epoch
    assert (results["vocab_size"], results["train_tokens"], results["tokens"]) == (14, 260, 27)
    assert results["steps"] == 34 and results["split"] == "val" and results["task"] == "lm"
    assert results["data"] == str(data) and results["train_tokens_seen"] == 34 * 2 * 8
    assert (config["task"], config["format"]) == ("lm", 1)
    assert config["artifacts"] == {"vocab_size": 14, "tokenizer": "tokenizer.json"}
    sections = config["config"]
    assert sections["train"]["seed"] == 3 and sections["data"]["path"] == str(data)
    assert sections["model"]["hidden_size"] == 16 and sections["data"]["bptt"] == 8
    assert f"validation: {results['nats_per_char']:.4f} nats/char" in printed
    # metrics.json: the trainer's epochs; the kept (best val_loss) weights are those scored
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and "nats_per_char" not in metrics
    best = metrics["history"][metrics["best_epoch"] - 1]
    assert best["val_loss"] == min(e["val_loss"] for e in metrics["history"])
    assert results["nats_per_token"] == pytest.approx(best["val_loss"], rel=1e-5)

    # evaluate --json writes the numbers a direct run.evaluate gives
    report = tmp_path / "eval.json"
    argv = ["lm", "evaluate", "--model", str(out), "--data", str(data), "--json", str(report)]
    assert main(argv) == 0
    written = json.loads(report.read_text())
    assert json.loads(capsys.readouterr().out) == written
    direct = run.evaluate(out, data)
    assert written == direct
    assert (written["task"], written["model"], written["data"]) == ("lm", str(out), str(data))
    assert (written["split"], written["tokens"], written["chars"]) == ("test", 287, 287)
    # --split val --batch-size 1 reproduces the validation numbers of results.json
    argv = [
        "lm",
        "evaluate",
        "--model",
        str(out),
        "--data",
        str(data),
        "--split",
        "val",
        "--batch-size",
        "1",
        "--json",
        str(report),
    ]
    assert main(argv) == 0
    val = json.loads(report.read_text())
    for key in ("nats_per_char", "nats_per_token", "perplexity", "bits_per_char", "tokens"):
        assert val[key] == pytest.approx(results[key], rel=1e-9)
    capsys.readouterr()

    # generate prints the prompt and max-new characters, the greedy ones with temperature 0
    predictor = task.TASK.load(out)
    model, tok = predictor.model, predictor.tokenizer
    argv = ["lm", "generate", "--model", str(out), "--prompt", "the ", "--max-new", "15"]
    assert main([*argv, "--temperature", "0"]) == 0
    greedy, _ = greedy_by_hand(model, tok, "the ", 15)
    assert capsys.readouterr().out == "the " + tok.decode(greedy) + "\n"
    assert main([*argv, "--seed", "7", "--top-k", "4"]) == 0
    sampled = capsys.readouterr().out
    assert sampled == "the " + text(model, tok, "the ", 15, seed=7, top_k=4) + "\n"
    assert len(sampled) == 4 + 15 + 1
    argv = [
        "lm",
        "generate",
        "--model",
        str(out),
        "--prompt",
        "mat.\\nthe",
        "--escapes",
        "--max-new",
        "5",
        "--beam",
        "2",
    ]
    assert main(argv) == 0
    beamed = capsys.readouterr().out
    assert beamed.startswith("mat.\nthe") and len(beamed) == 8 + 5 + 1

    # predict: a prompt's continuation (200 tokens, seed 0), as text or JSON
    expected = text(model, tok, "the ", 200, seed=0)
    assert main(["lm", "predict", "--model", str(out), "the "]) == 0
    assert capsys.readouterr().out == "the " + expected + "\n"
    assert main(["predict", "--model", str(out), "--json", "the "]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"input": "the ", "prompt": "the ", "text": expected}
    ]


def test_cli_resume_after_max_steps_continues_exactly(tmp_path, capsys):
    data = tmp_path / "cat.txt"
    data.write_text(CAT)
    assert lm_train(data, tmp_path / "a", "--max-steps", "3", "--train.epochs", "3") == 0
    assert json.loads((tmp_path / "a" / "results.json").read_text())["steps"] == 3
    assert (
        lm_train(data, tmp_path / "a", "--max-steps", "6", "--train.epochs", "3", "--resume") == 0
    )
    assert lm_train(data, tmp_path / "b", "--max-steps", "6", "--train.epochs", "3") == 0
    capsys.readouterr()

    def log(run):
        with open(tmp_path / run / "train_log.csv") as f:
            return [(int(row["step"]), float(row["loss"])) for row in csv.DictReader(f)]

    assert [step for step, _ in log("a")] == [1, 2, 3, 4, 5, 6]
    assert log("a") == log("b")  # the resumed steps 4-6 are those of an uninterrupted run
    assert json.loads((tmp_path / "a" / "results.json").read_text())["steps"] == 6
    a = load_file(tmp_path / "a" / "trainer_state" / "model.safetensors")
    b = load_file(tmp_path / "b" / "trainer_state" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cli_resume_before_an_epoch_ends_saves_the_final_weights(tmp_path, capsys):
    data = tmp_path / "cat.txt"
    data.write_text(CAT)
    flags = ("--train.epochs", "3")
    assert lm_train(data, tmp_path / "a", "--max-steps", "3", *flags) == 0
    assert lm_train(data, tmp_path / "a", "--max-steps", "6", "--resume", *flags) == 0
    assert lm_train(data, tmp_path / "b", "--max-steps", "6", *flags) == 0
    a = load_file(tmp_path / "a" / "model.safetensors")
    b = load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


# -- bad input ----------------------------------------------------------------------------------


def cli_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lstmkit: error: ")
    return err


def test_bad_data_files(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text(" \n")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"the cat\xfe sat")
    out = tmp_path / "model"
    assert f"{empty} holds no text" in cli_error(
        ["lm", "train", "--data", str(empty), "--out", str(out), *TINY_FLAGS], capsys
    )
    err = cli_error(["lm", "train", "--data", str(bad), "--out", str(out), *TINY_FLAGS], capsys)
    assert f"{bad} is not UTF-8 text: undecodable byte 0xfe at offset 7" in err
    assert not out.exists()  # nothing written
    missing = tmp_path / "missing.txt"
    assert f"no such file or directory: {missing}" in cli_error(
        ["lm", "train", "--data", str(missing), "--out", str(out), *TINY_FLAGS], capsys
    )
    short = tmp_path / "short.txt"
    short.write_text("abcde")
    with pytest.raises(ValueError, match=re.escape(f"{short}: 5 characters are too few")):
        task.load_texts(task.LMDataConfig(path=str(short)))
    with pytest.raises(ValueError, match=re.escape("data.path is required")):
        task.load_texts(task.LMDataConfig())


def test_evaluate_needs_a_model_directory(tmp_path, capsys):
    data = tmp_path / "cat.txt"
    data.write_text(CAT)
    err = cli_error(["lm", "evaluate", "--model", str(tmp_path), "--data", str(data)], capsys)
    assert f"{tmp_path} is not a model directory (no config.json)" in err
    (tmp_path / "config.json").write_text('{"task": "sentiment"}')
    with pytest.raises(ValueError, match="holds a 'sentiment' model, not a 'lm' model"):
        task.TASK.load(tmp_path)
    err = cli_error(["lm", "generate", "--model", str(tmp_path / "nope")], capsys)
    assert "is not a model directory" in err


def test_bad_prompt_and_evaluation_text_with_a_trained_model(overfit, tmp_path, capsys):
    model_dir, _ = overfit
    argv = ["lm", "generate", "--model", str(model_dir), "--max-new", "3"]
    err = cli_error([*argv, "--prompt", "hello Bob!"], capsys)
    assert "the prompt has characters the model never saw: ['!', 'B', 'b']" in err
    assert "the prompt is empty" in cli_error([*argv, "--prompt", ""], capsys)
    other = tmp_path / "other.txt"
    other.write_text("hello world, hello zorld, ")
    r = run.evaluate(model_dir, other)
    assert "note: 1 characters unseen in training count as <unk>: ['z']" in capsys.readouterr().out
    assert (r["task"], r["tokens"], r["chars"], r["split"]) == ("lm", 25, 25, "test")
    with pytest.raises(ValueError, match="split must be 'val' or 'test', got 'train'"):
        run.evaluate(model_dir, other, split="train")
    err = cli_error(
        ["lm", "evaluate", "--model", str(model_dir), "--data", str(other), "--x.y", "1"], capsys
    )
    assert "evaluate takes no config overrides, got --x.y 1" in err


def test_config_errors(tmp_path, capsys):
    msg = "unknown key(s) model.hiden_size for LMModelConfig"
    with pytest.raises(ValueError, match=re.escape(msg)):
        task.load_config({"model": {"hiden_size": 8}})
    with pytest.raises(ValueError, match=re.escape("unknown key(s) datta for LMConfig")):
        task.load_config({"datta": {}})
    msg = "data.tokenizer must be one of char, bpe; got 'word'"
    with pytest.raises(ValueError, match=re.escape(msg)):
        task.load_config({"data": {"tokenizer": "word"}})
    with pytest.raises(ValueError, match=re.escape("model.dropout must be in [0, 1), got 1.0")):
        task.load_config({"model": {"dropout": 1.0}})
    with pytest.raises(ValueError, match=re.escape("ar and tar must be >= 0, got -1.0, 1.0")):
        task.load_config({"ar": -1})
    config = task.load_config({"model": {"hidden_size": "24"}, "train": {"lr": "3e-3"}})
    assert (config.model.hidden_size, config.train.lr, config.data.bptt) == (24, 3e-3, 128)
    data = tmp_path / "cat.txt"
    data.write_text(CAT)
    argv = ["lm", "train", "--data", str(data), "--out", str(tmp_path / "m")]
    assert msg in cli_error([*argv, "--data.tokenizer", "word"], capsys)
    assert "unknown key(s) model.hiden_size" in cli_error(
        [*argv, "--model.hiden_size", "8"], capsys
    )
    assert not (tmp_path / "m").exists()


def test_each_process_reads_its_streams_and_too_few_streams_are_an_error(tmp_path):
    from lstmkit.tasks.base import RunContext

    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog.\n" * 40)
    data = {"path": str(text), "batch_size": 5, "bptt": 8}
    for name in ("one", "two", "x"):
        (tmp_path / name).mkdir()  # as the run makes the model directory
    config = task.load_config({"data": data})
    one = task.LMTask().build(config, RunContext(out_dir=tmp_path / "one"))
    second = task.LMTask().build(config, RunContext(out_dir=tmp_path / "two", rank=1, world_size=2))
    whole, share = next(iter(one.train_data)), next(iter(second.train_data))
    assert torch.equal(share.x, whole.x[:, 1::2]) and torch.equal(share.y, whole.y[:, 1::2])
    narrow = task.load_config({"data": {**data, "batch_size": 1}})
    alone = task.LMTask().build(narrow, RunContext(out_dir=tmp_path / "x", rank=0, world_size=2))
    with (
        pytest.warns(UserWarning, match="a global batch of 1 example"),
        pytest.raises(ValueError, match="no batch of this epoch has at least one example"),
    ):
        list(alone.train_data)
