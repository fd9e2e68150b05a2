"""The language-modelling pipeline: text -> tokenizer -> LSTM LM -> trainer -> model directory.

``train`` reads the text (a UTF-8 file or folder, or IMDB's reviews), holds out the last
``data.val_fraction`` of it for validation (or, for IMDB, the sentiment task's seeded
validation reviews), trains a tokenizer on the rest, and fits a :class:`LanguageModel` by
truncated BPTT (the hidden state carried across consecutive windows, detached) with the
:class:`lstmkit.train.Trainer`. The model directory keeps the best epoch's weights (by
validation loss) and gets ``tokenizer.json`` and ``results.json`` (:func:`evaluate_ids` on
the validation text).

Reported numbers follow the papers: the mean cross-entropy in nats per token over every
next-token prediction of the text, read as continuous streams with the state carried
through (:func:`evaluate_ids`); nats per character divide the same total by the number of
characters predicted; perplexity is ``exp`` of nats per token, bits per character nats per
character / ln 2.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from lstmkit.data.bptt import BPTTBatches
from lstmkit.data.text import read_text
from lstmkit.data.tokenizer import Tokenizer
from lstmkit.tasks.lm.model import LanguageModel, LMModelConfig
from lstmkit.train import ModelCheckpoint, StepOutput, TrainConfig, Trainer, from_dict, to_dict
from lstmkit.train.checkpoint import (
    METRICS_FILE,
    MODEL_FILE,
    load_weights,
    read_json,
    read_run_config,
    write_json,
)

SOURCES = ("text", "imdb")
TOKENIZERS = ("char", "bpe")


@dataclass
class LMDataConfig:
    """Where the text comes from and how it is cut into batches.

    Args:
        path: a UTF-8 text file or folder (``source: text``), or IMDB's ``aclImdb``
            folder or archive (``source: imdb``; ``None`` downloads it). Default: ``None``
        source: ``text`` or ``imdb`` (train + unsup reviews; validation = the sentiment
            task's held-out reviews). Default: ``text``
        tokenizer: ``char`` or ``bpe``. Default: ``char``
        vocab_size: BPE vocabulary size. Default: 8000
        val_fraction: the last fraction of the text held out for validation. Default: 0.1
        val_size: IMDB reviews held out (as the sentiment task does). Default: 2500
        batch_size: parallel streams N in training. Default: 64
        bptt: window length (the mean with ``variable_bptt``). Default: 128
        variable_bptt: AWD-LSTM's random window lengths. Default: ``True``
        eval_batch_size: parallel streams when evaluating. Default: 16
    """

    path: str | None = None
    source: str = "text"
    tokenizer: str = "char"
    vocab_size: int = 8000
    val_fraction: float = 0.1
    val_size: int = 2500
    batch_size: int = 64
    bptt: int = 128
    variable_bptt: bool = True
    eval_batch_size: int = 16

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(
                f"data.source must be one of {', '.join(SOURCES)}; got {self.source!r}"
            )
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(
                f"data.tokenizer must be one of {', '.join(TOKENIZERS)}; got {self.tokenizer!r}"
            )
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"data.val_fraction must be in (0, 1), got {self.val_fraction!r}")
        for name in ("vocab_size", "val_size", "batch_size", "bptt", "eval_batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"data.{name} must be positive, got {getattr(self, name)!r}")


@dataclass
class LMConfig:
    """The whole run: ``data``, ``model``, ``train``, and AWD-LSTM's activation
    regularisation ``ar`` (on the dropped last-layer output) and temporal activation
    regularisation ``tar`` (on its raw step-to-step change)."""

    data: LMDataConfig = field(default_factory=LMDataConfig)
    model: LMModelConfig = field(default_factory=LMModelConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(lr=2e-3, epochs=10, clip_norm=0.25)
    )
    ar: float = 2.0
    tar: float = 1.0

    def __post_init__(self) -> None:
        if self.ar < 0 or self.tar < 0:
            raise ValueError(f"ar and tar must be >= 0, got {self.ar!r}, {self.tar!r}")


def load_config(data: dict[str, Any] | None = None) -> LMConfig:
    return from_dict(LMConfig, data)


def make_step(ar: float = 0.0, tar: float = 0.0):
    """The trainer's step: next-token cross-entropy (plus AR/TAR in training)."""

    def lm_step(model: Any, batch: Any, state: Any = None) -> StepOutput:
        logits, state, (raw, dropped) = model(batch.x, state, return_hidden=True)
        nll = F.cross_entropy(logits.flatten(0, 1).float(), batch.y.flatten())
        loss = nll
        if model.training and ar:
            loss = loss + ar * dropped.float().pow(2).mean()
        if model.training and tar and raw.size(0) > 1:
            loss = loss + tar * (raw[1:] - raw[:-1]).float().pow(2).mean()
        return StepOutput(loss, batch.y.numel(), {"nll": float(nll.detach())}, state)

    return lm_step


def load_texts(data: LMDataConfig) -> tuple[list[str], str]:
    """The training texts and the validation text of the configured source."""
    if data.source == "imdb":
        from lstmkit.data.imdb import load_imdb, train_val_split

        labelled = load_imdb(data.path, "train")
        train, val = train_val_split(list(labelled), data.val_size, seed=0)
        unsup = load_imdb(data.path, "unsup")
        texts = [r.text for r in train] + [r.text for r in unsup]
        return texts, "\n".join(r.text for r in val)
    if data.path is None:
        raise ValueError("data.path is required: a UTF-8 text file or folder (--data PATH)")
    text = read_text(data.path)
    cut = len(text) - int(len(text) * data.val_fraction)
    if cut <= 0 or cut >= len(text):
        raise ValueError(f"{data.path}: {len(text)} characters are too few to hold out a part")
    return [text[:cut]], text[cut:]


def encode(tokenizer: Tokenizer, texts: list[str]) -> Tensor:
    """All ``texts`` as one stream of ids (1-D); texts are joined by a newline."""
    if len(texts) == 1:
        ids = tokenizer.encode(texts[0])
    else:
        sep = tokenizer.encode("\n")
        ids = []
        for chunk in tokenizer.encode_batch(texts):
            ids += chunk + sep
    return torch.tensor(ids, dtype=torch.long)


@torch.no_grad()
def evaluate_ids(
    model: LanguageModel, ids: Tensor, n_chars: int, batch_size: int = 16, bptt: int = 256
) -> dict[str, float]:
    """Cross-entropy of every next-token prediction in ``ids`` (1-D), the state carried.

    The ``len(ids) - 1`` predictions are cut into ``batch_size`` contiguous streams (the
    last one shorter, its padding masked), each read from start to end in windows of
    ``bptt`` with the state carried, so every token but the first of each stream sees its
    whole stream as context; ``batch_size=1`` reads the text as one stream. ``n_chars`` is
    the number of characters the predicted tokens spell (for per-character numbers).
    """
    if ids.dim() != 1 or ids.numel() < 2:
        raise ValueError(f"need a 1-D stream of at least 2 tokens, got shape {tuple(ids.shape)}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n = ids.numel() - 1
    steps = math.ceil(n / batch_size)
    x = torch.zeros(batch_size * steps, dtype=torch.long)
    y = torch.full((batch_size * steps,), -100, dtype=torch.long)  # -100: ignored padding
    x[:n], y[:n] = ids[:-1], ids[1:]
    x = x.view(batch_size, steps).t().to(device)  # (S, N): column k is stream k
    y = y.view(batch_size, steps).t().to(device)
    total, state = 0.0, None
    for start in range(0, steps, bptt):
        logits, state = model(x[start : start + bptt], state)
        total += F.cross_entropy(
            logits.flatten(0, 1).float(), y[start : start + bptt].flatten(), reduction="sum"
        ).item()
    model.train(was_training)
    per_token, per_char = total / n, total / max(n_chars, 1)
    return {
        "nats_per_token": per_token,
        "nats_per_char": per_char,
        "perplexity": math.exp(per_token),
        "bits_per_char": per_char / math.log(2),
        "tokens": n,
        "chars": n_chars,
    }


def evaluate_text(
    model: LanguageModel, tokenizer: Tokenizer, text: str, batch_size: int = 16
) -> dict[str, float]:
    """:func:`evaluate_ids` on ``text``; the characters counted are those after the first
    token (which nothing predicts)."""
    ids = encode(tokenizer, [text])
    if ids.numel() < 2:
        raise ValueError(f"the text encodes to {ids.numel()} token(s); at least 2 are needed")
    n_chars = len(text) - len(tokenizer.decode(ids[:1].tolist()))
    return evaluate_ids(model, ids, n_chars, batch_size)


def train(config: LMConfig, out_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train the configured LM; write the model directory and ``results.json`` (validation
    numbers of the best epoch, with the wall time)."""
    start = time.monotonic()
    out_dir, data = Path(out_dir), config.data
    texts, val_text = load_texts(data)
    if resume and (out_dir / "tokenizer.json").is_file():
        tokenizer = Tokenizer.load(out_dir)  # the ids the saved weights were trained on
    else:
        tokenizer = Tokenizer.train(texts, data.tokenizer, data.vocab_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(out_dir)
    train_ids, val_ids = encode(tokenizer, texts), encode(tokenizer, [val_text])
    seed = config.train.seed
    torch.manual_seed(seed)
    model = LanguageModel(tokenizer.vocab_size, config.model)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    train_batches = BPTTBatches(
        train_ids.to(device), data.batch_size, data.bptt, data.variable_bptt, seed
    )
    val_batches = BPTTBatches(val_ids.to(device), data.eval_batch_size, data.bptt)
    trainer = Trainer(
        config.train, make_step(config.ar, config.tar), out_dir=out_dir,
        callbacks=[ModelCheckpoint("val_loss", save_best_only=True)],
        run_config={"task": "lm", "vocab_size": tokenizer.vocab_size, **to_dict(config)},
    )  # fmt: skip
    trainer.fit(model, train_batches, val_batches, resume=resume)
    train_seconds = time.monotonic() - start
    load_weights(model, out_dir / MODEL_FILE)  # the best epoch's
    val = evaluate_text(model, tokenizer, val_text, data.eval_batch_size)
    results = {
        "task": "lm",
        "split": "val",
        **{f"val_{k}": v for k, v in val.items()},
        "train_tokens": train_ids.numel(),
        "vocab_size": tokenizer.vocab_size,
        "steps": trainer.global_step,
        "train_tokens_seen": trainer.global_step * data.batch_size * data.bptt,
        "seconds": round(train_seconds, 1),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
    }
    if trainer.is_main:
        write_json(out_dir / "results.json", results)
        metrics = read_json(out_dir / METRICS_FILE)
        write_json(out_dir / METRICS_FILE, {**metrics, **results})
    return results


def load_model(model_dir: str | Path) -> tuple[LanguageModel, Tokenizer, LMConfig]:
    """Rebuild a trained LM, its tokenizer and config from its model directory."""
    model_dir = Path(model_dir)
    raw = read_run_config(model_dir, "lm", "a language model")
    config = load_config({k: v for k, v in raw.items() if k not in ("task", "vocab_size")})
    tokenizer = Tokenizer.load(model_dir)
    model = LanguageModel(raw["vocab_size"], config.model)
    load_weights(model, model_dir / MODEL_FILE)
    return model.eval(), tokenizer, config


def evaluate(
    model_dir: str | Path, path: str | Path, split: str | None = None, batch_size: int = 16
) -> dict[str, Any]:
    """Evaluate a saved LM on a text file: the whole file (``split`` ``None`` or ``test``:
    a held-out file), or ``val``: the last ``val_fraction`` of it, as held out in training."""
    if split not in (None, "val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    model, tokenizer, config = load_model(model_dir)
    text = read_text(path)
    if split == "val":
        text = text[len(text) - int(len(text) * config.data.val_fraction) :]
    unknown = tokenizer.unknown(text)
    if unknown:
        print(f"note: {len(unknown)} characters unseen in training count as <unk>: {unknown[:10]}")
    results = evaluate_text(model, tokenizer, text, batch_size)
    return {"data": str(path), "split": split or "test", **results}
