import html.parser

import pytest
import torch

from lstmkit.nn import LSTM
from lstmkit.viz.heatmap import gate_activations, gate_heatmap


def test_heatmap_files(tmp_path):
    torch.manual_seed(0)
    lstm = LSTM(3, 5, num_layers=2, bidirectional=True)
    x = torch.randn(7, 3)
    labels = ["the", "film", "was", "<b>not</b>", "good", "at", "all"]
    png, page = gate_heatmap(lstm, x, labels, tmp_path / "gates", layer=1, direction=1)
    assert png.stat().st_size > 10_000
    text = page.read_text()
    assert "data:image/png;base64," in text and "&lt;b&gt;not&lt;/b&gt;" in text
    html.parser.HTMLParser().feed(text)  # well-formed enough to parse
    assert text.count("<td") == 4 * len(labels)


def test_gate_activations_are_return_gates():
    torch.manual_seed(0)
    lstm = LSTM(3, 5, num_layers=2)
    x = torch.randn(7, 3)
    gates = gate_activations(lstm, x, layer=1)
    reference = lstm(x, return_gates=True)[2]
    # gate_activations runs in inference (lstmkit.kernels.short_step for one sequence), the
    # reference call in training mode (the fused kernel): equal to float rounding
    assert torch.allclose(gates["f"], reference.f[1].T, atol=1e-6) and gates["c"].shape == (5, 7)
    with pytest.raises(ValueError, match="3 labels for a sequence of 7 steps"):
        gate_heatmap(lstm, x, ["a", "b", "c"], "unused")
    with pytest.raises(ValueError, match="no layer 2"):
        gate_activations(lstm, x, layer=2)
