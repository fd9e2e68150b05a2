"""The attention of one translation as a heat-map: a PNG (matplotlib) and a self-contained
HTML table (no scripts, no external files), rows the target subwords, columns the source's."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from lstmkit.data.parallel import normalize


def attention_matrix(
    predictor: Any, text: str
) -> tuple[list[str], list[str], list[list[float]], str]:
    """Source subwords, target subwords (``</s>`` last when the translation ended there),
    the weights (target x source) and the translation of ``text``."""
    text = normalize(text)
    if not text:
        raise ValueError("the sentence to translate is empty")
    hyp = predictor.hypotheses([text], keep_weights=True)[0][0]
    source = predictor.src_vocab.tokens(predictor.src_vocab.encode(text))
    target = [*predictor.tgt_vocab.tokens(hyp.tokens), "</s>"][: hyp.weights.shape[0]]
    return source, target, hyp.weights.tolist(), predictor.tgt_vocab.decode(hyp.tokens)


def _html(source: list[str], target: list[str], weights: list[list[float]], title: str) -> str:
    head = "".join(f"<th>{html.escape(s)}</th>" for s in source)
    rows = []
    for tok, row in zip(target, weights):
        cells = "".join(
            f'<td style="background: rgba(31, 119, 180, {w:.3f})" title="{w:.3f}">{w:.2f}</td>'
            for w in row
        )
        rows.append(f"<tr><th>{html.escape(tok)}</th>{cells}</tr>")
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif} table{border-collapse:collapse} "
        "td,th{border:1px solid #ddd;padding:4px 6px;font-size:13px;text-align:center}"
        "</style></head><body>"
        f"<h3>{html.escape(title)}</h3><table><tr><th></th>{head}</tr>{''.join(rows)}</table>"
        "<p>Rows: the translation's subwords; columns: the source's; each row sums to 1.</p>"
        "</body></html>\n"
    )


def attention_files(predictor: Any, text: str, out_dir: str | Path) -> list[Path]:
    """Write ``attention.png`` and ``attention.html`` of ``text``'s translation into
    ``out_dir``; their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    source, target, weights, translation = attention_matrix(predictor, text)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(1 + 0.45 * len(source), 1 + 0.4 * len(target)))
    ax.imshow(weights, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(source)), source, rotation=60, ha="right")
    ax.set_yticks(range(len(target)), target)
    ax.set_title(f"{text}\n-> {translation}", fontsize=9)
    fig.tight_layout()
    png = out / "attention.png"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    page = out / "attention.html"
    page.write_text(_html(source, target, weights, f"{text} -> {translation}"), encoding="utf-8")
    return [png, page]
