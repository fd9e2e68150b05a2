"""IMDB sentiment: reviews -> tokenizer -> LSTM classifier -> trainer -> model directory.

``train`` reads the labelled training reviews (the canonical ``aclImdb`` layout, folder or
archive; by default the sample bundled with lstmkit), carves a seeded, stratified
validation split out of them (every decision is taken on it), trains a tokenizer on the
rest, and fits a :class:`SentimentClassifier` with the :class:`lstmkit.train.Trainer`
(early stopping on validation accuracy, the best epoch's weights kept). With
``model.pretrained`` the encoder is a trained language model's (ULMFiT, Howard & Ruder
2018): its tokenizer, discriminative learning rates, gradual unfreezing (one epoch per
stage, then everything) and the slanted triangular schedule.

Reviews longer than ``data.max_len`` tokens keep their head and tail
(:func:`lstmkit.data.batching.truncate`); the count is logged. Metrics: accuracy,
precision/recall/F1 (scikit-learn's ``classification_report``), the confusion matrix and
ROC-AUC, written to ``metrics.json`` and ``results.json``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from sklearn.metrics import classification_report, confusion_matrix, roc_auc_score
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from lstmkit.data.batching import BucketBatchSampler, pad_batch, truncate
from lstmkit.data.imdb import clean_text, load_imdb, train_val_split
from lstmkit.data.tokenizer import Tokenizer
from lstmkit.tasks.sentiment.model import (
    LMEncoder,
    RecurrentEncoder,
    SentimentClassifier,
    SentimentModelConfig,
)
from lstmkit.train import (
    EarlyStopping,
    ModelCheckpoint,
    StepOutput,
    TrainConfig,
    Trainer,
    from_dict,
    to_dict,
)
from lstmkit.train.checkpoint import (
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    load_weights,
    read_json,
    read_run_config,
    write_json,
)
from lstmkit.train.optim import discriminative_groups

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "aclImdb_sample.tar.gz"
LABELS = ("neg", "pos")


@dataclass
class SentimentDataConfig:
    """The reviews, the validation split, the tokenizer and the batches.

    Args:
        path: an ``aclImdb`` folder, a folder holding it, or an archive; ``None`` reads the
            600-review sample bundled with lstmkit. Default: ``None``
        val_size: reviews held out (stratified) from train for validation. Default: 100
        split_seed: seeds the validation split. Default: 0
        tokenizer: ``word`` or ``bpe`` (a pretrained encoder brings its own). Default: word
        vocab_size, min_frequency: the tokenizer's vocabulary bounds. Default: 20000, 2
        max_len: longer reviews keep their first quarter and the rest from the end.
            Default: 256
        batch_size, eval_batch_size: reviews per batch (bucketed by length). Default: 32, 64
    """

    path: str | None = None
    val_size: int = 100
    split_seed: int = 0
    tokenizer: str = "word"
    vocab_size: int = 20000
    min_frequency: int = 2
    max_len: int = 256
    batch_size: int = 32
    eval_batch_size: int = 64

    def __post_init__(self) -> None:
        if self.tokenizer not in ("word", "bpe"):
            raise ValueError(f"data.tokenizer must be word or bpe; got {self.tokenizer!r}")
        for name in ("val_size", "vocab_size", "min_frequency", "max_len", "batch_size",
                     "eval_batch_size"):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ValueError(f"data.{name} must be positive, got {getattr(self, name)!r}")


@dataclass
class FinetuneConfig:
    """ULMFiT's fine-tuning of a pretrained encoder: ``lr_decay`` between layer groups
    (discriminative learning rates) and gradual unfreezing, one epoch per stage, from the
    head down, before the last stage trains everything for ``train.epochs``."""

    lr_decay: float = 2.6
    gradual_unfreezing: bool = True

    def __post_init__(self) -> None:
        if self.lr_decay < 1:
            raise ValueError(f"finetune.lr_decay must be >= 1, got {self.lr_decay!r}")


@dataclass
class SentimentConfig:
    """The whole run: ``data``, ``model``, ``train``, ``finetune`` and ``patience`` (epochs
    without a better validation accuracy before early stopping)."""

    data: SentimentDataConfig = field(default_factory=SentimentDataConfig)
    model: SentimentModelConfig = field(default_factory=SentimentModelConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            lr=3e-3, epochs=6, monitor="val_accuracy", mode="max", schedule="cosine"
        )
    )
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    patience: int = 3

    def __post_init__(self) -> None:
        if self.patience <= 0:
            raise ValueError(f"patience must be positive, got {self.patience!r}")


def load_config(data: dict[str, Any] | None = None) -> SentimentConfig:
    return from_dict(SentimentConfig, data)


class Batch(NamedTuple):
    """``ids`` (L, N) padded token ids, ``lengths`` (N,), ``labels`` (N,)."""

    ids: Tensor
    lengths: Tensor
    labels: Tensor


class Encoded(NamedTuple):
    """A split as token ids: ``ids`` per review, ``labels``, and how many were truncated."""

    ids: list[list[int]]
    labels: list[int]
    truncated: int


def encode_reviews(
    tokenizer: Tokenizer, texts: list[str], labels: list[int], max_len: int
) -> Encoded:
    ids, truncated = [], 0
    for row in tokenizer.encode_batch(texts):
        truncated += len(row) > max_len
        ids.append(truncate(row, max_len) or [tokenizer.unk_id])
    return Encoded(ids, labels, truncated)


def loader(data: Encoded, batch_size: int, shuffle: bool, seed: int, pad_id: int) -> DataLoader:
    """Bucketed batches (reshuffled per epoch with ``shuffle``), time-major."""

    def collate(indices: list[int]) -> Batch:
        ids, lengths = pad_batch([data.ids[i] for i in indices], pad_id)
        return Batch(ids.t().contiguous(), lengths, torch.tensor([data.labels[i] for i in indices]))

    sampler = BucketBatchSampler([len(x) for x in data.ids], batch_size, shuffle=shuffle, seed=seed)
    return DataLoader(list(range(len(data.ids))), batch_sampler=sampler, collate_fn=collate)


def _to(batch: Batch, device: torch.device) -> Batch:
    return Batch(batch.ids.to(device), batch.lengths, batch.labels.to(device))


def sentiment_step(model: nn.Module, batch: Batch, state: Any = None) -> StepOutput:
    batch = _to(batch, next(model.parameters()).device)
    logits = model(batch.ids, batch.lengths)
    loss = F.cross_entropy(logits.float(), batch.labels)
    accuracy = (logits.argmax(-1) == batch.labels).float().mean()
    return StepOutput(loss, batch.labels.numel(), {"accuracy": float(accuracy)})


def predict_probs(model: nn.Module, batch: Batch) -> Tensor:
    batch = _to(batch, next(model.parameters()).device)
    return model(batch.ids, batch.lengths).float().softmax(-1).cpu()


def build_model(config: SentimentConfig, vocab_size: int, pad_id: int) -> SentimentClassifier:
    m = config.model
    if m.pretrained is None:
        return SentimentClassifier(RecurrentEncoder(vocab_size, m, pad_id), m)
    from lstmkit.tasks.lm.task import load_model as load_lm

    lm, _, _ = load_lm(m.pretrained)
    return SentimentClassifier(LMEncoder(lm.train(), m.chunk_len, m.grad_chunks), m)


def scores(probs: Tensor, labels: list[int]) -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1, per-class report, confusion matrix, ROC-AUC."""
    pred = probs.argmax(-1).tolist()
    report = classification_report(
        labels, pred, labels=[0, 1], target_names=list(LABELS), output_dict=True, zero_division=0
    )
    return {
        "accuracy": report["accuracy"],
        "precision": report["macro avg"]["precision"],
        "recall": report["macro avg"]["recall"],
        "f1": report["macro avg"]["f1-score"],
        "roc_auc": float(roc_auc_score(labels, probs[:, 1].tolist())),
        "confusion_matrix": confusion_matrix(labels, pred, labels=[0, 1]).tolist(),
        "report": {k: v for k, v in report.items() if k != "accuracy"},
        "n": len(labels),
    }


def score_split(trainer: Trainer, model: nn.Module, batches: DataLoader, data: Encoded) -> dict:
    """:func:`scores` of ``model`` on the (unshuffled) ``batches`` of ``data``."""
    probs = torch.cat(trainer.predict(model, batches))
    order = [i for batch in batches.batch_sampler for i in batch]  # the batches' review order
    return scores(probs, [data.labels[i] for i in order])


def format_report(result: dict[str, Any]) -> str:
    """scikit-learn's text report plus the confusion matrix and ROC-AUC."""
    lines = [f"{'':>12} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}"]
    for name in (*LABELS, "macro avg", "weighted avg"):
        r = result["report"][name]
        lines.append(f"{name:>12} {r['precision']:9.4f} {r['recall']:9.4f} "
                     f"{r['f1-score']:9.4f} {int(r['support']):9d}")  # fmt: skip
    (tn, fp), (fn, tp) = result["confusion_matrix"]
    lines += [
        f"{'accuracy':>12} {result['accuracy']:29.4f} {result['n']:9d}",
        f"confusion matrix (rows true neg/pos, columns predicted): [[{tn}, {fp}], [{fn}, {tp}]]",
        f"ROC-AUC {result['roc_auc']:.4f}",
    ]
    return "\n".join(lines)


def _splits(data: SentimentDataConfig):
    reviews = load_imdb(data.path or SAMPLE, "train")
    train, val = train_val_split(list(reviews), data.val_size, seed=data.split_seed)
    return reviews, train, val


def _fit_stages(config, model, tokenizer, train_data, val_data, out_dir, resume):
    """One fit from scratch, or ULMFiT's stages for a pretrained encoder; returns the
    trainer of the last stage."""
    groups = model.layer_groups()
    run_config = {"task": "sentiment", "vocab_size": tokenizer.vocab_size, **to_dict(config)}
    if config.model.pretrained is not None:  # the encoder's architecture, so the directory
        lm = read_json(Path(config.model.pretrained) / CONFIG_FILE)  # stands on its own
        run_config["encoder"] = lm["model"]
    # the best epoch's weights go to model.safetensors as they happen, so that a resumed run
    # keeps them (early stopping's in-memory copy of them is not part of the trainer state)
    callbacks = [
        EarlyStopping("val_accuracy", config.patience, restore_best_weights=True),
        ModelCheckpoint("val_accuracy", "max", save_best_only=True),
    ]
    if config.model.pretrained is None:
        trainer = Trainer(config.train, sentiment_step, predict_fn=predict_probs,
                          callbacks=callbacks, out_dir=out_dir, run_config=run_config)  # fmt: skip
        trainer.fit(model, train_data, val_data, resume=resume)
        return trainer
    n_stages = len(groups) if config.finetune.gradual_unfreezing else 1
    for stage in range(n_stages):
        last = stage == n_stages - 1
        stage_dir = out_dir if last else out_dir / "stages" / str(stage + 1)
        trainable = groups if last else groups[len(groups) - 1 - stage :]
        for p in model.parameters():
            p.requires_grad_(False)
        for g in trainable:
            g.requires_grad_(True)
        cfg = config.train if last else dataclasses.replace(config.train, epochs=1)
        done = (stage_dir / METRICS_FILE).is_file() and not last
        if done:  # a resumed run skips the stages it finished
            load_weights(model, stage_dir / MODEL_FILE)
            continue
        trainer = Trainer(cfg, sentiment_step, predict_fn=predict_probs,
                          callbacks=callbacks if last else [], out_dir=stage_dir,
                          run_config=run_config)  # fmt: skip
        lrs = discriminative_groups(groups, cfg.lr, config.finetune.lr_decay)
        param_groups = [g for g, m in zip(lrs, groups) if m in trainable]
        has_state = (stage_dir / "trainer_state").is_dir()
        trainer.fit(model, train_data, val_data, param_groups=param_groups,
                    resume=resume and has_state)  # fmt: skip
    return trainer


def train(config: SentimentConfig, out_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train; write the model directory (weights of the best epoch, tokenizer, metrics) and
    ``results.json`` with the validation scores and the wall time."""
    start = time.monotonic()
    out_dir, data = Path(out_dir), config.data
    reviews, train_reviews, val_reviews = _splits(data)
    if reviews.skipped:
        print(f"skipped {len(reviews.skipped)} empty reviews, e.g. {reviews.skipped[0]}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.model.pretrained is not None:
        tokenizer = Tokenizer.load(config.model.pretrained)
    elif resume and (out_dir / "tokenizer.json").is_file():
        tokenizer = Tokenizer.load(out_dir)
    else:
        tokenizer = Tokenizer.train(
            [r.text for r in train_reviews], data.tokenizer, data.vocab_size, data.min_frequency
        )
    tokenizer.save(out_dir)
    train_enc = encode_reviews(tokenizer, [r.text for r in train_reviews],
                               [r.label for r in train_reviews], data.max_len)  # fmt: skip
    val_enc = encode_reviews(tokenizer, [r.text for r in val_reviews],
                             [r.label for r in val_reviews], data.max_len)  # fmt: skip
    print(f"{len(train_enc.ids)} training and {len(val_enc.ids)} validation reviews; "
          f"{train_enc.truncated + val_enc.truncated} longer than {data.max_len} tokens "
          "kept head + tail")  # fmt: skip
    torch.manual_seed(config.train.seed)
    model = build_model(config, tokenizer.vocab_size, tokenizer.pad_id)
    model.to(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    seed = config.train.seed
    train_data = loader(train_enc, data.batch_size, True, seed, tokenizer.pad_id)
    val_data = loader(val_enc, data.eval_batch_size, False, seed, tokenizer.pad_id)
    trainer = _fit_stages(config, model, tokenizer, train_data, val_data, out_dir, resume)
    load_weights(model, out_dir / MODEL_FILE)  # the best epoch's, also after a resume
    result = score_split(trainer, model, val_data, val_enc)
    results = {
        "task": "sentiment",
        "split": "val",
        **{k: result[k] for k in ("accuracy", "precision", "recall", "f1", "roc_auc", "n")},
        "confusion_matrix": result["confusion_matrix"],
        "train_reviews": len(train_enc.ids),
        "steps": trainer.global_step,
        "seconds": round(time.monotonic() - start, 1),
        "device": str(next(model.parameters()).device),
    }
    if trainer.is_main:
        write_json(out_dir / "results.json", {**results, "report": result["report"]})
        metrics = read_json(out_dir / METRICS_FILE)
        val = {f"val_{k}": v for k, v in results.items() if k not in ("task", "split")}
        write_json(out_dir / METRICS_FILE, {**metrics, **val})
    print(format_report(result))
    return results


def load_model(model_dir: str | Path) -> tuple[SentimentClassifier, Tokenizer, SentimentConfig]:
    """Rebuild a trained classifier, its tokenizer and config from its model directory."""
    model_dir = Path(model_dir)
    raw = read_run_config(model_dir, "sentiment", "a sentiment model")
    config = load_config(
        {k: v for k, v in raw.items() if k not in ("task", "vocab_size", "encoder")}
    )
    tokenizer = Tokenizer.load(model_dir)
    m = config.model
    if m.pretrained is None:
        encoder: nn.Module = RecurrentEncoder(raw["vocab_size"], m, tokenizer.pad_id)
    else:  # the language model's architecture, the weights from this directory
        from lstmkit.tasks.lm.model import LanguageModel, LMModelConfig

        lm = LanguageModel(raw["vocab_size"], from_dict(LMModelConfig, raw["encoder"], "encoder"))
        encoder = LMEncoder(lm, m.chunk_len, m.grad_chunks)
    model = SentimentClassifier(encoder, m)
    load_weights(model, model_dir / MODEL_FILE)
    return model.eval(), tokenizer, config


def evaluate(model_dir: str | Path, path: str | Path | None, split: str) -> dict[str, Any]:
    """Scores on ``val`` (the run's own held-out reviews of ``path``'s train split) or
    ``test`` (``path``'s test split). ``path`` ``None``: the data the model trained on."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    model, tokenizer, config = load_model(model_dir)
    data = config.data
    source = path if path is not None else (data.path or SAMPLE)
    if split == "val":
        reviews = train_val_split(list(load_imdb(source, "train")), data.val_size,
                                  seed=data.split_seed)[1]  # fmt: skip
    else:
        reviews = list(load_imdb(source, "test"))
    enc = encode_reviews(tokenizer, [r.text for r in reviews], [r.label for r in reviews],
                         data.max_len)  # fmt: skip
    batches = loader(enc, data.eval_batch_size, False, 0, tokenizer.pad_id)
    trainer = Trainer(config.train, sentiment_step, predict_fn=predict_probs)
    result = score_split(trainer, model, batches, enc)
    return {"split": split, "data": str(source), **result}


def predict(model_dir: str | Path, texts: list[str]) -> list[dict[str, Any]]:
    """Label and probability of each text (cleaned like the training reviews)."""
    model, tokenizer, config = load_model(model_dir)
    if not texts:
        raise ValueError("no text to classify")
    cleaned = [clean_text(t) for t in texts]
    empty = [i for i, t in enumerate(cleaned) if not t]
    if empty:
        raise ValueError(f"input {empty[0] + 1} is empty")
    enc = encode_reviews(tokenizer, cleaned, [0] * len(texts), config.data.max_len)
    out = []
    with torch.no_grad():
        for ids in enc.ids:
            ids_t = torch.tensor(ids).unsqueeze(1)  # (L, 1)
            probs = model(ids_t, torch.tensor([len(ids)])).softmax(-1)[0]
            k = int(probs.argmax())
            out.append({"label": LABELS[k], "probability": float(probs[k]),
                        "positive": float(probs[1])})  # fmt: skip
    return out


def gate_inputs(model_dir: str | Path, text: str) -> tuple[nn.Module, Tensor, list[str]]:
    """For a gate heat-map of ``text``: the encoder's LSTM, the embedded tokens (L, E) it
    reads and the tokens (all of them: the heat-map is not truncated to ``max_len``)."""
    model, tokenizer, _ = load_model(model_dir)
    if not isinstance(model.encoder, RecurrentEncoder):
        raise ValueError(
            f"{model_dir} has a language-model encoder; gate heat-maps read the LSTM of a "
            "classifier trained from scratch"
        )
    cleaned = clean_text(text)
    if not cleaned:
        raise ValueError("the text is empty")
    encoding = tokenizer.hf.encode(cleaned)
    with torch.no_grad():
        x = model.encoder.embedding(torch.tensor(encoding.ids))  # (L, E)
    return model.encoder.rnn, x, list(encoding.tokens)
