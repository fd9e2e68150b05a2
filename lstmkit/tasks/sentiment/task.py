"""IMDB sentiment: reviews -> tokenizer -> LSTM classifier -> trainer -> model directory.

``train`` reads the labelled training reviews (the canonical ``aclImdb`` layout, folder or
archive; by default the sample bundled with lstmkit), carves a seeded, stratified
validation split out of them (every decision is taken on it), trains a tokenizer on the
rest, and fits a :class:`SentimentClassifier` with the :class:`lstmkit.train.Trainer`
(early stopping on validation accuracy, the best epoch's weights kept). With
``model.embeddings: word2vec`` the embedding table starts from word2vec vectors of the
training reviews (and ``data.unsup``'s unlabelled ones), learned before training. With
``model.pretrained`` the encoder is a trained language model's (ULMFiT, Howard & Ruder
2018): its tokenizer, discriminative learning rates, gradual unfreezing (one epoch per
stage, then everything) and the slanted triangular schedule.

Reviews longer than ``data.max_len`` tokens keep their head and tail
(:func:`lstmkit.data.batching.truncate`); the count is logged. Metrics: accuracy,
precision/recall/F1 (scikit-learn's ``classification_report``), the confusion matrix and
ROC-AUC, written to ``metrics.json`` and ``results.json``.
"""

from __future__ import annotations

import functools
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
from lstmkit.data.imdb import SPLIT_BY, clean_text, load_imdb, split_reviews
from lstmkit.data.tokenizer import Tokenizer
from lstmkit.data.word_vectors import Word2VecConfig, word2vec_embeddings
from lstmkit.models import LanguageModel, LMModelConfig
from lstmkit.tasks.base import (
    Built,
    Predictor,
    RunContext,
    Stage,
    load_model,
    load_tokenizer,
    read_config,
    read_model_dir,
)
from lstmkit.tasks.sentiment.card import CARD
from lstmkit.tasks.sentiment.model import (
    LMEncoder,
    RecurrentEncoder,
    SentimentClassifier,
    SentimentModelConfig,
)
from lstmkit.train import (
    StepOutput,
    TrainConfig,
    from_dict,
    keep_callbacks,
)
from lstmkit.train.checkpoint import MODEL_FILE, load_weights
from lstmkit.train.config import check_positive
from lstmkit.train.distributed import ShardedBatches
from lstmkit.train.optim import discriminative_groups

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "aclImdb_sample.tar.gz"
LABELS = ("neg", "pos")
MAX_GATE_TOKENS = 2000  # a heat-map wider than this is unreadable and slow to draw


@dataclass
class SentimentDataConfig:
    """The reviews, the validation split, the tokenizer and the batches.

    Args:
        path: an ``aclImdb`` folder, a folder holding it, or an archive; ``None`` reads the
            6,000-review sample bundled with lstmkit. Default: ``None``
        val_size: reviews held out (stratified) from train for validation. Default: 500
        split: ``movie`` (no movie on both sides, as IMDB's test set; needs the
            ``urls_*.txt`` files) or ``random``. Default: ``movie``
        split_seed: seeds the validation split. Default: 0
        tokenizer: ``word`` or ``bpe`` (a pretrained encoder brings its own). Default: word
        vocab_size, min_frequency: the tokenizer's vocabulary bounds. Default: 20000, 2
        max_len: longer reviews keep their first quarter and the rest from the end.
            Default: 200
        batch_size, eval_batch_size: reviews per batch (bucketed by length). Default: 32, 64
        unsup: ``model.embeddings: word2vec`` also learns from the 50,000 unlabelled
            reviews (``train/unsup``, of movies in neither labelled split). Default: False
    """

    path: str | None = None
    val_size: int = 500
    split: str = "movie"
    split_seed: int = 0
    tokenizer: str = "word"
    vocab_size: int = 20000
    min_frequency: int = 2
    max_len: int = 200
    batch_size: int = 32
    eval_batch_size: int = 64
    unsup: bool = False

    def __post_init__(self) -> None:
        if self.split not in SPLIT_BY:
            raise ValueError(f"data.split must be one of {', '.join(SPLIT_BY)}; got {self.split!r}")
        if self.split_seed < 0:
            raise ValueError(f"data.split_seed must be >= 0, got {self.split_seed!r}")
        if self.tokenizer not in ("word", "bpe"):
            raise ValueError(f"data.tokenizer must be word or bpe; got {self.tokenizer!r}")
        check_positive(
            self,
            "data",
            ("val_size", "vocab_size", "min_frequency", "max_len", "batch_size", "eval_batch_size"),
        )


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
    """The whole run: ``data``, ``model``, ``train``, ``finetune``, ``word2vec`` (for
    ``model.embeddings: word2vec``) and ``patience`` (epochs without a better validation
    accuracy before early stopping)."""

    data: SentimentDataConfig = field(default_factory=SentimentDataConfig)
    model: SentimentModelConfig = field(default_factory=SentimentModelConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            lr=3e-3, epochs=6, monitor="val_accuracy", mode="max", schedule="cosine"
        )
    )
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    word2vec: Word2VecConfig = field(default_factory=Word2VecConfig)
    patience: int = 3

    def __post_init__(self) -> None:
        if self.patience <= 0:
            raise ValueError(f"patience must be positive, got {self.patience!r}")
        if self.data.unsup and self.model.embeddings == "random":
            raise ValueError(
                "data.unsup feeds model.embeddings: word2vec; with random "
                "embeddings nothing reads the unlabelled reviews"
            )


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


def sentiment_step(
    model: nn.Module, batch: Batch, state: Any = None, adversarial: float = 0.0
) -> StepOutput:
    batch = _to(batch, next(model.parameters()).device)
    if adversarial and model.training:
        return adversarial_step(model, batch, adversarial)
    logits = model(batch.ids, batch.lengths)
    loss = F.cross_entropy(logits.float(), batch.labels)
    accuracy = (logits.argmax(-1) == batch.labels).float().mean()
    return StepOutput(loss, batch.labels.numel(), {"accuracy": float(accuracy)})


def adversarial_step(model: nn.Module, batch: Batch, epsilon: float) -> StepOutput:
    """Adversarial training on the word embeddings (Miyato et al. 2017): the clean loss plus
    the loss of each review's embeddings moved by ``epsilon`` (L2 norm over the whole review)
    along the clean loss's gradient, ``r = epsilon * g / ||g||``, taken as a constant.

    One backward pass through the clean graph gives both ``g`` and the clean loss's weight
    gradients; the returned loss carries those as a linear term (value 0, gradient the clean
    one), so the trainer's ``backward`` only goes through the perturbed graph. Going through
    the clean graph twice made a step cost 3.2x a plain one, against 2.4x now (BENCHMARKS.md).
    """
    if isinstance(model, nn.parallel.DistributedDataParallel):
        # its two forward passes and the gradient at the embeddings go around DDP's forward,
        # so its gradient averaging would not see them
        raise ValueError(
            "model.adversarial is not supported with DDP (more than one process); "
            "train it in one process or set model.adversarial 0"
        )
    x = model.encoder.embed(batch.ids)  # (L, N, E)
    if not x.requires_grad:  # a frozen table: the perturbation still needs dloss/dx
        x.requires_grad_()
    logits = model.classify(model.encoder.encode(x, batch.lengths), batch.lengths)
    clean = F.cross_entropy(logits.float(), batch.labels)
    params = [p for p in model.parameters() if p.requires_grad]
    # a trained table's gradient also flows through x from the perturbed loss: keep its graph
    g, *grads = torch.autograd.grad(
        clean, [x, *params], retain_graph=not x.is_leaf, allow_unused=True
    )
    norm = g.pow(2).sum((0, 2), keepdim=True).sqrt()  # (1, N, 1): per review
    r = epsilon * g / (norm + 1e-12)
    perturbed = model.classify(model.encoder.encode(x + r.detach(), batch.lengths), batch.lengths)
    adversarial = F.cross_entropy(perturbed.float(), batch.labels)
    # sum(p * dclean/dp) - its value: zero, with the clean gradient as its own
    linear = sum((p * q).sum() for p, q in zip(params, grads) if q is not None)
    accuracy = (logits.argmax(-1) == batch.labels).float().mean()
    metrics = {"accuracy": float(accuracy), "adversarial_loss": float(adversarial.detach())}
    loss = clean.detach() + adversarial + (linear - linear.detach())
    return StepOutput(loss, batch.labels.numel(), metrics)


def shard(batch: Batch, rank: int, world: int) -> Batch:
    """This process's share (rank::world) of a global batch, cut to its longest review."""
    lengths = batch.lengths[rank::world]
    ids = batch.ids[: int(lengths.max()), rank::world]
    return Batch(ids.contiguous(), lengths, batch.labels[rank::world])


def predict_probs(model: nn.Module, batch: Batch) -> Tensor:
    batch = _to(batch, next(model.parameters()).device)
    return model(batch.ids, batch.lengths).float().softmax(-1).cpu()


def build_model(config: SentimentConfig, vocab_size: int, pad_id: int) -> SentimentClassifier:
    """A classifier to train: from scratch, or on the encoder of a trained language model."""
    m = config.model
    if m.pretrained is None:
        return SentimentClassifier(RecurrentEncoder(vocab_size, m, pad_id), m)
    raw = read_model_dir(m.pretrained, "lm", require=("vocab_size",))
    lm_config = from_dict(LMModelConfig, raw["config"].get("model"), "model")
    lm = LanguageModel(raw["artifacts"]["vocab_size"], lm_config)
    load_weights(lm, Path(m.pretrained) / MODEL_FILE)
    return SentimentClassifier(LMEncoder(lm.train(), m.chunk_len, m.grad_chunks), m)


def rebuild_model(config: SentimentConfig, artifacts: dict[str, Any], pad_id: int) -> nn.Module:
    """The architecture of a saved classifier (its weights are loaded after)."""
    m = config.model
    if m.pretrained is None:
        return SentimentClassifier(RecurrentEncoder(artifacts["vocab_size"], m, pad_id), m)
    lm_config = from_dict(LMModelConfig, artifacts["encoder"], "encoder")
    lm = LanguageModel(artifacts["vocab_size"], lm_config)
    return SentimentClassifier(LMEncoder(lm, m.chunk_len, m.grad_chunks), m)


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


def format_report(result: dict[str, Any]) -> str:
    """scikit-learn's text report plus the confusion matrix and ROC-AUC."""
    lines = [f"{'':>12} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}"]
    for name in (*LABELS, "macro avg", "weighted avg"):
        r = result["report"][name]
        lines.append(
            f"{name:>12} {r['precision']:9.4f} {r['recall']:9.4f} "
            f"{r['f1-score']:9.4f} {int(r['support']):9d}"
        )
    (tn, fp), (fn, tp) = result["confusion_matrix"]
    lines += [
        f"{'accuracy':>12} {result['accuracy']:29.4f} {result['n']:9d}",
        f"confusion matrix (rows true neg/pos, columns predicted): [[{tn}, {fp}], [{fn}, {tp}]]",
        f"ROC-AUC {result['roc_auc']:.4f}",
    ]
    return "\n".join(lines)


class ScoreData(NamedTuple):
    """Reviews to score: which ``split`` of which ``source``, and their unshuffled batches."""

    split: str
    source: str
    batches: DataLoader
    labels: list[int]


def score_data(split: str, source: Any, data: Encoded, batch_size: int, pad_id: int) -> ScoreData:
    batches = loader(data, batch_size, False, 0, pad_id)
    order = [i for batch in batches.batch_sampler for i in batch]  # the batches' review order
    return ScoreData(split, str(source), batches, [data.labels[i] for i in order])


def _splits(data: SentimentDataConfig):
    reviews = load_imdb(data.path or SAMPLE, "train")
    train, val = split_reviews(list(reviews), data.val_size, data.split_seed, data.split)
    return reviews, train, val


def _tokenizer(config: SentimentConfig, run: RunContext, texts: list[str]) -> Tokenizer:
    if config.model.pretrained is not None:
        return Tokenizer.load(config.model.pretrained)
    if run.resume and (run.out_dir / "tokenizer.json").is_file():
        return Tokenizer.load(run.out_dir)  # the ids the saved weights were trained on
    data = config.data
    return Tokenizer.train(texts, data.tokenizer, data.vocab_size, data.min_frequency)


def _init_embeddings(
    config: SentimentConfig, model: SentimentClassifier, tokenizer: Tokenizer, texts: list[str]
) -> None:
    """Start the embedding table from word2vec vectors of ``texts`` (the training reviews)
    and, with ``data.unsup``, the unlabelled reviews; never the validation reviews."""
    if config.data.unsup:
        unsup = load_imdb(config.data.path or SAMPLE, "unsup")
        texts = texts + [r.text for r in unsup]
    started = time.perf_counter()
    table, learned = word2vec_embeddings(
        tokenizer, texts, config.model.embed_size, config.word2vec, config.train.seed
    )
    with torch.no_grad():
        model.encoder.embedding.weight.copy_(table)
    print(
        f"word2vec: {learned} of {tokenizer.vocab_size} embeddings learned from "
        f"{len(texts)} reviews in {time.perf_counter() - started:.1f} s"
    )


def _stages(config: SentimentConfig, model: SentimentClassifier) -> list[Stage] | None:
    """ULMFiT for a pretrained encoder: discriminative learning rates and gradual unfreezing
    (one epoch per stage from the head down, then everything for ``train.epochs``)."""
    if config.model.pretrained is None:
        return None
    groups = model.layer_groups()
    n = len(groups) if config.finetune.gradual_unfreezing else 1
    stages = []
    for k in range(n):
        last = k == n - 1
        trainable = groups if last else groups[len(groups) - 1 - k :]
        # fresh groups per stage: an optimizer and its schedule write into the dicts they get
        lrs = discriminative_groups(groups, config.train.lr, config.finetune.lr_decay)
        param_groups = [g for g, m in zip(lrs, groups) if any(m is t for t in trainable)]
        stages.append(Stage(str(k + 1), trainable, param_groups, None if last else 1))
    return stages


class SentimentTask:
    """IMDB sentiment classification (see the module docstring)."""

    name = "sentiment"
    config_class = SentimentConfig
    card = CARD
    onnx = "lstmkit.tasks.sentiment.export"  # its OnnxExport, imported when used
    widget = "sentiment"  # the web page's widget (lstmkit/serve/static)

    def build(self, config: SentimentConfig, run: RunContext) -> Built:
        data = config.data
        reviews, train_reviews, val_reviews = _splits(data)
        if reviews.skipped:
            print(f"skipped {len(reviews.skipped)} empty reviews, e.g. {reviews.skipped[0]}")
        tokenizer = _tokenizer(config, run, [r.text for r in train_reviews])
        if run.rank == 0:
            tokenizer.save(run.out_dir)
        train_enc = encode_reviews(
            tokenizer,
            [r.text for r in train_reviews],
            [r.label for r in train_reviews],
            data.max_len,
        )
        val_enc = encode_reviews(
            tokenizer, [r.text for r in val_reviews], [r.label for r in val_reviews], data.max_len
        )
        print(
            f"{len(train_enc.ids)} training and {len(val_enc.ids)} validation reviews; "
            f"{train_enc.truncated + val_enc.truncated} longer than {data.max_len} tokens "
            "kept head + tail"
        )
        model = build_model(config, tokenizer.vocab_size, tokenizer.pad_id)
        # rank 0 only: DDP broadcasts its weights; a resumed run loads its own
        if config.model.embeddings == "word2vec" and run.rank == 0 and not run.resume:
            _init_embeddings(config, model, tokenizer, [r.text for r in train_reviews])
        seed, pad = config.train.seed, tokenizer.pad_id
        train_data = loader(train_enc, data.batch_size, True, seed, pad)
        if run.world_size > 1:
            train_data = ShardedBatches(
                train_data, shard, run.rank, run.world_size, rows=lambda b: b.labels.numel()
            )
        artifacts: dict[str, Any] = {
            "vocab_size": tokenizer.vocab_size,
            "tokenizer": "tokenizer.json",
        }
        if config.model.pretrained is not None:  # the encoder's architecture, so that the
            lm = read_model_dir(config.model.pretrained, "lm")  # directory stands on its own
            artifacts["encoder"] = lm["config"]["model"]
        source = data.path or SAMPLE
        return Built(
            model,
            train_data,
            loader(val_enc, data.eval_batch_size, False, seed, pad),
            score_data=score_data("val", source, val_enc, data.eval_batch_size, pad),
            artifacts=artifacts,
            facts={"train_reviews": len(train_enc.ids)},
            stages=_stages(config, model),
        )

    def step_fn(self, config: SentimentConfig):
        if config.model.adversarial:
            return functools.partial(sentiment_step, adversarial=config.model.adversarial)
        return sentiment_step

    def callbacks(self, config: SentimentConfig) -> list:
        return keep_callbacks("val_accuracy", "max", patience=config.patience)

    def score(self, model: nn.Module, data: ScoreData) -> dict[str, Any]:
        probs = torch.cat([predict_probs(model, batch) for batch in data.batches])
        return {"split": data.split, "data": data.source, **scores(probs, data.labels)}

    def eval_data(
        self, predictor: SentimentPredictor, path: str | None, split: str | None
    ) -> ScoreData:
        """``val`` (default: the run's own held-out reviews of ``path``'s train split) or
        ``test`` (``path``'s test split); ``path`` ``None``: the data the model trained on."""
        split = split or "val"
        if split not in ("val", "test"):
            raise ValueError(f"split must be 'val' or 'test', got {split!r}")
        data = predictor.config.data
        source = path if path is not None else (data.path or SAMPLE)
        if split == "val":
            reviews = split_reviews(
                list(load_imdb(source, "train")), data.val_size, data.split_seed, data.split
            )[1]
        else:
            reviews = list(load_imdb(source, "test"))
        tokenizer = predictor.tokenizer
        enc = encode_reviews(
            tokenizer, [r.text for r in reviews], [r.label for r in reviews], data.max_len
        )
        return score_data(split, source, enc, data.eval_batch_size, tokenizer.pad_id)

    def load(self, model_dir: str | Path, device: torch.device | None = None) -> Predictor:
        config, artifacts = read_config(model_dir, self, require=("vocab_size",))
        tokenizer = load_tokenizer(model_dir, artifacts["vocab_size"])
        build = lambda: rebuild_model(config, artifacts, tokenizer.pad_id)  # noqa: E731
        model = load_model(build, model_dir)
        return SentimentPredictor(
            self.name, config, model, artifacts, model_dir, device, tokenizer=tokenizer
        )

    def summary(self, results: dict[str, Any]) -> str:
        return (
            f"{format_report(results)}\n"
            f"validation accuracy {results['accuracy']:.4f} (F1 {results['f1']:.4f}, ROC-AUC "
            f"{results['roc_auc']:.4f}) on {results['n']} held-out reviews, {results['steps']} "
            f"steps in {results['seconds']} s"
        )


class SentimentPredictor(Predictor):
    """Label and probabilities of texts (cleaned like the training reviews)."""

    def __init__(self, *args: Any, tokenizer: Tokenizer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tokenizer = tokenizer

    @torch.no_grad()
    def predict(self, inputs: list[str]) -> list[dict[str, Any]]:
        if not inputs:
            raise ValueError("no text to classify")
        for k, text in enumerate(inputs):
            if not isinstance(text, str):
                raise ValueError(f"input {k + 1} is a {type(text).__name__}, not a text")
        cleaned = [clean_text(t) for t in inputs]
        empty = [i for i, t in enumerate(cleaned) if not t]
        if empty:
            raise ValueError(f"input {empty[0] + 1} is empty")
        enc = encode_reviews(self.tokenizer, cleaned, [0] * len(cleaned), self.config.data.max_len)
        out = []
        size = self.config.data.eval_batch_size
        for start in range(0, len(enc.ids), size):
            ids, lengths = pad_batch(enc.ids[start : start + size], self.tokenizer.pad_id)
            logits = self.model(ids.t().contiguous().to(self.device), lengths)
            for probs in logits.float().softmax(-1).cpu():
                k = int(probs.argmax())
                out.append(
                    {
                        "label": LABELS[k],
                        "probability": float(probs[k]),
                        "positive": float(probs[1]),
                    }
                )
        return out

    def format_output(self, item: str, output: dict[str, Any]) -> str:
        short = item if len(item) <= 60 else item[:57] + "..."
        return f"{output['label']}\t{output['probability']:.4f}\t{short}"

    def gate_inputs(self, text: str) -> tuple[nn.Module, Tensor, list[str]]:
        """For a gate heat-map of ``text``: the encoder's LSTM, the embedded tokens (L, E) it
        reads and the tokens (all of them: the heat-map is not truncated to ``max_len``)."""
        if not isinstance(self.model.encoder, RecurrentEncoder):
            raise ValueError(
                f"{self.model_dir} has a language-model encoder; gate heat-maps read the LSTM "
                "of a classifier trained from scratch"
            )
        cleaned = clean_text(text)
        if not cleaned:
            raise ValueError("the text is empty")
        encoding = self.tokenizer.hf.encode(cleaned)
        if len(encoding.ids) > MAX_GATE_TOKENS:
            raise ValueError(
                f"the text has {len(encoding.ids)} tokens; a gate heat-map draws at most "
                f"{MAX_GATE_TOKENS}"
            )
        with torch.no_grad():
            x = self.model.encoder.embedding(torch.tensor(encoding.ids, device=self.device))
        return self.model.encoder.rnn, x.cpu(), list(encoding.tokens)


TASK = SentimentTask()
