"""The export of a task's model by the task's name, as the tests read it."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from torch import nn

from lstmkit.export import runtime
from lstmkit.tasks.export import onnx_export


def export_graphs(task: str, model: nn.Module) -> dict[str, onnx.ModelProto]:
    return onnx_export(task).graphs(model.eval())


def export_graph(task: str, model: nn.Module) -> onnx.ModelProto:
    parts = export_graphs(task, model)
    if "" not in parts:
        raise ValueError(f"the {task} task exports {len(parts)} graphs ({', '.join(parts)})")
    return parts[""]


def max_difference(task: str, model: nn.Module, session: Any, part: str = "") -> float:
    return runtime.max_difference(onnx_export(task), model, session, part)


def random_feeds(
    task: str, model: nn.Module, part: str = "", batch: int = 4, steps: int = 9, seed: int = 0
) -> dict[str, np.ndarray]:
    return onnx_export(task).random_feeds(model, part, batch, steps, seed)


def eager_outputs(
    task: str, model: nn.Module, part: str, feeds: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    return onnx_export(task).expected_outputs(model, part, feeds)
