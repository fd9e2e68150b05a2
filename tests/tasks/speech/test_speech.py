"""The speech model and task pieces against hand computations: frame stacking, masked
pooling, padding independence, the CTC step, batches (deterministic augmentation), scores
against hand counts and jiwer; a tiny model separates two synthetic tones perfectly; a
stream of chunks gives the one-shot log-probabilities and transcript."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lstmkit.data.audio import FeatureConfig, FeatureExtractor, global_stats
from lstmkit.tasks.speech import task
from lstmkit.tasks.speech.batches import (
    AugmentConfig,
    Batch,
    Featurizer,
    Item,
    MemberBatches,
    PerMemberBatches,
    SpeechBatches,
    collate,
    stretch,
)
from lstmkit.tasks.speech.model import (
    FrequencyConv,
    SpeechEnsemble,
    SpeechModel,
    SpeechModelConfig,
    stack_frames,
)
from lstmkit.tasks.speech.task import (
    SpeechPredictor,
    connected_scores,
    isolated_scores,
    load_config,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(head: str, bidirectional: bool = True, subsample: int = 2, seed: int = 0, conv: int = 0):
    torch.manual_seed(seed)
    cfg = SpeechModelConfig(
        hidden_size=6,
        num_layers=2,
        bidirectional=bidirectional,
        subsample=subsample,
        dropout=0.0,
        conv_channels=conv,
    )
    return SpeechModel(5, 10, head, cfg).double().eval()


def test_stack_frames_by_hand():
    x = torch.arange(2 * 7 * 3, dtype=torch.float64).view(7, 2, 3)
    out, n = stack_frames(x, torch.tensor([7, 4]), 3)
    assert out.shape == (3, 2, 9) and n.tolist() == [3, 2]
    torch.testing.assert_close(out[1, 0], torch.cat([x[3, 0], x[4, 0], x[5, 0]]))
    torch.testing.assert_close(out[2, 1], torch.cat([x[6, 1], torch.zeros(6, dtype=x.dtype)]))


@pytest.mark.parametrize("conv", [0, 3])
@pytest.mark.parametrize("head", ["classify", "ctc"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_outputs_do_not_depend_on_padding(head, bidirectional, conv):
    model = tiny(head, bidirectional, conv=conv)
    g = torch.Generator().manual_seed(1)
    a, b = (
        torch.randn(9, 5, generator=g, dtype=torch.float64),
        torch.randn(4, 5, generator=g, dtype=torch.float64),
    )
    batch = torch.nn.utils.rnn.pad_sequence([a, b])  # (9, 2, 5)
    out, steps = model(batch, torch.tensor([9, 4]))
    alone_b, steps_b = model(b[:, None], torch.tensor([4]))
    assert steps.tolist() == [5, 2] and steps_b.tolist() == [2]
    if head == "classify":
        assert out.shape == (2, 10)
        torch.testing.assert_close(out[1], alone_b[0])
    else:
        assert out.shape == (5, 2, 11)
        torch.testing.assert_close(out[:2, 1], alone_b[:, 0])
        torch.testing.assert_close(out.exp().sum(-1), torch.ones(5, 2, dtype=out.dtype))


def test_frequency_conv_is_two_conv_relu_pool_layers_per_frame():
    torch.manual_seed(0)
    conv = FrequencyConv(10, 3).double()
    x = torch.randn(4, 2, 10, dtype=torch.float64)
    out = conv(x)
    assert out.shape == (4, 2, 6) and conv.out_features == 6
    c1, _, _, c2, _, _ = conv.layers
    # by hand for frame (t=2, n=1): zero-padded correlation, ReLU, max over band pairs
    h = torch.nn.functional.pad(x[2, 1], (2, 2))
    h = torch.stack(
        [c1.bias[c] + sum(c1.weight[c, 0, k] * h[k : k + 10] for k in range(5)) for c in range(3)]
    ).relu()
    h = h.view(3, 5, 2).amax(-1)  # (3, 5)
    h = torch.nn.functional.pad(h, (2, 2))
    h = torch.stack(
        [
            c2.bias[c] + sum((c2.weight[c, :, k, None] * h[:, k : k + 5]).sum(0) for k in range(5))
            for c in range(3)
        ]
    ).relu()
    h = h[:, :4].reshape(3, 2, 2).amax(-1)  # MaxPool1d drops the odd fifth band
    torch.testing.assert_close(out[2, 1], h.reshape(6))
    # every frame alone: changing one frame changes only its own output
    y = x.clone()
    y[0, 0] += 1.0
    torch.testing.assert_close(conv(y)[1:], out[1:])
    assert not torch.allclose(conv(y)[0, 0], out[0, 0])
    with pytest.raises(ValueError, match="at least 4 mel bands"):
        FrequencyConv(3, 2)


def test_two_feature_views_are_the_convolutions_input_channels():
    torch.manual_seed(0)
    two = FrequencyConv(8, 3, views=2).double()
    assert two.layers[0].weight.shape == (3, 2, 5)
    x = torch.randn(5, 2, 16, dtype=torch.float64)  # (T, N, 2 views x 8 bands)
    # the same as a Conv1d over the frame's (view, band) grid, channels = views
    rows = two.layers(x.reshape(10, 2, 8)).reshape(5, 2, 6)
    torch.testing.assert_close(two(x), rows)
    # each view reaches the output: perturbing the second view's bands changes it
    y = x.clone()
    y[..., 8:] += 1.0
    assert not torch.allclose(two(y), two(x))
    config = SpeechModelConfig(hidden_size=4, num_layers=1, conv_channels=0)
    plain = SpeechModel(8, 10, "classify", config, views=2)
    assert plain.in_features == 16 and plain.rnn.input_size == 16 * config.subsample


def test_pooling_is_max_and_mean_over_valid_steps():
    model = tiny("classify")
    out = torch.randn(4, 2, 3, dtype=torch.float64)
    pooled = model.pool(out, torch.tensor([4, 2]))
    torch.testing.assert_close(pooled[1, :3], out[:2, 1].amax(0))
    torch.testing.assert_close(pooled[1, 3:], out[:2, 1].mean(0))
    torch.testing.assert_close(pooled[0, 3:], out[:, 0].mean(0))


def test_ctc_step_loss_and_wer():
    model = tiny("ctc").float()
    feats = [torch.randn(20, 5), torch.randn(14, 5)]
    batch = collate(feats, [(3, 1, 4), (1,)], ctc=True)
    assert batch.targets.tolist() == [4, 2, 5, 2] and batch.target_lengths.tolist() == [3, 1]
    out = task.ctc_step(model, batch)
    log_probs, steps = model(batch.feats, batch.lengths)
    expected = torch.nn.functional.ctc_loss(log_probs, batch.targets, steps, batch.target_lengths)
    torch.testing.assert_close(out.loss, expected)
    assert out.size == 4 and 0 <= out.metrics["wer"] <= 2.0


def tone_items(n: int, seed: int) -> list[Item]:
    """Class 0: a 300 Hz tone, class 1: 1500 Hz; random length, level and phase."""
    rng = np.random.default_rng(seed)
    items = []
    for k in range(n):
        label = k % 2
        t = np.arange(int(rng.integers(1600, 4000))) / 8000
        f = 300.0 if label == 0 else 1500.0
        audio = rng.uniform(0.05, 0.8) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28))
        audio += rng.standard_normal(t.size) * 0.01
        items.append(Item(audio.astype(np.float32), (label,), "s", f"tone{k}"))
    return items


def test_tiny_model_separates_two_tones_perfectly():
    torch.manual_seed(0)
    # per-utterance normalisation would erase a stationary tone's spectrum (each band's mean
    # over time is removed): the tones are told apart by their unnormalised log-mel
    featurizer = Featurizer(FeatureConfig(n_mels=16, normalize="none"), None, ctc=False)
    model = SpeechModel(
        16, 2, "classify", SpeechModelConfig(hidden_size=8, num_layers=1, subsample=4, dropout=0.0)
    )
    train = SpeechBatches(lambda e: tone_items(64, 0), featurizer, 16, 0, None, shuffle=True)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for epoch in range(5):
        train.set_epoch(epoch)
        for batch in train:
            loss = task.isolated_step(model.train(), batch).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    test = tone_items(40, 1)
    preds = [
        d[0]
        for batch in SpeechBatches(lambda e: test, featurizer, 20, 0)
        for d, _ in task.predict_batch(model.eval(), batch, False, 1)
    ]
    assert preds == [it.labels[0] for it in test]


def test_training_batches_are_deterministic_and_augmented():
    items = tone_items(20, 0)
    featurizer = Featurizer(FeatureConfig(), None, ctc=False)
    aug = AugmentConfig(noise_prob=1.0, time_masks=1, freq_masks=1)
    batches = SpeechBatches(lambda e: items, featurizer, 8, 0, aug, shuffle=True)
    assert len(batches) == 3
    first = list(batches)
    again = list(batches)
    for a, b in zip(first, again):
        torch.testing.assert_close(a.feats, b.feats)
    seen = sorted(int(t) for b in first for t in b.targets)
    assert seen == sorted(it.labels[0] for it in items)
    batches.set_epoch(1)
    assert not torch.equal(list(batches)[0].feats, first[0].feats)  # a new epoch, new draws
    plain = list(SpeechBatches(lambda e: items, featurizer, 8, 0))
    assert plain[0].lengths.tolist() == [1 + (it.audio.size - 200) // 80 for it in items[:8]]


def test_time_masks_are_capped_by_the_fraction_of_the_utterance():
    audio = tone_items(1, 0)[0].audio[:2000]  # 24 frames
    featurizer = Featurizer(FeatureConfig(), None, ctc=False)
    masked = []
    for fraction in (0.1, 1.0):
        aug = AugmentConfig(
            speeds=(1.0,),
            noise_prob=0.0,
            time_masks=1,
            time_mask_frames=50,
            time_mask_fraction=fraction,
            freq_masks=0,
        )
        widths = [
            int((featurizer.augmented(audio, aug, np.random.default_rng(k)) == 0).all(1).sum())
            for k in range(40)
        ]
        masked.append(max(widths))
    assert masked[0] <= 2 and masked[1] > 12  # int(0.1 * 24) = 2 frames at most


def test_frequency_masks_span_all_of_a_frames_views():
    audio = tone_items(1, 0)[0].audio[:2000]
    featurizer = Featurizer(FeatureConfig(n_mels=20, normalize="utterance+none"), None, False)
    aug = AugmentConfig(
        speeds=(1.0,), noise_prob=0.0, time_masks=0, freq_masks=1, freq_mask_bands=6
    )
    widths, one_view_only = [], 0
    for k in range(40):
        feats = featurizer.augmented(audio, aug, np.random.default_rng(k))
        masked = torch.nonzero((feats == 0).all(0)).flatten().tolist()  # of the 40 columns
        if masked:  # one run of columns anywhere in the 40, not mirrored into the other view
            assert masked == list(range(masked[0], masked[-1] + 1))
            one_view_only += masked[-1] < 20 or masked[0] >= 20
        widths.append(len(masked))
    assert max(widths) == 6 and min(widths) == 0  # widths drawn from 0-6 values
    assert one_view_only > 20  # most masks hide bands of one view only


def test_crop_cuts_at_most_its_fraction_from_the_ends():
    audio = (0.5 * np.sin(np.arange(8000) * 0.3)).astype(np.float32)  # 98 frames uncut
    featurizer = Featurizer(FeatureConfig(), None, ctc=False)
    aug = AugmentConfig(speeds=(1.0,), crop=0.3, noise_prob=0.0, time_masks=0, freq_masks=0)
    frames = [
        featurizer.augmented(audio, aug, np.random.default_rng(k)).shape[0] for k in range(50)
    ]
    assert min(frames) >= 1 + (5600 - 200) // 80 and max(frames) <= 98
    assert min(frames) < 80 and len(set(frames)) > 10


def test_stretch_resamples_each_band_linearly_in_time():
    ramp = torch.stack([torch.arange(11.0), 10 - torch.arange(11.0)], 1)  # (11, 2)
    fast = stretch(ramp, 6 / 11)  # 6 frames: every second one
    assert torch.equal(fast, ramp[::2])
    slow = stretch(ramp, 21 / 11)  # 21 frames: the midpoints inserted
    assert torch.allclose(slow[:, 0], torch.arange(21.0) / 2)
    assert torch.allclose(slow[:, 1], 10 - torch.arange(21.0) / 2)
    assert stretch(ramp, 1.02) is ramp and stretch(ramp[:1], 3.0).shape == (3, 2)
    assert stretch(ramp, 0.01).shape == (1, 2)


def test_tempo_changes_the_frame_count_within_its_range_and_keeps_the_spectrum():
    audio = (0.5 * np.sin(np.arange(8000) * 0.3)).astype(np.float32)  # 98 frames
    featurizer = Featurizer(FeatureConfig(), None, ctc=False)
    aug = AugmentConfig(speeds=(1.0,), noise_prob=0.0, tempo=(0.7, 1.3), time_masks=0, freq_masks=0)
    out = [featurizer.augmented(audio, aug, np.random.default_rng(k)) for k in range(40)]
    frames = [f.shape[0] for f in out]
    assert min(frames) >= round(98 * 0.7) and max(frames) <= round(98 * 1.3)
    assert min(frames) < 80 and max(frames) > 115  # the range is used, both ways
    plain = featurizer.features(audio)
    for f in out:  # the plain frames, resampled in time: the spectrum is not moved
        assert torch.allclose(f, stretch(plain, f.shape[0] / 98), atol=1e-6)
    again = featurizer.augmented(audio, aug, np.random.default_rng(0))
    assert torch.equal(again, out[0])


def test_training_trims_as_transcription_does():
    audio = np.r_[np.zeros(1600), tone_items(1, 0)[0].audio[:2000], np.zeros(800)]
    featurizer = Featurizer(FeatureConfig(trim_db=30), None, ctc=False)
    off = AugmentConfig(speeds=(1.0,), noise_prob=0.0, time_masks=0, freq_masks=0)
    plain = featurizer.features(audio.astype(np.float32))
    assert plain.shape[0] < FeatureExtractor(FeatureConfig()).n_frames(audio.size) - 20
    augmented = featurizer.augmented(audio.astype(np.float32), off, np.random.default_rng(0))
    assert torch.equal(augmented, plain)
    # noise is added after the trim, so it cannot keep the silence
    noisy = AugmentConfig(
        speeds=(1.0,), noise_prob=1.0, noise_snr_db=(10, 10), time_masks=0, freq_masks=0
    )
    assert (
        featurizer.augmented(audio.astype(np.float32), noisy, np.random.default_rng(0)).shape
        == plain.shape
    )


def test_trim_augmentation_draws_the_threshold_per_example():
    alt = (-1.0) ** np.arange(2000)  # +-a: each window's power exact
    audio = np.r_[0.5 * alt, 0.5 * 10 ** (-25 / 20) * alt[:800]].astype(np.float32)
    featurizer = Featurizer(FeatureConfig(trim_db=40), None, ctc=False)
    aug = AugmentConfig(speeds=(1.0,), noise_prob=0.0, trim_db=(10, 40), time_masks=0, freq_masks=0)
    frames = {
        featurizer.augmented(audio, aug, np.random.default_rng(k)).shape[0] for k in range(30)
    }
    # the -25 dB tail is kept above a 25 dB threshold and cut below it
    ex = FeatureExtractor(FeatureConfig())
    assert frames == {ex.n_frames(2000 + 120), ex.n_frames(2800)}
    assert featurizer.features(audio).shape[0] == ex.n_frames(2800)  # transcription: 40 dB


def test_isolated_scores_by_hand():
    items = [Item(np.zeros(1), (d,), s, "x") for d, s in [(1, "a"), (2, "a"), (3, "b"), (3, "b")]]
    result = isolated_scores(items, [1, 2, 3, 5])
    assert result["accuracy"] == 0.75 and result["errors"] == 1 and result["n"] == 4
    assert result["confusion_matrix"][3][5] == 1 and result["confusion_matrix"][3][3] == 1
    assert result["per_speaker"] == {"a": {"accuracy": 1.0, "n": 2}, "b": {"accuracy": 0.5, "n": 2}}


def test_connected_scores_by_hand():
    items = [Item(np.zeros(1), (3, 1, 4), "a", "u1"), Item(np.zeros(1), (1, 5), "b", "u2")]
    result = connected_scores(items, [[3, 1, 4], [1, 5, 9]])
    assert result["wer"] == pytest.approx(1 / 5)  # one insertion in five reference digits
    assert result["cer"] == pytest.approx(2 / 8)  # " 9" in "3 1 4" + "1 5" (8 characters)
    assert result["utterance_error_rate"] == 0.5 and result["words"] == 5
    assert result["per_speaker"]["a"]["wer"] == 0.0
    assert result["per_speaker"]["b"]["wer"] == pytest.approx(0.5)
    assert task.transcript([3, 1, 4]) == "3 1 4"


@pytest.mark.parametrize(
    "data, message",
    [
        ({"task_kind": "words"}, "task_kind"),
        ({"data": {"max_digits": 1}}, "max_digits"),
        ({"data": {"gap_ms": [400, 100]}}, "gap_ms"),
        ({"data": {"noise_dbfs": 3}}, "noise_dbfs"),
        ({"data": {"noise_dbfs": [-60, 3]}}, r"data.noise_dbfs must be negative .* or none"),
        ({"data": {"noise_dbfs": []}}, "data.noise_dbfs: an empty list"),
        ({"data": {"noise_dbfs": "loud"}}, "data.noise_dbfs must be float"),
        ({"data": {"val_noise_dbfs": [0, "none"]}}, "data.val_noise_dbfs must be negative"),
        ({"data": {"val_noise_dbfs": [-60, "none", -60]}}, "each level once"),
        ({"data": {"val_noise_dbfs": -60}}, "data.val_noise_dbfs must be a list"),
        ({"features": {"floor_dbfs": 0}}, r"features.floor_dbfs must be in \[-200, 0\)"),
        ({"features": {"floor_dbfs": -300}}, r"features.floor_dbfs must be in \[-200, 0\)"),
        ({"augment": {"speeds": [3.0]}}, "speeds"),
        ({"augment": {"time_masks": -1}}, "time_masks"),
        ({"augment": {"time_mask_fraction": 0}}, "time_mask_fraction"),
        ({"augment": {"crop": 1.0}}, "crop"),
        ({"augment": {"tempo": [1.2, 0.8]}}, "tempo"),
        ({"augment": {"trim_db": [20, 10]}}, "trim_db"),
        ({"features": {"trim_db": -3}}, "trim_db"),
        ({"augment": {"tempo": [0.3, 1.0]}}, "tempo"),
        ({"model": {"pooling": "attention"}}, "pooling"),
        ({"model": {"subsample": 0}}, "subsample"),
        ({"decode": {"beam_width": 0}}, "beam_width"),
        ({"features": {"n_mels": 0}}, "n_mels"),
        ({"model": {"hidden": 3}}, "unknown key"),
        ({"model": {"conv_channels": -1}}, "conv_channels must be >= 0"),
        ({"model": {"members": 0}}, "model.members must be positive"),
        ({"task_kind": "connected", "model": {"members": 2}}, "members > 1 applies to task_kind"),
        ({"data": {"per_member": True}}, "data.per_member needs model.members > 1"),
        ({"features": {"normalize": "utterance+utterance"}}, "each once"),
        ({"features": {"normalize": "utterance+cmvn"}}, "joined by"),
    ],
)
def test_config_errors(data, message):
    with pytest.raises(ValueError, match=message):
        load_config(data)


def test_noise_levels_and_floor_from_yaml_and_the_command_line_forms():
    config = load_config(
        {
            "data": {"noise_dbfs": [-60, "none"], "val_noise_dbfs": "[-60, null]"},
            "features": {"floor_dbfs": "-60"},
        }
    )
    assert config.data.noise_dbfs == (-60.0, None) and config.data.val_noise_dbfs == (-60.0, None)
    assert config.features.floor_dbfs == -60.0
    plain = load_config({"data": {"noise_dbfs": -50}})
    assert plain.data.noise_dbfs == -50.0 and plain.data.val_noise_dbfs == ()
    assert plain.features.floor_dbfs is None  # the default: features as before the floor
    assert load_config({"data": {"noise_dbfs": "none"}}).data.noise_dbfs is None


def test_validation_is_the_same_utterances_at_each_noise_level():
    config = load_config(
        {
            "task_kind": "connected",
            "data": {
                "val_utterances": 6,
                "noise_dbfs": [-60, "none"],
                "val_noise_dbfs": [-60, "none"],
            },
        }
    )
    items, floors = task.eval_items(config, None, "val")  # the bundled sample
    assert floors == (("-60 dBFS", 6), ("none", 6)) and len(items) == 12
    noisy, silent = items[:6], items[6:]
    for a, b in zip(noisy, silent):
        assert (a.labels, a.speaker, a.name, a.audio.size) == (
            b.labels,
            b.speaker,
            b.name,
            b.audio.size,
        )
        rms = np.sqrt(np.mean((a.audio - b.audio).astype(np.float64) ** 2))
        assert 20 * np.log10(rms) == pytest.approx(-60.0, abs=0.5)
    # digital silence: every gap between recordings is exact zeros (at least 100 ms of them)
    assert all(int((it.audio == 0).sum()) >= 800 for it in silent)
    assert not any(int((it.audio == 0).sum()) > 10 for it in noisy)
    # without val_noise_dbfs: one set at the training levels (as every earlier config)
    one = load_config({"task_kind": "connected", "data": {"val_utterances": 6, "noise_dbfs": -60}})
    items1, floors1 = task.eval_items(one, None, "val")
    assert floors1 == () and len(items1) == 6
    for a, b in zip(items1, noisy):
        np.testing.assert_array_equal(a.audio, b.audio)


def test_scores_per_noise_floor(monkeypatch):
    labels = [(3, 1), (4,), (1, 5, 9)] * 2  # the same three utterances at two levels
    items = [Item(np.zeros(1), ref, "a", f"u{k}") for k, ref in enumerate(labels)]
    hyps = [[3, 1], [4], [1, 5, 9], [3], [4], [1, 6, 9]]  # two errors in the second set
    featurizer = Featurizer(FeatureConfig(), None, ctc=True)
    batches = SpeechBatches(lambda epoch: items, featurizer, 2, 0)
    outputs = iter([(h, 1.0) for h in hyps])
    monkeypatch.setattr(
        task,
        "predict_batch",
        lambda model, batch, ctc, beam: [next(outputs) for _ in range(batch.lengths.numel())],
    )
    data = task.ScoreData("val", "x", items, batches, True, 4, (("-60 dBFS", 3), ("none", 3)))
    result = task.score(None, data)
    assert result["wer"] == 0.0 and result["n"] == 3 and result["words"] == 6
    assert [e["name"] for e in result["examples"]] == ["u0", "u1", "u2"]
    floors = result["noise_floors"]
    assert list(floors) == ["-60 dBFS", "none"]
    assert floors["-60 dBFS"] == {
        "wer": 0.0,
        "cer": 0.0,
        "utterance_error_rate": 0.0,
        "words": 6,
        "n": 3,
    }
    assert floors["none"]["wer"] == pytest.approx(2 / 6)  # a deletion and a substitution
    assert floors["none"]["utterance_error_rate"] == pytest.approx(2 / 3)
    report = task.format_report(result)
    assert "(3 utterances, 6 digits at noise -60 dBFS)" in report
    assert "the same utterances at noise none: WER 0.3333" in report
    summary = task.TASK.summary({**result, "steps": 1, "seconds": 1.0})
    assert (
        "validation WER 0.0000 on 3 connected utterances (0.0000 at noise -60 dBFS, "
        "0.3333 at noise none)" in summary
    )


def streaming_predictor(
    tmp_path,
    subsample: int,
    conv: int = 0,
    normalize: str = "global",
    floor_dbfs: float | None = None,
):
    config = load_config(
        {
            "task_kind": "connected",
            "features": {"normalize": normalize, "floor_dbfs": floor_dbfs},
            "model": {
                "hidden_size": 8,
                "num_layers": 2,
                "bidirectional": False,
                "subsample": subsample,
                "dropout": 0.0,
                "conv_channels": conv,
            },
        }
    )
    torch.manual_seed(0)
    model = task.build_model(config)
    rng = np.random.default_rng(0)
    ex = FeatureExtractor(config.features)
    stats = global_stats([ex.frames(rng.standard_normal(3000).astype(np.float32) * 0.1)])
    artifacts = {"labels": [str(d) for d in range(10)], "feature_stats": stats.tolist()}
    return SpeechPredictor("speech", config, model, artifacts, tmp_path)


@pytest.mark.parametrize(
    "subsample,conv,normalize,floor_dbfs",
    [
        (1, 0, "global", None),
        (3, 0, "global", None),
        (3, 4, "global", None),
        (2, 4, "global+none", None),
        (3, 0, "global", -60.0),
        (2, 4, "global+none", -60.0),
    ],
)
@pytest.mark.parametrize("chunk_ms", [10, 37, 200, 5000])
def test_stream_equals_one_shot(tmp_path, subsample, conv, normalize, floor_dbfs, chunk_ms):
    predictor = streaming_predictor(tmp_path, subsample, conv, normalize, floor_dbfs)
    audio = tone_items(1, 3)[0].audio
    if floor_dbfs is not None:  # a gap of digital silence between two tones
        audio = np.concatenate([audio, np.zeros(1500, np.float32), audio[:2000]])
    batch = predictor.featurizer.batch([Item(audio, (0,), "", "x")])
    with torch.no_grad():
        whole, steps = predictor.model(batch.feats, batch.lengths)
    streamed = torch.cat(list(predictor.stream(audio, chunk_ms)))
    assert streamed.shape == whole[:, 0].shape
    torch.testing.assert_close(streamed, whole[:, 0], atol=1e-5, rtol=1e-4)
    assert predictor.transcribe_stream(audio, chunk_ms) == predictor.transcribe_audio(audio)


def test_streaming_refuses_models_that_read_the_whole_utterance(tmp_path):
    predictor = streaming_predictor(tmp_path, 1)
    for how in ("utterance", "gain", "global+utterance"):
        predictor.config.features.normalize = how
        with pytest.raises(ValueError, match="normalises each utterance"):
            list(predictor.stream(np.zeros(800, np.float32), 100))
    predictor.config.features.normalize = "global"
    predictor.config.features.trim_db = 20.0
    with pytest.raises(ValueError, match="trim_db"):
        list(predictor.stream(np.zeros(800, np.float32), 100))
    model = tiny("ctc", bidirectional=True).float()
    with pytest.raises(ValueError, match="unidirectional"):
        model.step(torch.zeros(2, 1, 5))


def test_silence_gives_an_empty_transcript_and_a_warning(tmp_path):
    predictor = streaming_predictor(tmp_path, 1)
    with pytest.warns(UserWarning, match="silent"):
        assert predictor.transcribe_audio(np.zeros(4000, np.float32), "quiet.wav") == {
            "transcript": "",
            "confidence": 0.0,
        }


def test_label_smoothing_step_against_the_formula_and_its_config_errors():
    model = tiny("classify")
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(12, 3, 5, generator=g, dtype=torch.float64)
    batch = Batch(feats, torch.tensor([12, 7, 9]), torch.tensor([4, 0, 9]), torch.ones(3).long())
    logp = model(feats, batch.lengths)[0].detach().float().log_softmax(-1)
    nll = -logp[torch.arange(3), batch.targets]
    uniform = -logp.mean(-1)  # the cross-entropy against the uniform distribution
    want = float((0.9 * nll + 0.1 * uniform).mean())
    step = task.SpeechTask().step_fn(load_config({"label_smoothing": 0.1}))
    assert abs(float(step(model, batch).loss.detach()) - want) <= 1e-6
    plain = task.SpeechTask().step_fn(load_config({}))(model, batch).loss
    assert abs(float(plain.detach()) - float(nll.mean())) <= 1e-6
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\), got 1.0"):
        load_config({"label_smoothing": 1.0})
    with pytest.raises(ValueError, match="label_smoothing applies to task_kind digits"):
        load_config({"task_kind": "connected", "label_smoothing": 0.1})


def test_ensemble_step_averages_the_members_losses_and_probabilities():
    torch.manual_seed(0)
    config = load_config(
        {
            "model": {"hidden_size": 6, "num_layers": 1, "members": 3},
            "features": {"n_mels": 5},
            "label_smoothing": 0.1,
        }
    )
    model = task.build_model(config).double().eval()  # no dropout: the same answers twice
    assert isinstance(model, SpeechEnsemble) and len(model.members) == 3
    assert all(k.startswith("members.") for k in model.state_dict())
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(12, 4, 5, generator=g, dtype=torch.float64)
    batch = Batch(
        feats, torch.tensor([12, 7, 9, 3]), torch.tensor([4, 0, 9, 2]), torch.ones(4).long()
    )
    out = task.SpeechTask().step_fn(config)(model, batch)
    with torch.no_grad():
        alone = [m(feats, batch.lengths)[0] for m in model.members]
        mean_probs = torch.stack([x.softmax(-1) for x in alone]).mean(0)
        ensemble, _ = model(feats, batch.lengths)
    losses = [
        torch.nn.functional.cross_entropy(x, batch.targets, label_smoothing=0.1) for x in alone
    ]
    # each member learns on its own loss: the mean of theirs, not the averaged prediction's
    assert abs(float(out.loss.detach()) - float(torch.stack(losses).mean())) <= 1e-6
    assert (ensemble.exp() - mean_probs).abs().max() <= 1e-6
    accuracy = float((mean_probs.argmax(-1) == batch.targets).double().mean())
    assert out.metrics["accuracy"] == pytest.approx(accuracy)
    # the members start apart: different weights, different answers
    assert (alone[0] - alone[1]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="streaming needs a unidirectional CTC model"):
        model.check_streamable()


def test_per_member_batches_are_the_runs_of_seeds_seed_plus_k():
    items = tone_items(20, 0)
    featurizer = Featurizer(FeatureConfig(), None, ctc=False)
    aug = AugmentConfig(noise_prob=1.0, time_masks=1, freq_masks=1)
    joint = PerMemberBatches(3, lambda e: items, featurizer, 8, 5, aug)
    joint.set_epoch(2)
    assert len(joint) == 3
    steps = list(joint)
    assert len(steps) == 3 and all(len(step.batches) == 3 for step in steps)
    for k in range(3):  # member k reads exactly what a run seeded 5 + k reads
        alone = SpeechBatches(lambda e: items, featurizer, 8, 5 + k, aug, shuffle=True)
        alone.set_epoch(2)
        for step, batch in zip(steps, alone, strict=True):
            torch.testing.assert_close(step.batches[k].feats, batch.feats)
            assert torch.equal(step.batches[k].targets, batch.targets)
    # the members' batches differ: their own shuffle and augmentation
    one, two = steps[0].batches[:2]
    assert one.feats.shape != two.feats.shape or not torch.equal(one.feats, two.feats)


def test_per_member_step_trains_each_member_on_its_own_batch():
    torch.manual_seed(0)
    config = load_config(
        {
            "model": {"hidden_size": 6, "num_layers": 1, "members": 2},
            "features": {"n_mels": 5},
            "data": {"per_member": True},
        }
    )
    model = task.build_model(config).double().eval()
    g = torch.Generator().manual_seed(4)
    own = [
        Batch(
            torch.randn(10, 3, 5, generator=g, dtype=torch.float64),
            torch.tensor([10, 6, 8]),
            torch.tensor(t),
            torch.ones(3).long(),
        )
        for t in ([1, 2, 3], [7, 7, 0])
    ]
    with torch.no_grad():  # member 0's batch labelled with its own answers: accuracy 1
        first = model.members[0](own[0].feats, own[0].lengths)[0].argmax(-1)
    own[0] = own[0]._replace(targets=first)
    out = task.SpeechTask().step_fn(config)(model, MemberBatches(tuple(own)))
    with torch.no_grad():
        logits = [m(b.feats, b.lengths)[0] for m, b in zip(model.members, own)]
    losses = [torch.nn.functional.cross_entropy(x, b.targets) for x, b in zip(logits, own)]
    assert abs(float(out.loss.detach()) - float(torch.stack(losses).mean())) <= 1e-6
    hits = [float((x.argmax(-1) == b.targets).double().mean()) for x, b in zip(logits, own)]
    assert hits[0] == 1.0 and out.metrics["accuracy"] == pytest.approx(sum(hits) / 2)
    assert out.size == 3
    out.loss.backward()  # member k's gradient: its own batch's loss over the 2 members
    for member, batch in zip(model.members, own):
        params = list(member.parameters())
        loss = (
            torch.nn.functional.cross_entropy(member(batch.feats, batch.lengths)[0], batch.targets)
            / 2
        )
        for p, g in zip(params, torch.autograd.grad(loss, params), strict=True):
            torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="3 members' batches for a model of 2"):
        task.SpeechTask().step_fn(config)(model, MemberBatches((own[0], own[1], own[0])))
