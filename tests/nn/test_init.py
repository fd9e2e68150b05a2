"""Chrono initialisation: the bias blocks it sets, the ones it leaves, and its errors."""

import math

import pytest
import torch

from lstmkit.nn import GRU, LSTM, chrono_init_


def _blocks(bias, names, hidden):
    return dict(zip(names, bias.split(hidden)))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_chrono_sets_forget_and_input_biases_of_every_layer(bidirectional):
    torch.manual_seed(0)
    lstm = LSTM(3, 64, num_layers=2, bidirectional=bidirectional)
    before = {n: p.clone() for n, p in lstm.named_parameters()}
    chrono_init_(lstm, t_max=100, generator=torch.Generator().manual_seed(1))
    drawn = []
    for layer in range(2):
        for direction in range(lstm.num_directions):
            b_ih = _blocks(lstm.param("bias_ih", layer, direction), "ifgo", 64)
            b_hh = _blocks(lstm.param("bias_hh", layer, direction), "ifgo", 64)
            assert torch.equal(b_ih["i"], -b_ih["f"])
            assert torch.equal(b_hh["i"], torch.zeros(64)) and torch.equal(b_hh["f"], b_hh["i"])
            assert b_ih["f"].min() >= 0 and b_ih["f"].max() <= math.log(99)
            drawn.append(b_ih["f"])
    # exp(b_f) - 1 is U(0, t_max - 2): its mean over 128-256 units is near 49
    spans = torch.cat(drawn).exp() - 1
    assert abs(spans.mean().item() - 49) < 6
    assert len({tuple(b.tolist()) for b in drawn}) == len(drawn)  # a draw per layer/direction
    for name, p in lstm.named_parameters():  # weights and the g, o biases are untouched
        if name.startswith("weight"):
            assert torch.equal(p, before[name])
        else:
            assert torch.equal(p[128:], before[name][128:])


def test_chrono_with_coupled_gates_sets_the_forget_bias_only():
    lstm = LSTM(2, 8, coupled=True)
    before = lstm.bias_ih_l0.clone()
    chrono_init_(lstm, t_max=10)
    b_f = lstm.bias_ih_l0[:8]  # coupled order: f | g | o
    assert b_f.min() >= 0 and b_f.max() <= math.log(9)
    assert torch.equal(lstm.bias_hh_l0[:8], torch.zeros(8))
    assert torch.equal(lstm.bias_ih_l0[8:], before[8:])


def test_chrono_is_reproducible_with_a_generator_and_keeps_the_dtype():
    a = chrono_init_(LSTM(2, 8, dtype=torch.float64), 50, torch.Generator().manual_seed(3))
    b = chrono_init_(LSTM(2, 8, dtype=torch.float64), 50, torch.Generator().manual_seed(3))
    assert a.bias_ih_l0.dtype == torch.float64
    assert torch.equal(a.bias_ih_l0[:16], b.bias_ih_l0[:16])


def test_chrono_errors():
    with pytest.raises(TypeError, match="expects an lstmkit.nn.LSTM, got GRU"):
        chrono_init_(GRU(2, 4), 10)
    with pytest.raises(ValueError, match="built with bias=False"):
        chrono_init_(LSTM(2, 4, bias=False), 10)
    with pytest.raises(ValueError, match="t_max must be > 2, got 2"):
        chrono_init_(LSTM(2, 4), 2)
