"""CUDA: every path on a GPU equals the CPU reference path in float64 (skipped without CUDA)."""

import pytest
import torch

from lstmkit.nn import GRU, LSTM

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CONFIGS = [
    dict(),  # cuDNN
    dict(num_layers=2, bidirectional=True, proj_size=3),
    dict(layer_norm=True, peephole=True),  # reference path on the GPU
    dict(coupled=True),
]


def _outputs_and_grads(m, x, lengths):
    out, (h, c) = m(x, lengths=lengths)
    loss = out.square().sum() + h.sum() + c.sum()
    return [out, h, c, *torch.autograd.grad(loss, list(m.parameters()))]


@pytest.mark.parametrize("kw", CONFIGS, ids=str)
def test_lstm_on_cuda_matches_the_cpu_reference(kw):
    torch.manual_seed(0)
    cpu = LSTM(4, 5, implementation="reference", **kw).double()
    gpu = LSTM(4, 5, **kw).double().cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(7, 3, 4, dtype=torch.double)
    want = _outputs_and_grads(cpu, x, [7, 2, 5])
    got = _outputs_and_grads(gpu, x.cuda(), torch.tensor([7, 2, 5]))
    for a, b in zip(got, want):
        torch.testing.assert_close(a.cpu(), b, rtol=0, atol=1e-8)


def test_weight_drop_on_cudnn_uses_the_drawn_mask(monkeypatch):
    torch.manual_seed(0)
    gpu = LSTM(4, 5, weight_drop=0.5).double().cuda().train()
    cpu = LSTM(4, 5, weight_drop=0.5, implementation="reference").double().train()
    cpu.load_state_dict({k: v.cpu() for k, v in gpu.state_dict().items()})
    masks = gpu.draw_masks(0, 0, 7, 3, gpu.weight_hh_l0)
    monkeypatch.setattr(gpu, "draw_masks", lambda *a, **k: masks)
    cpu_masks = masks._replace(weight_hh=masks.weight_hh.cpu())
    monkeypatch.setattr(cpu, "draw_masks", lambda *a, **k: cpu_masks)
    x = torch.randn(7, 3, 4, dtype=torch.double)
    torch.testing.assert_close(gpu(x.cuda())[0].cpu(), cpu(x)[0], rtol=0, atol=1e-8)


def test_gru_on_cuda_matches_the_cpu_reference():
    torch.manual_seed(0)
    cpu = GRU(4, 5, num_layers=2, implementation="reference").double()
    gpu = GRU(4, 5, num_layers=2).double().cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(7, 3, 4, dtype=torch.double)
    torch.testing.assert_close(gpu(x.cuda())[0].cpu(), cpu(x)[0], rtol=0, atol=1e-8)
