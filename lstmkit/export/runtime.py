"""onnxruntime in place of the eager model, int8 dynamic quantization, and what it costs.

:class:`OrtSentiment` and :class:`OrtLM` are ``nn.Module``s with the eager models' call
signatures, so a task's Predictor (and the server, and ``generate``) runs an exported graph
unchanged: ``predictor.model = OrtSentiment(path)``. :func:`quantize_int8` writes the
dynamically quantized graph (int8 weights of the LSTM and MatMul ops, activations quantized
per call); :func:`accuracy_change` measures what quantization (or export) changes on the
task's own validation data, so the number is printed, never assumed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn


def session(path: str | Path, threads: int = 0) -> Any:
    """An onnxruntime CPU session (``threads`` intra-op threads; 0: onnxruntime's choice)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # idle worker threads sleep instead of spinning: on a few shared cores a spinning pool
    # takes the CPU the event loop and the other requests need
    if os.environ.get("LSTMKIT_ORT_SPIN", "0") != "1":
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OrtModule(nn.Module):
    """A module whose work onnxruntime does; its one (empty) parameter answers code that asks
    for the model's device: the CPU."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()), requires_grad=False)


class OrtSentiment(OrtModule):
    """A sentiment graph run by onnxruntime: ``(ids (L, N), lengths (N,)) -> logits (N, C)``."""

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        super().__init__()
        self.session = session(path, threads)

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        feeds = {"ids": ids.cpu().long().numpy(),
                 "lengths": torch.as_tensor(lengths).cpu().long().numpy()}  # fmt: skip
        (logits,) = self.session.run(["logits"], feeds)
        return torch.from_numpy(logits)


class OrtLM(OrtModule):
    """An lm step graph run by onnxruntime, with :class:`LanguageModel`'s call:
    ``(ids (L, N), state) -> (logits (L, N, V), state)``; ``state`` is a list of (h, c)
    per layer, each (1, N, H_k), ``None`` for zeros."""

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        super().__init__()
        self.session = session(path, threads)
        self.sizes = [i.shape[-1] for i in self.session.get_inputs() if i.name.startswith("h")]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def forward(self, ids: Tensor, state: list | None = None) -> tuple[Tensor, list]:
        n = ids.size(1)
        feeds: dict[str, np.ndarray] = {"ids": ids.cpu().long().numpy()}
        for k, size in enumerate(self.sizes):
            h, c = state[k] if state is not None else (torch.zeros(1, n, size),) * 2
            feeds[f"h{k}"], feeds[f"c{k}"] = h.numpy(), c.numpy()
        out = [torch.from_numpy(a) for a in self.session.run(self.outputs, feeds)]
        return out[0], [(out[1 + 2 * k], out[2 + 2 * k]) for k in range(len(self.sizes))]


class OrtLab(OrtModule):
    """A lab graph run by onnxruntime: ``(x (L, N, I), lengths (N,) or None) -> output``."""

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        super().__init__()
        self.session = session(path, threads)
        self.needs_lengths = any(i.name == "lengths" for i in self.session.get_inputs())

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        feeds = {"x": x.cpu().float().numpy()}
        if self.needs_lengths:  # None: every sequence runs to the end
            full = torch.full((x.size(1),), x.size(0)) if lengths is None else lengths
            feeds["lengths"] = torch.as_tensor(full).cpu().long().numpy()
        (out,) = self.session.run(["output"], feeds)
        return torch.from_numpy(out)


class OrtForecaster(OrtModule):
    """A forecast graph run by onnxruntime with :class:`Forecaster`'s calls (``forward``,
    ``forward_members``) and attributes; the ES-RNN hybrid's smoothing (outside the graph)
    stays the eager model's."""

    def __init__(self, path: str | Path, threads: int = 0, eager: nn.Module | None = None) -> None:
        super().__init__()
        if eager is None:
            raise ValueError("OrtForecaster needs the eager model (its sizes and smoothing)")
        self.session = session(path, threads)
        self.es = eager.es
        for name in ("config", "input_size", "season", "horizon", "history", "chunk", "steps"):
            setattr(self, name, getattr(eager, name))

    def _run(self, z: Tensor, phase: Tensor) -> list[Tensor]:
        feeds = {"z": z.cpu().float().numpy(), "phase": phase.cpu().long().numpy()}
        return [torch.from_numpy(a) for a in self.session.run(["quantiles", "members"], feeds)]

    def forward(self, z: Tensor, phase: Tensor) -> Tensor:
        return self._run(z, phase)[0]

    def forward_members(self, z: Tensor, phase: Tensor) -> list[Tensor]:
        return list(self._run(z, phase)[1])


class OrtSpeech(OrtModule):
    """A speech graph run by onnxruntime with :class:`SpeechModel`'s ``forward`` and, for a
    unidirectional CTC model, its streaming ``step``."""

    def __init__(self, path: str | Path, threads: int = 0, eager: nn.Module | None = None) -> None:
        super().__init__()
        if eager is None:
            raise ValueError("OrtSpeech needs the eager model (its configuration)")
        self.session = session(path, threads)
        self.config, self.head_kind = eager.config, eager.head_kind
        from lstmkit.tasks.speech.model import members_of

        first = members_of(eager)[0]  # an ensemble's members are alike
        self.layers, self.hidden = first.rnn.num_layers, first.rnn.hidden_size
        self.streams = any(i.name == "h0" for i in self.session.get_inputs())
        self.first = "log_probs" if self.head_kind == "ctc" else "logits"

    def _run(self, feats: Tensor, lengths: Tensor, state: Any = None) -> list[Tensor]:
        feeds = {"feats": feats.cpu().float().numpy(),
                 "lengths": torch.as_tensor(lengths).cpu().long().numpy()}  # fmt: skip
        names = [self.first, "steps"]
        if self.streams:
            n = feats.shape[1]
            h, c = state if state is not None else (torch.zeros(self.layers, n, self.hidden),) * 2
            feeds["h0"], feeds["c0"] = h.cpu().float().numpy(), c.cpu().float().numpy()
            names += ["h_n", "c_n"]
        return [torch.from_numpy(a) for a in self.session.run(names, feeds)]

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        out, steps, *_ = self._run(feats, lengths)
        return out, steps

    def check_streamable(self) -> None:
        if not self.streams or self.head_kind != "ctc":
            raise ValueError("streaming needs a unidirectional CTC model (model.bidirectional "
                             "false, task_kind connected)")  # fmt: skip

    def step(self, feats: Tensor, state: Any = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        self.check_streamable()
        if feats.shape[0] % self.config.subsample:
            raise ValueError(f"a chunk must hold a multiple of {self.config.subsample} frames")
        lengths = torch.full((feats.shape[1],), feats.shape[0], dtype=torch.long)
        out, _, h, c = self._run(feats, lengths, state)
        return out, (h, c)


class OrtSeq2Seq(OrtModule):
    """A translate model's two graphs run by onnxruntime with :class:`Seq2Seq`'s ``encode``
    and ``step``, so greedy and beam search run on them unchanged. ``path``: the name the
    export was given (the graphs are ``NAME.encoder.onnx`` and ``NAME.decoder.onnx``)."""

    def __init__(self, path: str | Path, threads: int = 0, eager: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder = session(part_path(path, "encoder"), threads)
        self.decoder = session(part_path(path, "decoder"), threads)
        self.config = None if eager is None else eager.config

    def encode(self, src: Tensor, lengths: Tensor) -> Any:
        from lstmkit.tasks.translate.model import DecoderState, Memory

        feeds = {"src": src.cpu().long().numpy(), "lengths": lengths.cpu().long().numpy()}
        keys, mask, projected, h, c, feed = (
            torch.from_numpy(a) for a in self.encoder.run(
                ["keys", "mask", "projected", "h", "c", "feed"], feeds))  # fmt: skip
        return Memory(keys, mask, projected, DecoderState(h, c, feed))

    def step(self, tokens: Tensor, memory: Any) -> tuple[Tensor, Tensor, Any]:
        from lstmkit.tasks.translate.model import DecoderState

        s = memory.state
        feeds = {"tokens": tokens.cpu().long().numpy(), "keys": memory.keys.numpy(),
                 "mask": memory.mask.numpy(), "projected": memory.projected.numpy(),
                 "h": s.h.numpy(), "c": s.c.numpy(), "feed": s.feed.numpy()}  # fmt: skip
        names = ["log_probs", "weights", "h_out", "c_out", "feed_out"]
        log_probs, weights, h, c, feed = (torch.from_numpy(a)
                                          for a in self.decoder.run(names, feeds))  # fmt: skip
        return log_probs, weights, DecoderState(h, c, feed)


RUNTIMES = {"sentiment": OrtSentiment, "lm": OrtLM, "lab": OrtLab, "forecast": OrtForecaster,
            "speech": OrtSpeech, "translate": OrtSeq2Seq}  # fmt: skip
NEEDS_EAGER = ("forecast", "speech", "translate")


def part_path(out: str | Path, part: str) -> Path:
    """Where graph ``part`` of an export named ``out`` lives: ``out`` itself for a one-graph
    task, ``model.encoder.onnx`` for part ``encoder`` of ``model.onnx``."""
    out = Path(out)
    return out if not part else out.with_name(f"{out.stem}.{part}{out.suffix or '.onnx'}")


def quantize_int8(source: str | Path, out: str | Path) -> Path:
    """Dynamic int8 quantization of ``source`` (weights of LSTM and MatMul ops and embedding
    tables read by Gather stored as int8, activations quantized on the fly) written to
    ``out``."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process applies to static quantization
    try:
        quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["LSTM", "MatMul", "Gather"])  # fmt: skip
    finally:
        root.setLevel(level)
    return Path(out)


def use_onnx(predictor: Any, path: str | Path, threads: int = 0) -> Any:
    """Run ``predictor`` on the exported graph ``path`` instead of its eager model."""
    runtime = RUNTIMES.get(predictor.task)
    if runtime is None:
        raise ValueError(f"no ONNX runtime for the {predictor.task} task")
    if predictor.task in NEEDS_EAGER:
        predictor.model = runtime(path, threads, eager=predictor.model)
    else:
        predictor.model = runtime(path, threads)
    return predictor


@torch.no_grad()
def task_scores(predictor: Any) -> dict[str, float]:
    """The task's headline number on its validation data, with the predictor's model:
    sentiment accuracy; lm nats per character of the validation text; lab the solved
    fraction or accuracy on its test sequences."""
    from lstmkit.tasks import get_task

    task = get_task(predictor.task)
    if predictor.task == "sentiment":
        data = task.eval_data(predictor, None, "val")
        scores = task.score(predictor.model, data)
        return {"accuracy": scores["accuracy"]}
    if predictor.task == "lm":
        data = task.eval_data(predictor, predictor.config.data.path, "val", batch_size=1)
        scores = task.score(predictor.model, data)
        return {"nats_per_char": scores["nats_per_char"]}
    if predictor.task == "lab":  # lab scores fresh test sequences of an unseen seed
        scores = task.score(predictor.model, task.eval_data(predictor, None, "test"))
        return {k: scores[k] for k in ("solved_fraction", "accuracy") if k in scores}
    if predictor.task in ("forecast", "speech", "translate"):
        keys = {"forecast": ("smape", "mase", "owa"), "speech": ("accuracy", "wer", "cer"),
                "translate": ("bleu", "chrf")}[predictor.task]  # fmt: skip
        scores = task.score(predictor.model, task.eval_data(predictor, None, "val"))
        return {k: scores[k] for k in keys if k in scores}
    raise ValueError(f"no validation score for the {predictor.task} task")


def accuracy_change(model_dir: str | Path, graphs: dict[str, Path]) -> dict[str, Any]:
    """The validation score of the eager model and of each exported graph (name -> path),
    and each graph's change against eager."""
    from lstmkit.tasks import run

    eager = task_scores(run.load(model_dir, "cpu"))
    out: dict[str, Any] = {"eager": eager}
    for name, path in graphs.items():
        scores = task_scores(use_onnx(run.load(model_dir, "cpu"), path))
        out[name] = scores
        out[f"{name}_change"] = {k: scores[k] - eager[k] for k in scores}
    return out


def export_onnx(model_dir: str | Path, out: str | Path, quantize: str | None = None,
                evaluate: bool = True) -> dict[str, Any]:  # fmt: skip
    """``lstmkit export --format onnx``: write the graph of ``model_dir`` to ``out``
    (int8-quantized with ``quantize="int8"``), check it against the eager model on random
    inputs, and (``evaluate``) score eager and the graph on the validation data."""
    import tempfile

    import onnx

    from lstmkit.export.onnx import export_graphs, max_difference
    from lstmkit.tasks import run

    if quantize not in (None, "int8"):
        raise ValueError(f"--quantize must be int8, got {quantize!r}")
    predictor = run.load(model_dir, "cpu")
    graphs = export_graphs(predictor.task, predictor.model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    files, worst = [], 0.0
    for part, graph in graphs.items():
        path = part_path(out, part)
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = Path(tmp) / "fp32.onnx"
            onnx.save(graph, str(fp32))
            if quantize == "int8":
                quantize_int8(fp32, path)
            else:
                onnx.save(graph, str(path))
        files.append(path)
        diff = max_difference(predictor.task, predictor.model, session(path), part=part)
        worst = max(worst, diff)
    result: dict[str, Any] = {
        "out": str(out),
        "files": [str(f) for f in files],
        "bytes": sum(f.stat().st_size for f in files),
        "max_difference": worst,
    }
    if evaluate:
        name = "int8" if quantize else "onnx"
        result["validation"] = accuracy_change(model_dir, {name: out})
    return result
