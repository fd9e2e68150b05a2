"""Export any task's model to ONNX, run a Predictor on the graphs, and measure what that
changes: the plumbing every exporting task shares, written once.

A task exports when it declares ``onnx`` (an :class:`~lstmkit.export.runtime.OnnxExport`,
made by its package's ``export`` module); nothing here knows any task by name.
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import Any

from lstmkit.export.runtime import OnnxExport, max_difference, session, write_graphs
from lstmkit.tasks import get_task
from lstmkit.tasks.base import Predictor


def onnx_export(task: Any) -> OnnxExport:
    """The ONNX declaration of ``task`` (a task object or its name); a clear error when the
    task has none."""
    task = get_task(task) if isinstance(task, str) else task
    spec = getattr(task, "onnx", None)
    if spec is None:
        raise ValueError(f"the {task.name} task has no ONNX export")
    if isinstance(spec, str):  # the module holding it as ONNX (onnx is imported when used)
        spec = importlib.import_module(spec).ONNX
    return spec


def use_onnx(predictor: Predictor, path: str | Path, threads: int = 0) -> Predictor:
    """Run ``predictor`` on the exported graphs named ``path`` instead of its eager model."""
    spec = onnx_export(predictor.task)
    predictor.model = spec.runtime(path, threads, predictor.model)
    return predictor


def use_graph(predictor: Predictor, runtime: str, threads: int = 0) -> Predictor:
    """Export ``predictor``'s model into a temporary folder and run it there: ``runtime``
    ``onnx`` (float) or ``int8`` (dynamically quantized). The sessions keep the graphs in
    memory, so the folder goes at once."""
    spec = onnx_export(predictor.task)
    with tempfile.TemporaryDirectory() as tmp:
        name = Path(tmp) / ("model.int8.onnx" if runtime == "int8" else "model.onnx")
        write_graphs(spec, predictor.model, name, "int8" if runtime == "int8" else None)
        use_onnx(predictor, name, threads)
    return predictor


def task_scores(predictor: Predictor) -> dict[str, float]:
    """The task's headline numbers on its validation data, with the predictor's model."""
    return onnx_export(predictor.task).scores(predictor)


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


def export_onnx(
    model_dir: str | Path, out: str | Path, quantize: str | None = None, evaluate: bool = True
) -> dict[str, Any]:
    """``lstmkit export --format onnx``: write the graphs of ``model_dir`` as ``out``
    (int8-quantized with ``quantize="int8"``), check them against the eager model on random
    inputs, and (``evaluate``) score eager and the graphs on the validation data."""
    from lstmkit.tasks import run

    if quantize not in (None, "int8"):
        raise ValueError(f"--quantize must be int8, got {quantize!r}")
    predictor = run.load(model_dir, "cpu")
    spec = onnx_export(predictor.task)
    files = write_graphs(spec, predictor.model, out, quantize)
    worst = max(
        max_difference(spec, predictor.model, session(path), part) for part, path in files.items()
    )
    result: dict[str, Any] = {
        "out": str(out),
        "files": [str(f) for f in files.values()],
        "bytes": sum(f.stat().st_size for f in files.values()),
        "max_difference": worst,
    }
    if evaluate:
        name = "int8" if quantize else "onnx"
        result["validation"] = accuracy_change(model_dir, {name: Path(out)})
    return result
