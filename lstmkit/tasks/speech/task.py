"""Speech recognition on FSDD: WAV recordings -> log-mel -> BiLSTM -> digits.

Two kinds of task (``task_kind``):

* ``digits``: isolated spoken digits, one recording one class; a BiLSTM with pooling and
  cross-entropy; scored by accuracy, the confusion matrix and per-speaker accuracy.
* ``connected``: utterances of 2-7 recordings of one speaker joined by silence
  (:func:`lstmkit.data.fsdd.connected_utterance`), transcribed by a BiLSTM with CTC; a fresh
  set of training utterances every epoch, a fixed seeded validation set; scored by WER and
  CER (``jiwer``) of prefix beam search, and per speaker.

FSDD is split by index (:data:`lstmkit.data.fsdd.SPLITS`): train 10-49, validation 5-9,
test 0-4 (withheld). Training augments every example afresh (crop, speed, noise,
SpecAugment: :mod:`lstmkit.tasks.speech.batches`). The feature settings are part of the
config, so the model directory reproduces them exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lstmkit.data.audio import (
    FeatureConfig,
    FeatureExtractor,
    global_stats,
    is_silent,
    read_wav,
)
from lstmkit.data.fsdd import SAMPLE, load_recordings
from lstmkit.tasks.base import (
    Built,
    InputError,
    Predictor,
    RunContext,
    load_model,
    read_config,
)
from lstmkit.tasks.speech.batches import (
    AugmentConfig,
    Batch,
    Featurizer,
    Item,
    MemberBatches,
    PerMemberBatches,
    SpeechBatches,
    connected_items,
    isolated_items,
)
from lstmkit.tasks.speech.card import CARD
from lstmkit.tasks.speech.decode import collapse, ctc_decode, edit_distance, transcript
from lstmkit.tasks.speech.model import (
    SpeechEnsemble,
    SpeechModel,
    SpeechModelConfig,
    average_probabilities,
    members_of,
)
from lstmkit.tasks.speech.stream import SpeechStream
from lstmkit.train import (
    StepOutput,
    TrainConfig,
    from_dict,
    keep_callbacks,
)
from lstmkit.train.config import check_positive

KINDS = ("digits", "connected")
NUM_DIGITS = 10
EXAMPLES = 5  # transcripts results.json shows


@dataclass
class SpeechDataConfig:
    """The recordings and the batches.

    Args:
        path: FSDD's ``recordings/`` folder (or the folder holding it, or a ``.tar.gz``);
            ``None``: the sample bundled with lstmkit. Default: ``None``
        batch_size, eval_batch_size: utterances per batch. Default: 32, 64
        train_utterances: connected utterances generated afresh per epoch. Default: 2400
        val_utterances: connected validation utterances (fixed). Default: 500
        val_seed: seeds the validation utterances. Default: 1
        min_digits, max_digits: digits per connected utterance. Default: 2, 7
        gap_ms: range of the silence between digits. Default: (100, 400)
        noise_dbfs: white noise of this RMS level (dB below full scale) in every connected
            utterance (``None``: none, the gaps exact zeros), or a list of levels, one drawn
            per utterance (``[-60, none]``: half with a -60 dBFS floor, half with digital
            silence). Default: ``None``
        val_noise_dbfs: the noise levels the validation utterances are scored at: the same
            utterances (``val_seed``) at each level (``none``: digital silence); the first
            gives the primary score (``wer``, the best epoch's pick uses them all) and
            results.json has each under ``noise_floors``. Empty: one set, its levels as
            ``noise_dbfs``. Default: empty
        per_member: with ``model.members`` > 1, member k trains on its own batches,
            shuffled and augmented with seed + k, as a run of that seed would (members that
            share the batches made the same mistakes: RESULTS.md); each step then costs
            ``members`` times the featurisation. Default: ``False``
    """

    path: str | None = None
    batch_size: int = 32
    eval_batch_size: int = 64
    train_utterances: int = 2400
    val_utterances: int = 500
    val_seed: int = 1
    min_digits: int = 2
    max_digits: int = 7
    gap_ms: tuple[float, float] = (100.0, 400.0)
    noise_dbfs: float | tuple[float | None, ...] | None = None
    val_noise_dbfs: tuple[float | None, ...] = ()
    per_member: bool = False

    def __post_init__(self) -> None:
        check_positive(
            self,
            "data",
            ("batch_size", "eval_batch_size", "train_utterances", "val_utterances", "min_digits"),
        )
        if self.max_digits < self.min_digits:
            raise ValueError(
                f"data.max_digits ({self.max_digits}) < data.min_digits ({self.min_digits})"
            )
        if len(self.gap_ms) != 2 or not 0 <= self.gap_ms[0] <= self.gap_ms[1]:
            raise ValueError(
                f"data.gap_ms must be [low, high] with 0 <= low <= high, got {list(self.gap_ms)}"
            )
        for name in ("noise_dbfs", "val_noise_dbfs"):
            value = getattr(self, name)
            if isinstance(value, list):
                value = tuple(value)
                setattr(self, name, value)
            levels = value if isinstance(value, tuple) else (value,)
            if name == "noise_dbfs" and not levels:
                raise ValueError("data.noise_dbfs: an empty list (give none for no noise)")
            if any(v is not None and not v < 0 for v in levels):
                raise ValueError(
                    f"data.{name} must be negative (dB below full scale) or none, got {value}"
                )
            if name == "val_noise_dbfs" and len(set(levels)) < len(levels):
                raise ValueError(f"data.val_noise_dbfs: each level once, got {list(levels)}")


@dataclass
class DecodeConfig:
    """CTC decoding: ``beam_width`` of prefix beam search (1: greedy-like). Default: 8"""

    beam_width: int = 8

    def __post_init__(self) -> None:
        check_positive(self, "decode", ("beam_width",))


@dataclass
class SpeechConfig:
    """The whole run: ``task_kind`` (``digits`` or ``connected``), ``data``, ``features``,
    ``augment``, ``model``, ``decode``, ``train``, ``patience`` (epochs without a better
    validation score before early stopping) and ``keep``: the weights of the ``best`` epoch by
    the validation score (picked on the recordings it is then scored on, so the score is an
    optimistic estimate) or of the ``last`` one. ``label_smoothing`` (digits only): the
    cross-entropy's, as ``torch.nn.CrossEntropyLoss(label_smoothing=...)``. Default: 0"""

    task_kind: str = "digits"
    data: SpeechDataConfig = field(default_factory=SpeechDataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: SpeechModelConfig = field(default_factory=SpeechModelConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(lr=3e-3, epochs=60, schedule="cosine", warmup_steps=20)
    )
    patience: int = 15
    keep: str = "best"
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.label_smoothing and self.task_kind == "connected":
            raise ValueError(
                "label_smoothing applies to task_kind digits (cross-entropy), not connected (CTC)"
            )
        if self.model.members > 1 and self.task_kind == "connected":
            raise ValueError(
                "model.members > 1 applies to task_kind digits (averaged class "
                "probabilities), not connected (CTC)"
            )
        if self.data.per_member and self.model.members < 2:
            raise ValueError(
                "data.per_member needs model.members > 1 (the members' own "
                f"batches), got model.members {self.model.members}"
            )
        if self.keep not in ("best", "last"):
            raise ValueError(f"keep must be best or last, got {self.keep!r}")
        if self.task_kind not in KINDS:
            raise ValueError(f"task_kind must be one of {', '.join(KINDS)}; got {self.task_kind!r}")
        check_positive(self, "", ("patience",))

    @property
    def ctc(self) -> bool:
        return self.task_kind == "connected"

    @property
    def monitor(self) -> tuple[str, str]:
        return ("val_wer", "min") if self.ctc else ("val_accuracy", "max")


def load_config(data: dict[str, Any] | None = None) -> SpeechConfig:
    return from_dict(SpeechConfig, data)


# -- steps and scores ----------------------------------------------------------------------------


def _to(batch: Batch, device: torch.device) -> Batch:
    return Batch(
        batch.feats.to(device), batch.lengths, batch.targets.to(device), batch.target_lengths
    )


def split_targets(batch: Batch) -> list[list[int]]:
    """The CTC targets of each utterance of ``batch`` as digits."""
    rows, start = [], 0
    targets = batch.targets.tolist()
    for n in batch.target_lengths.tolist():
        rows.append([t - 1 for t in targets[start : start + n]])
        start += n
    return rows


def isolated_step(
    model: nn.Module, batch: Batch | MemberBatches, state: Any = None, label_smoothing: float = 0.0
) -> StepOutput:
    """Cross-entropy and accuracy; an ensemble's loss is the mean of its members' own (each
    learns as it would alone) and its accuracy that of the averaged probabilities (members
    on their own batches, :class:`MemberBatches`: the mean of the members' accuracies)."""
    if isinstance(batch, MemberBatches):
        return per_member_step(model, batch, label_smoothing)
    batch = _to(batch, next(model.parameters()).device)
    if isinstance(model, SpeechEnsemble):
        members, _ = model.forward_members(batch.feats, batch.lengths)
        loss = torch.stack(
            [
                F.cross_entropy(x.float(), batch.targets, label_smoothing=label_smoothing)
                for x in members
            ]
        ).mean()
        logits = average_probabilities(members)
    else:
        logits, _ = model(batch.feats, batch.lengths)
        loss = F.cross_entropy(logits.float(), batch.targets, label_smoothing=label_smoothing)
    accuracy = (logits.argmax(-1) == batch.targets).float().mean()
    return StepOutput(loss, batch.targets.numel(), {"accuracy": float(accuracy)})


def per_member_step(model: nn.Module, batch: MemberBatches, label_smoothing: float) -> StepOutput:
    """Member k of the ensemble on ``batch.batches[k]``: the mean of the members' losses and
    accuracies."""
    if not isinstance(model, SpeechEnsemble) or len(model.members) != len(batch.batches):
        got = len(members_of(model))
        raise ValueError(f"{len(batch.batches)} members' batches for a model of {got} member(s)")
    outs = [
        isolated_step(member, own, label_smoothing=label_smoothing)
        for member, own in zip(model.members, batch.batches)
    ]
    accuracy = sum(out.metrics["accuracy"] for out in outs) / len(outs)
    return StepOutput(
        torch.stack([out.loss for out in outs]).mean(), outs[0].size, {"accuracy": accuracy}
    )


def ctc_step(model: nn.Module, batch: Batch, state: Any = None) -> StepOutput:
    """CTC loss (mean over utterances of the per-label loss) and the greedy WER; the size is
    the number of reference digits, so the epoch's WER is errors over all digits."""
    batch = _to(batch, next(model.parameters()).device)
    log_probs, steps = model(batch.feats, batch.lengths)
    loss = F.ctc_loss(
        log_probs.float(), batch.targets, steps, batch.target_lengths, blank=0, zero_infinity=True
    )
    best = log_probs.detach().argmax(-1).cpu()  # (T', N)
    errors = 0
    for n, ref in enumerate(split_targets(batch)):
        hyp = [c - 1 for c in collapse(best[: int(steps[n]), n].tolist())]
        errors += edit_distance(ref, hyp)
    words = int(batch.target_lengths.sum())
    return StepOutput(loss, words, {"wer": errors / words})


class ScoreData(NamedTuple):
    """Utterances to score: ``split`` of ``source``, the ``items`` and their unaugmented
    ``batches`` (in order), the task kind, the CTC beam width and the ``noise_floors``:
    (name, count) of consecutive sets of ``items``, the same utterances at each noise level
    (empty: one set)."""

    split: str
    source: str
    items: list[Item]
    batches: SpeechBatches
    ctc: bool
    beam_width: int
    noise_floors: tuple[tuple[str, int], ...] = ()


def noise_name(dbfs: float | None) -> str:
    """A noise level's name in results: ``-60 dBFS``, or ``none`` (digital silence)."""
    return "none" if dbfs is None else f"{dbfs:g} dBFS"


@torch.no_grad()
def predict_batch(
    model: nn.Module, batch: Batch, ctc: bool, beam_width: int
) -> list[tuple[list[int], float]]:
    """(digits, confidence) per utterance of ``batch``."""
    batch = _to(batch, next(model.parameters()).device)
    out, steps = model(batch.feats, batch.lengths)
    if not ctc:
        probs = out.float().softmax(-1).cpu()
        return [([int(p.argmax())], float(p.max())) for p in probs]
    return [ctc_decode(out[: int(steps[n]), n], beam_width) for n in range(out.shape[1])]


def isolated_scores(items: list[Item], preds: list[int]) -> dict[str, Any]:
    """Accuracy, the confusion matrix (rows true digit, columns predicted) and accuracy per
    speaker."""
    labels = [it.labels[0] for it in items]
    matrix = np.zeros((NUM_DIGITS, NUM_DIGITS), dtype=int)
    for t, p in zip(labels, preds):
        matrix[t, p] += 1
    speakers: dict[str, list[int]] = {}
    for it, p in zip(items, preds):
        speakers.setdefault(it.speaker, []).append(int(p == it.labels[0]))
    return {
        "accuracy": float(np.trace(matrix) / max(len(labels), 1)),
        "errors": int(len(labels) - np.trace(matrix)),
        "confusion_matrix": matrix.tolist(),
        "per_speaker": {
            s: {"accuracy": float(np.mean(v)), "n": len(v)} for s, v in sorted(speakers.items())
        },
        "n": len(labels),
    }


def connected_scores(items: list[Item], hyps: list[list[int]]) -> dict[str, Any]:
    """WER and CER (jiwer; the CER counts the transcripts' characters, spaces included),
    the utterance error rate and WER per speaker."""
    import jiwer

    refs = [transcript(it.labels) for it in items]
    outs = [transcript(h) for h in hyps]
    per_speaker = {}
    for s in sorted({it.speaker for it in items}):
        idx = [k for k, it in enumerate(items) if it.speaker == s]
        per_speaker[s] = {
            "wer": float(jiwer.wer([refs[k] for k in idx], [outs[k] for k in idx])),
            "n": len(idx),
        }
    return {
        "wer": float(jiwer.wer(refs, outs)),
        "cer": float(jiwer.cer(refs, outs)),
        "utterance_error_rate": float(np.mean([r != h for r, h in zip(refs, outs)])),
        "words": sum(len(it.labels) for it in items),
        "per_speaker": per_speaker,
        "n": len(items),
    }


def format_report(result: dict[str, Any]) -> str:
    """The scores as text: confusion matrix or WER/CER, per speaker, a few examples."""
    lines = []
    if "accuracy" in result:
        lines.append(
            f"accuracy {result['accuracy']:.4f} ({result['errors']} errors in {result['n']})"
        )
        lines.append("confusion matrix (rows true digit 0-9, columns predicted):")
        lines += ["  " + " ".join(f"{v:3d}" for v in row) for row in result["confusion_matrix"]]
        per = ", ".join(f"{s} {v['accuracy']:.4f}" for s, v in result["per_speaker"].items())
    else:
        floors = result.get("noise_floors", {})
        at = f" at noise {next(iter(floors))}" if floors else ""
        lines.append(
            f"WER {result['wer']:.4f}  CER {result['cer']:.4f}  utterance error rate "
            f"{result['utterance_error_rate']:.4f} ({result['n']} utterances, "
            f"{result['words']} digits{at})"
        )
        for name, v in list(floors.items())[1:]:
            lines.append(
                f"the same utterances at noise {name}: WER {v['wer']:.4f}  CER "
                f"{v['cer']:.4f}  utterance error rate "
                f"{v['utterance_error_rate']:.4f}"
            )
        per = ", ".join(f"{s} {v['wer']:.4f}" for s, v in result["per_speaker"].items())
    lines.append(f"per speaker: {per}")
    for ex in result.get("examples", []):
        mark = "" if ex["reference"] == ex["transcript"] else "   <- error"
        lines.append(
            f"  {ex['name']}: {ex['transcript'] or '(empty)'!s:<16} (reference "
            f"{ex['reference']}){mark}"
        )
    return "\n".join(lines)


SET_SCORES = ("wer", "cer", "utterance_error_rate", "words", "n")


def score(model: nn.Module, data: ScoreData) -> dict[str, Any]:
    """The scores of ``data``; with several ``noise_floors``, those of the first set at the
    top level and each set's WER, CER, utterance error rate and counts under
    ``noise_floors``."""
    outputs = []
    for batch in data.batches:
        outputs += predict_batch(model, batch, data.ctc, data.beam_width)
    digits = [d for d, _ in outputs]
    items, floors = data.items, {}
    start = 0
    for name, count in data.noise_floors:
        part = connected_scores(items[start : start + count], digits[start : start + count])
        floors[name] = {k: part[k] for k in SET_SCORES}
        start += count
    if data.noise_floors:
        first = data.noise_floors[0][1]
        items, digits = items[:first], digits[:first]
    result = (
        connected_scores(items, digits)
        if data.ctc
        else isolated_scores(items, [d[0] for d in digits])
    )
    if floors:
        result["noise_floors"] = floors
    result["examples"] = [
        {"name": it.name, "reference": transcript(it.labels), "transcript": transcript(d)}
        for it, d in zip(items[:EXAMPLES], digits)
    ]
    return {"split": data.split, "data": data.source, **result}


# -- the task --------------------------------------------------------------------------------


def _stats(artifacts: dict[str, Any]) -> Tensor | None:
    stats = artifacts.get("feature_stats")
    return None if stats is None else torch.tensor(stats, dtype=torch.float32)


def eval_items(
    config: SpeechConfig, source: str | Path | None, split: str
) -> tuple[list[Item], tuple[tuple[str, int], ...]]:
    """The items of ``split`` and their noise floors' sets (see :class:`ScoreData`): the
    recordings (isolated), or ``val_utterances`` connected ones of the validation seed (the
    test split's is ``val_seed + 1000``), once per level of ``data.val_noise_dbfs``."""
    recordings = load_recordings(source, split, config.features.sample_rate)
    if not config.ctc:
        return isolated_items(recordings), ()
    data, rate = config.data, config.features.sample_rate
    key = (data.val_seed if split == "val" else data.val_seed + 1000,)
    if not data.val_noise_dbfs:
        return connected_items(recordings, data, rate, data.val_utterances, key), ()
    items, floors = [], []
    for level in data.val_noise_dbfs:  # the noise is drawn last: the same utterances
        at_level = dataclasses.replace(data, noise_dbfs=level)
        items += connected_items(recordings, at_level, rate, data.val_utterances, key)
        floors.append((noise_name(level), data.val_utterances))
    return items, tuple(floors)


def make_score_data(
    config: SpeechConfig,
    split: str,
    source: Any,
    items: list[Item],
    stats: Tensor | None,
    noise_floors: tuple[tuple[str, int], ...] = (),
) -> ScoreData:
    featurizer = Featurizer(config.features, stats, config.ctc)
    batches = SpeechBatches(lambda epoch: items, featurizer, config.data.eval_batch_size, 0)
    return ScoreData(
        split, str(source), items, batches, config.ctc, config.decode.beam_width, noise_floors
    )


def build_model(config: SpeechConfig) -> SpeechModel | SpeechEnsemble:
    views = len(config.features.views)
    if config.model.members > 1:
        return SpeechEnsemble(config.features.n_mels, NUM_DIGITS, config.model, views)
    head = "ctc" if config.ctc else "classify"
    return SpeechModel(config.features.n_mels, NUM_DIGITS, head, config.model, views)


class SpeechTask:
    """FSDD digits, isolated or connected (see the module docstring)."""

    name = "speech"
    config_class = SpeechConfig
    card = CARD
    shards = False  # its batches are made on the fly, not sharded across processes
    onnx = "lstmkit.tasks.speech.export"  # its OnnxExport, imported when used
    widget = "speech"  # the web page's widget (lstmkit/serve/static)

    def build(self, config: SpeechConfig, run: RunContext) -> Built:
        data, rate = config.data, config.features.sample_rate
        source = data.path if data.path is not None else SAMPLE
        train_recs = load_recordings(source, "train", rate)
        val_recs = load_recordings(source, "val", rate)
        extractor = FeatureExtractor(config.features)
        stats = None
        if config.features.needs_stats:
            stats = global_stats([extractor.frames(extractor.trim(r.audio)) for r in train_recs])
        featurizer = Featurizer(config.features, stats, config.ctc)
        seed = config.train.seed
        if config.ctc:
            n = data.train_utterances
            source_fn = lambda epoch: connected_items(train_recs, data, rate, n, (seed, epoch))  # noqa: E731
            val_items, floors = eval_items(config, source, "val")
        else:
            fixed = isolated_items(train_recs)
            source_fn = lambda epoch: fixed  # noqa: E731
            val_items, floors = isolated_items(val_recs), ()
        if data.per_member:
            train_data = PerMemberBatches(
                config.model.members, source_fn, featurizer, data.batch_size, seed, config.augment
            )
        else:
            train_data = SpeechBatches(
                source_fn, featurizer, data.batch_size, seed, config.augment, shuffle=True
            )
        score_data = make_score_data(config, "val", source, val_items, stats, floors)
        speakers = sorted({r.speaker for r in train_recs})
        levels = ", ".join(name for name, _ in floors)
        at = f" ({data.val_utterances} at noise {levels})" if floors else ""
        what = (
            (
                f"{data.train_utterances} connected utterances per epoch, {len(val_items)} for "
                f"validation{at}"
            )
            if config.ctc
            else "isolated digits"
        )
        print(
            f"{len(train_recs)} training and {len(val_recs)} validation recordings of "
            f"{len(speakers)} speakers ({', '.join(speakers)}); {what}"
        )
        artifacts: dict[str, Any] = {"labels": [str(d) for d in range(NUM_DIGITS)]}
        if stats is not None:
            artifacts["feature_stats"] = stats.tolist()
        return Built(
            build_model(config),
            train_data,
            score_data.batches,
            score_data=score_data,
            artifacts=artifacts,
            facts={"train_recordings": len(train_recs), "val_recordings": len(val_recs)},
            per_step={"train_utterances": data.batch_size},
        )

    def step_fn(self, config: SpeechConfig):
        if config.ctc:
            return ctc_step
        return functools.partial(isolated_step, label_smoothing=config.label_smoothing)

    def callbacks(self, config: SpeechConfig) -> list:
        monitor, mode = config.monitor
        return keep_callbacks(monitor, mode, config.keep, config.patience)

    def score(self, model: nn.Module, data: ScoreData) -> dict[str, Any]:
        return score(model, data)

    def eval_data(
        self, predictor: SpeechPredictor, path: str | None, split: str | None
    ) -> ScoreData:
        """``split`` (``val``, default, or ``test``: FSDD indices 0-4) of the recordings at
        ``path`` (``None``: the data the model trained on); connected utterances are
        generated from them with the config's validation seed."""
        split = split or "val"
        if split not in ("val", "test"):
            raise ValueError(f"split must be 'val' or 'test', got {split!r}")
        config = predictor.config
        source = path if path is not None else (config.data.path or SAMPLE)
        items, floors = eval_items(config, source, split)
        return make_score_data(config, split, source, items, predictor.stats, floors)

    def load(self, model_dir: str | Path, device: torch.device | None = None) -> Predictor:
        config, artifacts = read_config(model_dir, self, require=("labels",))
        if config.features.needs_stats and "feature_stats" not in artifacts:
            raise ValueError(
                f"{model_dir}/config.json: global normalisation without "
                '"feature_stats" in its artifacts'
            )
        model = load_model(lambda: build_model(config), model_dir)
        return SpeechPredictor(self.name, config, model, artifacts, model_dir, device)

    def summary(self, results: dict[str, Any]) -> str:
        if "wer" in results:
            what = f"validation WER {results['wer']:.4f} on {results['n']} connected utterances"
            floors = results.get("noise_floors", {})
            if floors:
                what += (
                    " ("
                    + ", ".join(f"{v['wer']:.4f} at noise {name}" for name, v in floors.items())
                    + ")"
                )
        else:
            what = f"validation accuracy {results['accuracy']:.4f} on {results['n']} recordings"
        return (
            f"{format_report(results)}\n{what}, {results['steps']} steps in {results['seconds']} s"
        )


class SpeechPredictor(Predictor):
    """Transcripts of WAV files: ``predict(paths)`` -> ``{"transcript", "confidence"}``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stats = _stats(self.artifacts)
        self.featurizer = Featurizer(self.config.features, self.stats, self.config.ctc)

    @property
    def sample_rate(self) -> int:
        """The rate (Hz) the model reads audio at."""
        return self.config.features.sample_rate

    def read(self, path: str | Path) -> np.ndarray:
        return read_wav(path, self.sample_rate)

    @torch.no_grad()
    def transcribe_audio(self, audio: np.ndarray, name: str = "audio") -> dict[str, Any]:
        """The transcript of samples (S,) at the model's rate; all-silence gives an empty
        transcript and a warning."""
        if is_silent(audio):
            warnings.warn(f"{name} is silent (peak below -60 dBFS): empty transcript", stacklevel=2)
            return {"transcript": "", "confidence": 0.0}
        batch = self.featurizer.batch([Item(audio, (0,), "", name)])
        batch = Batch(batch.feats.to(self.device), *batch[1:])
        digits, confidence = predict_batch(
            self.model, batch, self.config.ctc, self.config.decode.beam_width
        )[0]
        return {"transcript": transcript(digits), "confidence": round(confidence, 6)}

    def predict(self, inputs: list[str]) -> list[dict[str, Any]]:
        if not inputs:
            raise ValueError("no WAV file to transcribe")
        return [self.transcribe_audio(self.read(p), str(p)) for p in inputs]

    def format_output(self, item: str, output: dict[str, Any]) -> str:
        return f"{item}\t{output['transcript']}"

    def check_input(self, item: Any) -> None:
        # predict reads file paths: over HTTP the audio itself comes to /transcribe
        raise InputError(
            "a speech model reads WAV audio: POST the file's bytes to /v1/models/{name}/transcribe"
        )

    def check_streamable(self) -> None:
        """Raise a ValueError unless this model can run chunk by chunk: a unidirectional CTC
        model whose features look at no whole utterance (no per-utterance normalisation, no
        trimming of the ends)."""
        if self.config.features.whole_utterance:
            raise ValueError(
                f"{self.model_dir} normalises each utterance as a whole; streaming "
                "needs features.normalize global or none"
            )
        if self.config.features.trim_db:
            raise ValueError(
                f"{self.model_dir} trims each utterance's ends (features.trim_db); "
                "streaming needs features.trim_db 0"
            )
        self.model.check_streamable()

    def open_stream(self) -> SpeechStream:
        """A stream of samples read chunk by chunk (:class:`~lstmkit.tasks.speech.stream.
        SpeechStream`); refused (``InputError``) unless :meth:`check_streamable`."""
        return SpeechStream.open(self)

    def stream(self, audio: np.ndarray, chunk_ms: float) -> Iterator[Tensor]:
        """CTC log-probabilities (T', C+1) of ``audio`` fed ``chunk_ms`` at a time, the LSTM
        state carried from chunk to chunk (:meth:`open_stream`'s stream)."""
        self.check_streamable()
        chunk = max(1, int(round(self.config.features.sample_rate * chunk_ms / 1000)))
        stream = SpeechStream.open(self)
        for start in range(0, max(audio.size, 1), chunk):
            stream, outputs = stream.advance(audio[start : start + chunk])
            yield from outputs
        _, outputs = stream.advance(np.zeros(0, np.float32), final=True)
        yield from outputs

    def transcribe_stream(
        self, audio: np.ndarray, chunk_ms: float, name: str = "audio"
    ) -> dict[str, Any]:
        """:meth:`transcribe_audio` through :meth:`stream` (decoded at the end)."""
        if is_silent(audio):
            warnings.warn(f"{name} is silent (peak below -60 dBFS): empty transcript", stacklevel=2)
            return {"transcript": "", "confidence": 0.0}
        log_probs = torch.cat(list(self.stream(audio, chunk_ms)))
        digits, confidence = ctc_decode(log_probs, self.config.decode.beam_width)
        return {"transcript": transcript(digits), "confidence": round(confidence, 6)}


TASK = SpeechTask()
