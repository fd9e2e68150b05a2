"""The benchmark harness runs every configuration and computes its ratios consistently."""

import torch

from benchmarks import layers


def test_harness_rows_and_ratios_on_a_tiny_size(tmp_path):
    result = layers.run([(6, 3, 4, 5)], warmup=0, repeats=1)
    rows = result["rows"]
    assert result["gemm_peak_gflops"] > 0
    assert {r["config"] for r in rows} == set(layers.CONFIGS)
    for r in rows:
        if r["impl"] == "torch.nn.LSTM":  # the baseline of its own configuration
            assert r["train_ratio"] == r["forward_ratio"] == r["memory_ratio"] == 1.0
        assert r["train_ms"] > 0 and r["saved_mb"] > 0
    packed = [r["impl"] for r in rows if r["config"] == "variable lengths (packed)"]
    assert packed == ["torch.nn.LSTM", "lstmkit auto", "lstmkit reference"]
    assert "| 6 | 3 | 4 | 5 | standard | naive loop |" in layers.markdown(result)


def test_packed_batch_lengths():
    x = torch.randn(10, 7, 2)
    batch_sizes = layers.packed_batch(x).batch_sizes
    assert 7 * 5 <= batch_sizes.sum().item() < 7 * 10
    assert len(batch_sizes) == 10 and batch_sizes[0] == 7  # the longest has all T steps
