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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F

from lstmkit.data.bptt import BPTTBatch, BPTTBatches
from lstmkit.data.text import read_text
from lstmkit.data.tokenizer import Tokenizer
from lstmkit.models import LanguageModel, LMModelConfig
from lstmkit.tasks.base import (
    Built,
    Predictor,
    RunContext,
    load_model,
    load_tokenizer,
    read_config,
)
from lstmkit.tasks.lm.card import CARD
from lstmkit.tasks.lm.generate import generate
from lstmkit.tasks.lm.stream import LMStream
from lstmkit.train import StepOutput, TrainConfig, from_dict, keep_callbacks
from lstmkit.train.config import check_positive
from lstmkit.train.distributed import ShardedBatches

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
        split: how IMDB's are held out: by ``movie`` or ``random`` (as the sentiment run
            this LM pretrains for). Default: ``movie``
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
    split: str = "movie"
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
        if self.split not in ("movie", "random"):
            raise ValueError(f"data.split must be movie or random; got {self.split!r}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"data.val_fraction must be in (0, 1), got {self.val_fraction!r}")
        check_positive(
            self, "data", ("vocab_size", "val_size", "batch_size", "bptt", "eval_batch_size")
        )


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
        device = next(model.parameters()).device
        x, y = batch.x.to(device), batch.y.to(device)
        logits, state, (raw, dropped) = model(x, state, return_hidden=True)
        nll = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        loss = nll
        if model.training and ar:
            loss = loss + ar * dropped.float().pow(2).mean()
        if model.training and tar and raw.size(0) > 1:
            loss = loss + tar * (raw[1:] - raw[:-1]).float().pow(2).mean()
        return StepOutput(loss, y.numel(), {"nll": float(nll.detach())}, state)

    return lm_step


def load_texts(data: LMDataConfig) -> tuple[list[str], str]:
    """The training texts and the validation text of the configured source."""
    if data.source == "imdb":
        from lstmkit.data.imdb import load_imdb, split_reviews

        labelled = load_imdb(data.path, "train")
        train, val = split_reviews(list(labelled), data.val_size, 0, data.split)
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


def shard(batch: BPTTBatch, rank: int, world: int) -> BPTTBatch:
    """This process's streams (columns rank::world) of a batch; each process carries the
    state of its own streams."""
    return BPTTBatch(batch.x[:, rank::world], batch.y[:, rank::world], batch.scale)


class ScoreData(NamedTuple):
    """A text to score as one stream of ids, the characters its predictions spell, and how
    many parallel streams to read it in."""

    split: str
    source: str
    ids: Tensor
    n_chars: int
    batch_size: int


def score_data(split: str, source: str, tokenizer: Tokenizer, text: str, batch_size: int):
    ids = encode(tokenizer, [text])
    if ids.numel() < 2:
        raise ValueError(f"the text encodes to {ids.numel()} token(s); at least 2 are needed")
    n_chars = len(text) - len(tokenizer.decode(ids[:1].tolist()))
    return ScoreData(split, source, ids, n_chars, batch_size)


class LMTask:
    """Language modelling (see the module docstring)."""

    name = "lm"
    config_class = LMConfig
    card = CARD
    onnx = "lstmkit.tasks.lm.export"  # its OnnxExport, imported when used
    widget = "generate"  # the web page's widget (lstmkit/serve/static)

    def build(self, config: LMConfig, run: RunContext) -> Built:
        data = config.data
        texts, val_text = load_texts(data)
        if run.resume and (run.out_dir / "tokenizer.json").is_file():
            tokenizer = Tokenizer.load(run.out_dir)  # the ids the saved weights were trained on
        else:
            tokenizer = Tokenizer.train(texts, data.tokenizer, data.vocab_size)
        if run.rank == 0:
            tokenizer.save(run.out_dir)
        train_ids, val_ids = encode(tokenizer, texts), encode(tokenizer, [val_text])
        seed = config.train.seed
        model = LanguageModel(tokenizer.vocab_size, config.model)
        train_batches: Any = BPTTBatches(
            train_ids.to(run.device), data.batch_size, data.bptt, data.variable_bptt, seed
        )
        if run.world_size > 1:
            rows = lambda b: b.x.shape[1]  # noqa: E731  (its streams)
            train_batches = ShardedBatches(train_batches, shard, run.rank, run.world_size, rows)
        val_batches = BPTTBatches(val_ids.to(run.device), data.eval_batch_size, data.bptt)
        source = str(data.path) if data.path is not None else data.source
        return Built(
            model,
            train_batches,
            val_batches,
            score_data=score_data("val", source, tokenizer, val_text, data.eval_batch_size),
            artifacts={"vocab_size": tokenizer.vocab_size, "tokenizer": "tokenizer.json"},
            facts={"train_tokens": train_ids.numel(), "vocab_size": tokenizer.vocab_size},
            per_step={"train_tokens_seen": data.batch_size * data.bptt},
        )

    def step_fn(self, config: LMConfig):
        return make_step(config.ar, config.tar)

    def callbacks(self, config: LMConfig) -> list:
        return keep_callbacks("val_loss", "min")

    def score(self, model: LanguageModel, data: ScoreData) -> dict[str, Any]:
        numbers = evaluate_ids(model, data.ids, data.n_chars, data.batch_size)
        return {"split": data.split, "data": data.source, **numbers}

    def eval_data(
        self, predictor: LMPredictor, path: str | None, split: str | None, batch_size: int = 16
    ) -> ScoreData:
        """A text file: the whole file (``split`` ``None`` or ``test``: a held-out file), or
        ``val``: its last ``val_fraction``, as held out in training."""
        if split not in (None, "val", "test"):
            raise ValueError(f"split must be 'val' or 'test', got {split!r}")
        if path is None:
            raise ValueError("lm evaluate needs --data: a UTF-8 text file or folder")
        if batch_size <= 0:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        text = read_text(path)
        if split == "val":
            text = text[len(text) - int(len(text) * predictor.config.data.val_fraction) :]
        unknown = predictor.tokenizer.unknown(text)
        if unknown:
            print(
                f"note: {len(unknown)} characters unseen in training count as <unk>: {unknown[:10]}"
            )
        return score_data(split or "test", str(path), predictor.tokenizer, text, batch_size)

    def load(self, model_dir: str | Path, device: torch.device | None = None) -> LMPredictor:
        config, artifacts = read_config(model_dir, self, require=("vocab_size",))
        tokenizer = load_tokenizer(model_dir, artifacts["vocab_size"])
        model = load_model(lambda: LanguageModel(tokenizer.vocab_size, config.model), model_dir)
        return LMPredictor(
            self.name, config, model, artifacts, model_dir, device, tokenizer=tokenizer
        )

    def summary(self, results: dict[str, Any]) -> str:
        return (
            f"validation: {results['nats_per_char']:.4f} nats/char "
            f"({results['bits_per_char']:.4f} bits/char), perplexity "
            f"{results['perplexity']:.2f} per token, after {results['steps']} steps in "
            f"{results['seconds']} s"
        )


GENERATION = ("max_new", "temperature", "top_k", "top_p", "beam", "length_penalty", "seed")


DEFAULT_NEW = 200  # tokens generated when an input does not say


class LMPredictor(Predictor):
    """Continuations of prompts. Each input is a prompt, or a dict with ``prompt`` and any
    of ``max_new`` (default 200), ``temperature`` (1.0), ``top_k``, ``top_p``, ``beam``,
    ``length_penalty`` and ``seed`` (default 0: the same prompt gives the same text)."""

    def __init__(self, *args: Any, tokenizer: Tokenizer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tokenizer = tokenizer

    def predict(self, inputs: list[Any]) -> list[dict[str, Any]]:
        if not inputs:
            raise ValueError("no prompt to continue")
        out = []
        for k, item in enumerate(inputs):
            options = dict(item) if isinstance(item, dict) else {"prompt": item}
            prompt = options.pop("prompt", None)
            if not isinstance(prompt, str):
                raise ValueError(f"input {k + 1}: the prompt must be a text, got {prompt!r}")
            unknown = sorted(set(options) - set(GENERATION))
            if unknown:
                raise ValueError(
                    f"input {k + 1}: unknown option(s) {', '.join(unknown)}; "
                    f"known: {', '.join(GENERATION)}"
                )
            options = {"max_new": DEFAULT_NEW, "seed": 0, **options}
            max_new = options.pop("max_new")
            text = "".join(generate(self.model, self.tokenizer, prompt, max_new, **options))
            out.append({"prompt": prompt, "text": text})
        return out

    def format_output(self, item: Any, output: dict[str, Any]) -> str:
        return output["prompt"] + output["text"]

    def generation_length(self, item: Any) -> tuple[str, Any]:
        given = item.get("max_new") if isinstance(item, dict) else None
        return "max_new", DEFAULT_NEW if given is None else given

    def generate_tokens(self, prompt: str, max_new: int, **options: Any) -> Iterator[str]:
        """The continuation of ``prompt``, token by token (``temperature``, ``top_k``,
        ``top_p``, ``seed``: :func:`~lstmkit.tasks.lm.generate.generate`'s)."""
        return generate(self.model, self.tokenizer, prompt, max_new, **options)

    def open_stream(self) -> LMStream:
        """A stream of text read chunk by chunk (:class:`~lstmkit.tasks.lm.stream.LMStream`)."""
        return LMStream(self)


TASK = LMTask()
