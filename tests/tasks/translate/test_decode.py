"""The encoder-decoder and its decoding: step-by-step decoding equals teacher forcing,
padding changes nothing, beam width 1 is greedy, beam search beats greedy where it should,
reserved tokens are never emitted, and a tiny model learns to reverse sequences perfectly."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from lstmkit.data.parallel import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from lstmkit.tasks.translate.batches import make_batch
from lstmkit.tasks.translate.decode import beam_search, greedy, length_penalty, max_steps
from lstmkit.tasks.translate.model import DecoderState, Memory, Seq2Seq, TranslateModelConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def small(**kw) -> Seq2Seq:
    torch.manual_seed(0)
    config = TranslateModelConfig(emb_size=16, enc_hidden=12, dec_hidden=20, dropout=0.0, **kw)
    return Seq2Seq(30, 25, config).eval()


@pytest.mark.parametrize("feeding", [False, True])
@pytest.mark.parametrize("attention", ["general", "additive"])
def test_steps_equal_teacher_forcing(feeding, attention):
    model = small(input_feeding=feeding, attention=attention, dec_layers=2)
    batch = make_batch([[5, 6, 7, 8], [9, 10]], [[11, 12, 13], [14, 15, 16]], [0, 1])
    with torch.no_grad():
        memory = model.encode(batch.src, batch.src_lengths)
        logits, weights, _ = model.decode(batch.tgt_in, memory)
        for t in range(batch.tgt_in.shape[1]):
            log_probs, w, state = model.step(batch.tgt_in[:, t], memory)
            memory = memory._replace(state=state)
            torch.testing.assert_close(log_probs, F.log_softmax(logits[:, t], -1))
            torch.testing.assert_close(w, weights[:, t])
    assert (weights[1, :, 2:] == 0).all()  # the second source has two tokens


@pytest.mark.parametrize("beam", [1, 4])
def test_padding_does_not_change_a_translation(beam):
    model = small()
    sentence = [7, 8, 9, 10, 11]
    alone = make_batch([sentence], None, [0])
    padded = make_batch([[5] * 12, sentence, [6, 7]], None, [0, 1, 2])
    one = beam_search(model, alone.src, alone.src_lengths, beam)[0][0]
    many = beam_search(model, padded.src, padded.src_lengths, beam)[1][0]
    assert one.tokens == many.tokens
    assert one.score == pytest.approx(many.score, abs=1e-4)


def test_beam_width_one_is_greedy():
    model = small()
    batch = make_batch([[5, 6, 7], [8, 9, 10, 11, 12, 13], [14]], None, [0, 1, 2])
    g = greedy(model, batch.src, batch.src_lengths)
    b = beam_search(model, batch.src, batch.src_lengths, beam=1, length_penalty_alpha=0.0)
    for gh, (bh,) in zip(g, b):
        assert gh.tokens == bh.tokens
        assert gh.score == pytest.approx(bh.score, abs=1e-5)


class Scripted:
    """A decoder whose next-token distribution depends only on the last token: greedy
    takes A (0.6) and then must spread over three continuations (0.32 each), while B
    (0.4) ends at once, so the best sequence is B </s> (0.4 > 0.6 * 0.32)."""

    V, A, B = 12, 5, 6
    table = {
        BOS_ID: {5: 0.6, 6: 0.4},
        5: {7: 0.32, 8: 0.32, 9: 0.32, EOS_ID: 0.04},
        6: {EOS_ID: 1.0},
        7: {EOS_ID: 1.0},
        8: {EOS_ID: 1.0},
        9: {EOS_ID: 1.0},
    }

    def encode(self, src, lengths):
        n = src.shape[0]
        zeros = torch.zeros(1, n, 1)
        mask = torch.ones(n, src.shape[1], dtype=torch.bool)
        return Memory(
            src[..., None].float(),
            mask,
            src[..., None].float(),
            DecoderState(zeros, zeros, torch.zeros(n, 1)),
        )

    def step(self, tokens, memory):
        probs = torch.full((tokens.shape[0], self.V), 1e-9)
        for r, t in enumerate(tokens.tolist()):
            for k, p in self.table.get(t, {EOS_ID: 1.0}).items():
                probs[r, k] = p
        probs[:, PAD_ID] = probs[:, UNK_ID] = 0.5  # tempting, but never emitted
        weights = torch.ones(tokens.shape[0], memory.keys.shape[1]) / memory.keys.shape[1]
        return probs.log(), weights, memory.state


def test_beam_finds_a_better_sequence_than_greedy():
    src, lengths = torch.tensor([[4, 4, 4]]), torch.tensor([3])
    g = greedy(Scripted(), src, lengths)[0]
    assert g.tokens == [Scripted.A, 7] and g.score == pytest.approx(math.log(0.6 * 0.32))
    best, second = beam_search(
        Scripted(), src, lengths, beam=3, length_penalty_alpha=0.0, n_best=2
    )[0]
    assert best.tokens == [Scripted.B] and best.score == pytest.approx(math.log(0.4))
    assert second.tokens == [Scripted.A, 7] or second.tokens == [Scripted.A, 8]
    assert best.normalized > second.normalized


def test_reserved_tokens_are_never_emitted_and_nothing_follows_the_end():
    model = small()
    with torch.no_grad():  # make <pad>, <unk>, <s> the most probable tokens
        model.out_bias[[PAD_ID, UNK_ID, BOS_ID]] = 50.0
    batch = make_batch([[5, 6, 7], [8]], None, [0, 1])
    for hyps in beam_search(model, batch.src, batch.src_lengths, beam=3, n_best=3):
        for h in hyps:
            assert not {PAD_ID, UNK_ID, BOS_ID, EOS_ID} & set(h.tokens)
    with torch.no_grad():
        model.out_bias[EOS_ID] = 100.0  # </s> first: empty translations, no step after it
    for h in greedy(model, batch.src, batch.src_lengths):
        assert h.tokens == []
    limit = max_steps(3, 1.5)
    with torch.no_grad():
        model.out_bias[EOS_ID] = -100.0  # never ends: stopped at the length limit
    g = greedy(model, batch.src, batch.src_lengths)
    assert [len(h.tokens) for h in g] == [limit, max_steps(1, 1.5)]
    b = beam_search(model, batch.src, batch.src_lengths, beam=2)
    assert [len(h[0].tokens) for h in b] == [limit, max_steps(1, 1.5)]


def test_length_penalty_is_gnmts():
    assert length_penalty(7, 0.0) == 1.0
    assert length_penalty(7, 1.0) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="n_best <= beam"):
        beam_search(small(), torch.tensor([[5]]), torch.tensor([1]), beam=2, n_best=3)


def test_a_tiny_model_learns_to_reverse_sequences():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)

    def data(n):
        seqs = [
            torch.randint(
                4, 14, (int(torch.randint(2, 7, (1,), generator=g)),), generator=g
            ).tolist()
            for _ in range(n)
        ]
        return seqs, [s[::-1] for s in seqs]

    config = TranslateModelConfig(emb_size=32, enc_hidden=48, dec_hidden=64, dropout=0.0)
    model = Seq2Seq(14, 14, config)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(400):
        src, tgt = data(64)
        batch = make_batch(src, tgt, range(64))
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        loss = F.cross_entropy(
            logits.reshape(-1, 14), batch.tgt_out.reshape(-1), ignore_index=PAD_ID
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    src, tgt = data(200)
    batch = make_batch(src, None, range(200))
    hyps = greedy(model, batch.src, batch.src_lengths)
    # which few sequences stay wrong depends on the CPU's floating point (measured: 198, 199
    # and 200 of 200 on three machines; 177 to 200 over the seeds 0-13), so not all of them;
    # an untrained model or a broken decoder reverses next to none
    reversed_ = sum(h.tokens == t for h, t in zip(hyps, tgt, strict=True))
    assert reversed_ >= 190, f"{reversed_} of 200 sequences reversed"


def test_over_long_pairs_are_cut_and_counted():
    from lstmkit.tasks.translate.batches import truncate_pairs

    src, tgt, cut = truncate_pairs([[5] * 3, [6] * 9, [7]], [[8] * 2, [9], [10] * 5], 4)
    assert cut == 2 and [len(s) for s in src] == [3, 4, 1] and [len(t) for t in tgt] == [2, 1, 4]
    batch = make_batch([[5, 6], []], [[7], []], [0, 1])
    assert batch.src.tolist() == [[5, 6], [PAD_ID, PAD_ID]] and batch.src_lengths.tolist() == [2, 0]
    assert batch.tgt_in.tolist() == [[BOS_ID, 7], [BOS_ID, PAD_ID]]
    assert batch.tgt_out.tolist() == [[7, EOS_ID], [EOS_ID, PAD_ID]]


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_the_step_loss_is_torchs_label_smoothed_cross_entropy(eps):
    from lstmkit.tasks.translate.task import make_step

    model = small().train()
    batch = make_batch([[5, 6, 7], [8]], [[9, 10, 11, 12], [13]], [0, 1])
    torch.manual_seed(1)
    out = make_step(eps)(model, batch)
    torch.manual_seed(1)  # the same dropout masks
    logits = model(batch.src, batch.src_lengths, batch.tgt_in).reshape(-1, 25)
    target = batch.tgt_out.reshape(-1)
    expected = F.cross_entropy(logits, target, ignore_index=PAD_ID, label_smoothing=eps)
    nll = F.cross_entropy(logits, target, ignore_index=PAD_ID)
    torch.testing.assert_close(out.loss, expected)
    assert out.size == 7 and out.metrics["nll"] == pytest.approx(float(nll.detach()), rel=1e-6)
