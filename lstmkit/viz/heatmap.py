"""Gate heat-maps: what f, i, o and c do over an input sequence, as PNG and as HTML.

:func:`gate_heatmap` runs an ``lstmkit.nn.LSTM`` with ``return_gates=True`` on one sequence
and draws, for one layer and direction, each gate's activation (units x steps) with the
step labels (words of a review, symbols of a lab problem) along the time axis. The HTML page
is self-contained (the PNG embedded, no scripts): per step, the mean of each gate over the
units colours the label, so a reader sees where the cell writes, forgets and reads.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor

from lstmkit.nn import LSTM

GATES = ("f", "i", "o", "c")
TITLES = {"f": "forget gate f", "i": "input gate i", "o": "output gate o", "c": "cell state c"}


@torch.no_grad()
def gate_activations(
    module: LSTM, x: Tensor, layer: int = 0, direction: int = 0
) -> dict[str, Tensor]:
    """Each gate of one layer and direction over the unbatched sequence ``x`` (L, H_in):
    tensors of shape (H, L)."""
    if x.dim() != 2:
        raise ValueError(f"expected one unbatched sequence (L, H_in), got shape {tuple(x.shape)}")
    if not 0 <= layer < module.num_layers or not 0 <= direction < module.num_directions:
        raise ValueError(f"no layer {layer}, direction {direction} in {module}")
    was_training = module.training
    module.eval()
    _, _, gates = module(x, return_gates=True)
    module.train(was_training)
    row = layer * module.num_directions + direction
    return {name: getattr(gates, name)[row].T for name in GATES}  # (H, L)


def gate_heatmap(
    module: LSTM,
    x: Tensor,
    labels: Sequence[str],
    out: str | Path,
    layer: int = 0,
    direction: int = 0,
    title: str = "",
) -> tuple[Path, Path]:
    """Write ``out``.png and ``out``.html for the sequence ``x`` (L, H_in) and its labels."""
    if len(labels) != x.size(0):
        raise ValueError(f"{len(labels)} labels for a sequence of {x.size(0)} steps")
    gates = gate_activations(module, x, layer, direction)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(max(6.0, 0.25 * len(labels) + 2), 9))
    for k, (axes, name) in enumerate(zip(figure.subplots(len(GATES), 1, sharex=True), GATES)):
        value = gates[name].float().numpy()
        limits = (-1, 1) if name == "c" else (0, 1)
        cmap = "RdBu_r" if name == "c" else "viridis"
        if name == "c":
            bound = max(1.0, float(abs(value).max()))
            limits = (-bound, bound)
        image = axes.imshow(
            value, aspect="auto", cmap=cmap, vmin=limits[0], vmax=limits[1], interpolation="nearest"
        )
        axes.set_ylabel(f"{TITLES[name]}\nunit")
        figure.colorbar(image, ax=axes, fraction=0.03)
        if k == len(GATES) - 1:
            axes.set_xticks(range(len(labels)))
            axes.set_xticklabels(labels, rotation=90, fontsize=7)
    figure.suptitle(title or f"LSTM gates, layer {layer}, direction {direction}")
    figure.tight_layout()
    png = out.with_suffix(".png")
    figure.savefig(png, dpi=100)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    page = out.with_suffix(".html")
    page.write_text(_html(gates, labels, title, buffer.getvalue()), encoding="utf-8")
    return png, page


def _html(gates: dict[str, Tensor], labels: Sequence[str], title: str, png: bytes) -> str:
    rows = []
    for name in GATES:
        means = gates[name].mean(0)  # per step, over the units
        if name == "c":
            scale = max(float(means.abs().max()), 1e-6)
            colours = [_diverging(float(v) / scale) for v in means]
        else:
            colours = [_sequential(float(v)) for v in means]
        cells = "".join(
            f'<td style="background:{colour}" title="{name} = {float(v):.3f}">'
            f"{html.escape(label)}</td>"
            for label, colour, v in zip(labels, colours, means)
        )
        rows.append(f"<tr><th>{TITLES[name]}</th>{cells}</tr>")
    image = base64.b64encode(png).decode("ascii")
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title or 'LSTM gates')}</title><style>"
        "body{font-family:sans-serif;margin:1em} table{border-collapse:collapse}"
        "td,th{padding:2px 4px;border:1px solid #ddd;font-size:12px;white-space:nowrap}"
        "th{text-align:left;background:#f4f4f4}</style></head><body>"
        f"<h1>{html.escape(title or 'LSTM gates')}</h1>"
        "<p>Each step's label is coloured by the gate's mean over the units (0 white, 1 dark "
        "blue; for c, red positive and blue negative). Hover for the value.</p>"
        f"<table>{''.join(rows)}</table>"
        f"<h2>Every unit</h2><img alt='gate heat-map' src='data:image/png;base64,{image}'>"
        "</body></html>\n"
    )


def _sequential(value: float) -> str:
    v = min(max(value, 0.0), 1.0)
    r, g, b = (int(255 - v * (255 - c)) for c in (8, 48, 107))
    return f"rgb({r},{g},{b})"


def _diverging(value: float) -> str:
    v = min(max(value, -1.0), 1.0)
    if v >= 0:
        return f"rgb(255,{int(255 - 180 * v)},{int(255 - 180 * v)})"
    return f"rgb({int(255 + 180 * v)},{int(255 + 180 * v)},255)"
