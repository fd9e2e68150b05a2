import json

import pytest
import torch

from lstmkit.cli.main import main
from lstmkit.tasks.lab import task


def test_spectral_radius_is_set():
    config = task.load_config({"model": {"cell": "rnn", "spectral_radius": 2.5}})
    model = task.build_model(config)
    radius = torch.linalg.eigvals(model.rnn.weight_hh_l0.detach()).abs().max()
    assert float(radius) == pytest.approx(2.5, rel=1e-5)
    with pytest.raises(ValueError, match="spectral_radius must be positive and needs"):
        task.load_config({"model": {"cell": "lstm", "spectral_radius": 2.0}})


def test_clipping_keeps_an_exploding_rnn_finite(tmp_path):
    out = tmp_path / "exp"
    assert main(["lab", "exploding", "--steps", "40", "--T", "30", "--out", str(out)]) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    unclipped = runs["no clipping"]
    assert unclipped["max_grad_norm"] > 1e6 or unclipped["nonfinite_steps"] > 0
    for name in ("value clipping", "norm clipping"):
        assert runs[name]["nonfinite_steps"] == 0 and runs[name]["final_loss"] < 10
        assert runs[name]["max_grad_norm"] < unclipped["max_grad_norm"]
    assert (out / "exploding.png").stat().st_size > 10_000
