"""Machine translation: parallel text -> subwords -> an attentional LSTM encoder-decoder ->
sacreBLEU.

The data is a folder in the Multi30k task-1 layout (``train.de.gz``, ``val.en.gz``, ...;
:func:`lstmkit.data.parallel.find_split`) and a language pair, or any two line-aligned
files (``data.src``/``data.tgt``; validation then comes from ``data.val_src``/``val_tgt``
or is the last ``data.val_fraction`` of the pairs). The vocabularies (BPE or Unigram,
separate or joint) are learned on the training text only and saved in the model
directory. Training minimises label-smoothed cross-entropy with teacher forcing; the kept
weights are scored by decoding the validation sources (beam search) and comparing the
detokenised output with the raw references: BLEU and chrF by ``sacrebleu``, with their
signatures.

Policies: pairs longer than ``data.max_len`` subwords on either side are cut to it for
training (counted and printed); an empty source translates to an empty line; sources are
never cut at translation time.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from lstmkit.data.parallel import (
    PAD_ID,
    Parallel,
    Subwords,
    find_split,
    normalize,
    read_lines,
    read_parallel,
)
from lstmkit.tasks.base import Built, Predictor, RunContext, load_model, read_config
from lstmkit.tasks.translate.batches import Batch, PairBatches, truncate_pairs
from lstmkit.tasks.translate.card import CARD
from lstmkit.tasks.translate.decode import Hypothesis, beam_search, check_beam, greedy
from lstmkit.tasks.translate.model import Seq2Seq, TranslateModelConfig
from lstmkit.train import Callback, ModelCheckpoint, StepOutput, TrainConfig, keep_callbacks
from lstmkit.train.checkpoint import unwrap
from lstmkit.train.config import check_positive

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "multi30k"
SRC_VOCAB, TGT_VOCAB, JOINT_VOCAB = "vocab.src.json", "vocab.tgt.json", "vocab.json"
EXAMPLES = 5


@dataclass
class TranslateDataConfig:
    """The parallel text, the vocabularies and the batches.

    Args:
        path: a folder in the Multi30k layout (``None``: the sample bundled with lstmkit:
            500 training and 100 validation pairs of Multi30k, de/en/fr). Default: ``None``
        src_lang, tgt_lang: the file suffixes of the two sides. Default: ``de``, ``en``
        src, tgt: two training files instead of the folder's. Default: ``None``
        val_src, val_tgt: validation files (``None``: the folder's ``val``, else the last
            ``val_fraction`` of the training pairs). Default: ``None``
        val_fraction: the share held out when there are no validation files. Default: 0.05
        subwords: ``bpe`` or ``unigram``. Default: ``bpe``
        vocab_size: subwords per vocabulary. Default: 8000
        joint: one vocabulary for both sides (tied source and target ids). Default: ``False``
        max_len: training pairs are cut to this many subwords per side (counted). Default: 100
        batch_size, eval_batch_size: pairs per batch. Default: 64, 128
    """

    path: str | None = None
    src_lang: str = "de"
    tgt_lang: str = "en"
    src: str | None = None
    tgt: str | None = None
    val_src: str | None = None
    val_tgt: str | None = None
    val_fraction: float = 0.05
    subwords: str = "bpe"
    vocab_size: int = 8000
    joint: bool = False
    max_len: int = 100
    batch_size: int = 64
    eval_batch_size: int = 128

    def __post_init__(self) -> None:
        check_positive(self, "data", ("vocab_size", "max_len", "batch_size", "eval_batch_size"))
        if self.subwords not in ("bpe", "unigram"):
            raise ValueError(f"data.subwords must be bpe or unigram, got {self.subwords!r}")
        if (self.src is None) != (self.tgt is None):
            raise ValueError("data.src and data.tgt go together (two line-aligned files)")
        if (self.val_src is None) != (self.val_tgt is None):
            raise ValueError("data.val_src and data.val_tgt go together")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.src_lang == self.tgt_lang and self.src is None:
            raise ValueError(f"data.src_lang and data.tgt_lang are both {self.src_lang!r}")


@dataclass
class DecodeConfig:
    """Decoding: ``beam`` width (1: greedy), GNMT ``length_penalty`` alpha (>= 0),
    ``max_len_ratio`` (a translation stops at ceil(ratio * source length) + 5 subwords)
    and ``n_best`` hypotheses returned per sentence. Default: 5, 0.6, 1.5, 1"""

    beam: int = 5
    length_penalty: float = 0.6
    max_len_ratio: float = 1.5
    n_best: int = 1

    def __post_init__(self) -> None:
        check_positive(self, "decode", ("beam", "max_len_ratio", "n_best"))
        if self.length_penalty < 0:
            raise ValueError(f"decode.length_penalty must be >= 0, got {self.length_penalty}")
        if self.n_best > self.beam:
            raise ValueError(f"decode.n_best ({self.n_best}) > decode.beam ({self.beam})")


@dataclass
class TranslateConfig:
    """The whole run: ``data``, ``model``, ``decode``, ``train``; ``label_smoothing`` of
    the loss; ``keep`` the ``best`` (lowest validation loss) or ``last`` epoch's weights;
    ``average_last`` > 1 averages the weights of the last that many epochs (checkpoint
    averaging) into the kept weights instead."""

    data: TranslateDataConfig = field(default_factory=TranslateDataConfig)
    model: TranslateModelConfig = field(default_factory=TranslateModelConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            lr=3e-3, epochs=15, schedule="cosine", warmup_steps=50, weight_decay=0.0
        )
    )
    label_smoothing: float = 0.1
    keep: str = "best"
    average_last: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.keep not in ("best", "last"):
            raise ValueError(f"keep must be best or last, got {self.keep!r}")
        if self.average_last < 0:
            raise ValueError(f"average_last must be >= 0, got {self.average_last}")


# -- data ------------------------------------------------------------------------------------


class Splits(NamedTuple):
    train: Parallel
    val: Parallel
    val_refs: list[str]  # the raw validation references, as sacreBLEU should see them


def read_splits(data: TranslateDataConfig) -> Splits:
    """The training and validation pairs the config names (see the class docstring)."""
    folder = data.path if data.path is not None else SAMPLE
    if data.src is not None:
        train = read_parallel(data.src, data.tgt)
    else:
        train = read_parallel(
            find_split(folder, "train", data.src_lang), find_split(folder, "train", data.tgt_lang)
        )
    if data.val_src is not None:
        val = read_parallel(data.val_src, data.val_tgt)
        refs = read_lines(data.val_tgt, raw=True)
    elif data.src is None:
        val = read_parallel(
            find_split(folder, "val", data.src_lang), find_split(folder, "val", data.tgt_lang)
        )
        refs = read_lines(val.paths[1], raw=True)
    else:  # the last pairs of the training files
        n_val = max(1, round(len(train) * data.val_fraction))
        if n_val >= len(train):
            raise ValueError(f"{data.src} has {len(train)} pairs: too few to hold out validation")
        cut = len(train) - n_val
        val = Parallel(train.source[cut:], train.target[cut:], train.paths)
        train = Parallel(train.source[:cut], train.target[:cut], train.paths)
        refs = val.target
    return Splits(train, val, refs)


def build_vocabs(data: TranslateDataConfig, train: Parallel) -> tuple[Subwords, Subwords]:
    if data.joint:
        joint = Subwords.train(train.source + train.target, data.subwords, data.vocab_size)
        return joint, joint
    return (
        Subwords.train(train.source, data.subwords, data.vocab_size),
        Subwords.train(train.target, data.subwords, data.vocab_size),
    )


def save_vocabs(out_dir: Path, src: Subwords, tgt: Subwords, joint: bool) -> dict[str, str]:
    if joint:
        src.save(out_dir / JOINT_VOCAB)
        return {"src_vocab": JOINT_VOCAB, "tgt_vocab": JOINT_VOCAB}
    src.save(out_dir / SRC_VOCAB)
    tgt.save(out_dir / TGT_VOCAB)
    return {"src_vocab": SRC_VOCAB, "tgt_vocab": TGT_VOCAB}


# -- steps and scores ------------------------------------------------------------------------


def make_step(label_smoothing: float):
    """The step: label-smoothed cross-entropy per target token (``</s>`` included; as
    ``F.cross_entropy(label_smoothing=eps)``: (1 - eps) NLL + eps times the mean of -log p
    over the vocabulary); the size is the number of target tokens, the metric ``nll`` the
    unsmoothed loss (its exp is the perplexity). One log-softmax serves both."""

    def step(model: nn.Module, batch: Batch, state: Any = None) -> StepOutput:
        device = next(model.parameters()).device
        logits = model(batch.src.to(device), batch.src_lengths, batch.tgt_in.to(device))
        target = batch.tgt_out.to(device).reshape(-1)
        keep = target != PAD_ID
        log_probs = F.log_softmax(logits.float().reshape(-1, logits.shape[-1])[keep], -1)
        nll = -log_probs.gather(1, target[keep, None]).mean()
        loss = nll
        if label_smoothing:
            loss = (1 - label_smoothing) * nll - label_smoothing * log_probs.mean(-1).mean()
        return StepOutput(loss, int(keep.sum()), {"nll": float(nll.detach())})

    return step


class ScoreData(NamedTuple):
    """Sources to translate and score: their ``batches``, raw ``references`` (or ``None``:
    nothing to score against), the ``sources`` as text, where they came from, and how to
    decode."""

    batches: PairBatches
    sources: list[str]
    references: list[str] | None
    source: str
    decode: DecodeConfig
    tgt_vocab: Subwords


def translate_batches(
    model: nn.Module, batches: PairBatches, decode: DecodeConfig, n: int, keep_weights: bool = False
) -> list[list[Hypothesis]]:
    """The ``n_best`` hypotheses of each of the ``n`` sources of ``batches``, in order."""
    device = next(model.parameters()).device
    out: list[list[Hypothesis]] = [[] for _ in range(n)]
    for batch in batches:
        src = batch.src.to(device)
        if decode.beam == 1:
            hyps = [
                [h]
                for h in greedy(model, src, batch.src_lengths, decode.max_len_ratio, keep_weights)
            ]
        else:
            hyps = beam_search(
                model,
                src,
                batch.src_lengths,
                decode.beam,
                decode.length_penalty,
                decode.max_len_ratio,
                decode.n_best,
                keep_weights,
            )
        for i, h, k in zip(batch.index.tolist(), hyps, batch.src_lengths.tolist()):
            out[i] = h if k else [Hypothesis([], 0.0, 0.0)]  # an empty source: empty output
    return out


def bleu_chrf(hypotheses: list[str], references: list[str]) -> dict[str, Any]:
    """Corpus BLEU and chrF of detokenised ``hypotheses`` against raw ``references``, with
    sacreBLEU's signatures (its defaults: 13a tokenisation, exponential smoothing)."""
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(), CHRF()
    b = bleu.corpus_score(hypotheses, [references])
    c = chrf.corpus_score(hypotheses, [references])
    return {
        "bleu": round(b.score, 2),
        "chrf": round(c.score, 2),
        "bleu_detail": str(b),
        "signature": {"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature())},
    }


def score(model: nn.Module, data: ScoreData) -> dict[str, Any]:
    start = time.perf_counter()
    hyps = translate_batches(model, data.batches, data.decode, len(data.sources))
    seconds = time.perf_counter() - start
    outputs = [data.tgt_vocab.decode(h[0].tokens) if h else "" for h in hyps]
    result: dict[str, Any] = {"data": data.source, "n": len(outputs), "beam": data.decode.beam}
    if data.references is not None:
        result.update(bleu_chrf(outputs, data.references))
    result["translate_seconds"] = round(seconds, 2)
    result["examples"] = [
        {"source": s, "translation": o, **({"reference": r} if data.references else {})}
        for s, o, r in zip(
            data.sources[:EXAMPLES], outputs, (data.references or [None] * EXAMPLES)[:EXAMPLES]
        )
    ]
    return result


def format_report(result: dict[str, Any]) -> str:
    lines = []
    if "bleu" in result:
        lines.append(
            f"BLEU {result['bleu']:.2f}  chrF {result['chrf']:.2f}  ({result['n']} "
            f"sentences, beam {result['beam']}, {result['translate_seconds']} s)"
        )
        lines.append(f"  {result['bleu_detail']}")
        lines.append(f"  signature: {result['signature']['bleu']}")
    for ex in result.get("examples", []):
        lines.append(f"  {ex['source']}\n    -> {ex['translation']}")
        if "reference" in ex:
            lines.append(f"    (reference: {ex['reference']})")
    return "\n".join(lines)


class AverageCheckpoints(Callback):
    """Checkpoint averaging: the mean of the weights at the end of the last ``k`` epochs
    becomes the model's weights when training ends (kept in memory; a resumed run averages
    the epochs it saw)."""

    def __init__(self, k: int) -> None:
        self.k, self.saved = k, []

    def on_epoch_end(self, trainer, logs: dict[str, Any]) -> None:
        state = {n: t.detach().clone() for n, t in unwrap(trainer.model).state_dict().items()}
        self.saved = [*self.saved, state][-self.k :]

    def on_train_end(self, trainer, logs: dict[str, Any]) -> None:
        if len(self.saved) < 2:
            return
        model = unwrap(trainer.model)
        average = {
            n: torch.stack([s[n].float() for s in self.saved]).mean(0).to(t.dtype)
            for n, t in model.state_dict().items()
        }
        model.load_state_dict(average)
        logs["averaged_epochs"] = len(self.saved)


# -- the task --------------------------------------------------------------------------------


def build_model(config: TranslateConfig, artifacts: dict[str, Any]) -> Seq2Seq:
    return Seq2Seq(artifacts["src_vocab_size"], artifacts["tgt_vocab_size"], config.model)


def make_score_data(
    sources: list[str],
    references: list[str] | None,
    origin: str,
    src_vocab: Subwords,
    tgt_vocab: Subwords,
    config: TranslateConfig,
    decode: DecodeConfig | None = None,
) -> ScoreData:
    """The data :func:`score` reads; ``decode`` (default: the config's) says how."""
    ids = src_vocab.encode_batch(sources)
    batches = PairBatches(ids, None, config.data.eval_batch_size)
    return ScoreData(batches, sources, references, origin, decode or config.decode, tgt_vocab)


class TranslateTask:
    """Parallel text to an attentional encoder-decoder (see the module docstring)."""

    name = "translate"
    config_class = TranslateConfig
    card = CARD
    shards = False  # its batches are not sharded across processes
    onnx = "lstmkit.tasks.translate.export"  # its OnnxExport, imported when used
    widget = "translate"  # the web page's widget (lstmkit/serve/static)

    def build(self, config: TranslateConfig, run: RunContext) -> Built:
        data = config.data
        splits = read_splits(data)
        src_vocab, tgt_vocab = build_vocabs(data, splits.train)
        files = save_vocabs(run.out_dir, src_vocab, tgt_vocab, data.joint)
        src_ids, tgt_ids, cut = truncate_pairs(
            src_vocab.encode_batch(splits.train.source),
            tgt_vocab.encode_batch(splits.train.target),
            data.max_len,
        )
        val_src, val_tgt, _ = truncate_pairs(
            src_vocab.encode_batch(splits.val.source),
            tgt_vocab.encode_batch(splits.val.target),
            data.max_len,
        )
        seed = config.train.seed
        train = PairBatches(src_ids, tgt_ids, data.batch_size, shuffle=True, seed=seed)
        val = PairBatches(val_src, val_tgt, data.eval_batch_size)
        score_data = make_score_data(
            splits.val.source, splits.val_refs, "val", src_vocab, tgt_vocab, config
        )
        print(
            f"{len(splits.train)} training pairs ({splits.train.empty} with an empty side, "
            f"{cut} cut to {data.max_len} subwords), {len(splits.val)} validation pairs; "
            f"vocabularies {src_vocab.vocab_size} / {tgt_vocab.vocab_size} "
            f"({data.subwords}{', joint' if data.joint else ''})"
        )
        artifacts = {
            "src_vocab_size": src_vocab.vocab_size,
            "tgt_vocab_size": tgt_vocab.vocab_size,
            **files,
        }
        return Built(
            build_model(config, artifacts),
            train,
            val,
            score_data=score_data,
            artifacts=artifacts,
            facts={
                "train_pairs": len(splits.train),
                "val_pairs": len(splits.val),
                "truncated_pairs": cut,
            },
            per_step={"pairs_seen": data.batch_size},
        )

    def step_fn(self, config: TranslateConfig):
        return make_step(config.label_smoothing)

    def callbacks(self, config: TranslateConfig) -> list[Callback]:
        if config.average_last > 1:
            return [AverageCheckpoints(config.average_last), ModelCheckpoint(None)]
        return keep_callbacks("val_nll", "min", config.keep)

    def score(self, model: nn.Module, data: ScoreData) -> dict[str, Any]:
        return score(model, data)

    def eval_data(
        self,
        predictor: TranslatePredictor,
        path: str | None,
        split: str | None,
        src: str | None = None,
        ref: str | None = None,
        beam: int | None = None,
    ) -> ScoreData:
        """``--src F --ref F``: any two files; else ``split`` (``val``, default, or
        ``test``: Multi30k's test_2016_flickr) of the folder ``path`` (``None``: the
        model's training data) in the model's languages."""
        config = predictor.config
        decode = config.decode
        if beam is not None:
            check_beam(beam, predictor.tgt_vocab.vocab_size)
            decode = dataclasses.replace(decode, beam=beam, n_best=1)
        if (src is None) != (ref is None):
            raise ValueError("--src and --ref go together")
        if src is None:
            data = config.data
            if path is None and data.src is not None:
                if data.val_src is None:
                    raise ValueError(
                        "this model trained on --src/--tgt files without "
                        "validation files: give --src and --ref"
                    )
                src, ref = data.val_src, data.val_tgt
            else:
                folder = path if path is not None else (data.path or SAMPLE)
                src = find_split(folder, split or "val", data.src_lang)
                ref = find_split(folder, split or "val", data.tgt_lang)
        pairs = read_parallel(src, ref)
        return make_score_data(
            pairs.source,
            read_lines(ref, raw=True),
            str(src),
            predictor.src_vocab,
            predictor.tgt_vocab,
            config,
            decode,
        )

    def load(self, model_dir: str | Path, device: torch.device | None = None) -> Predictor:
        config, artifacts = read_config(
            model_dir, self, require=("src_vocab_size", "tgt_vocab_size", "src_vocab", "tgt_vocab")
        )
        model = load_model(lambda: build_model(config, artifacts), model_dir)
        return TranslatePredictor(self.name, config, model, artifacts, model_dir, device)

    def summary(self, results: dict[str, Any]) -> str:
        return (
            f"{format_report(results)}\nvalidation BLEU {results.get('bleu', 0):.2f} on "
            f"{results['n']} sentences, {results['steps']} steps in "
            f"{results['seconds']} s"
        )


def _vocab(model_dir: Path, name: str, size: int) -> Subwords:
    vocab = Subwords.load(model_dir / name)
    if vocab.vocab_size != size:
        raise ValueError(
            f"{model_dir / name} has {vocab.vocab_size} tokens, but the model of "
            f"config.json reads {size}: the vocabulary is not this model's"
        )
    return vocab


class TranslatePredictor(Predictor):
    """Translations of source sentences: ``predict(texts)`` -> ``{"translation", "score"}``
    per text (plus ``"n_best"`` when ``decode.n_best`` > 1)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        a = self.artifacts
        self.src_vocab = _vocab(self.model_dir, a["src_vocab"], a["src_vocab_size"])
        self.tgt_vocab = _vocab(self.model_dir, a["tgt_vocab"], a["tgt_vocab_size"])

    def hypotheses(self, texts: list[str], keep_weights: bool = False) -> list[list[Hypothesis]]:
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ValueError("translate inputs must be a list of strings")
        ids = self.src_vocab.encode_batch([normalize(t) for t in texts])
        batches = PairBatches(ids, None, self.config.data.eval_batch_size) if ids else []
        return translate_batches(self.model, batches, self.config.decode, len(texts), keep_weights)

    @torch.no_grad()
    def predict(self, inputs: list[str]) -> list[dict[str, Any]]:
        out = []
        for hyps in self.hypotheses(inputs):
            best = hyps[0]
            item = {
                "translation": self.tgt_vocab.decode(best.tokens),
                "score": round(best.normalized, 4),
            }
            if self.config.decode.n_best > 1:
                item["n_best"] = [
                    {
                        "translation": self.tgt_vocab.decode(h.tokens),
                        "score": round(h.normalized, 4),
                    }
                    for h in hyps
                ]
            out.append(item)
        return out

    def format_output(self, item: str, output: dict[str, Any]) -> str:
        return output["translation"]

    @torch.no_grad()
    def attention(self, text: str) -> dict[str, Any]:
        """The translation of ``text`` with its attention: ``source_tokens``,
        ``target_tokens`` (``</s>`` last when it ended there) and ``weights`` (one row per
        target token, one column per source token, each row summing to 1)."""
        from lstmkit.tasks.translate.plot import attention_matrix

        source, target, weights, translation = attention_matrix(self, text)
        return {
            "translation": translation,
            "source_tokens": source,
            "target_tokens": target,
            "weights": [[round(w, 5) for w in row] for row in weights],
        }


TASK = TranslateTask()
