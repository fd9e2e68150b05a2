"""The short-step path (lstmkit.kernels.short_step): when it runs, that it gives the
reference path's outputs and states (float32, 1e-5) over the variants it takes, and that
its cached transposes follow the weights when they change."""

from __future__ import annotations

import pytest
import torch

from lstmkit.kernels import short_step
from lstmkit.nn import LSTM

TOL = 1e-5


def pair(**kw) -> tuple[LSTM, LSTM]:
    """The same weights twice: ``auto`` and ``reference``."""
    torch.manual_seed(0)
    auto = LSTM(6, 8, **kw).eval()
    with torch.no_grad():
        for name, p in auto.named_parameters():
            if "weight_c" in name:  # peepholes start at zero: make them matter
                p.normal_(0, 0.5)
    ref = LSTM(6, 8, implementation="reference", **kw).eval()
    ref.load_state_dict(auto.state_dict())
    return auto, ref


def counting(monkeypatch) -> list[int]:
    calls = []
    original = short_step.linear

    def linear(x, w, b=None):
        calls.append(x.shape[0])
        return original(x, w, b)

    monkeypatch.setattr(short_step, "linear", linear)
    return calls


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"num_layers": 3},
        {"bidirectional": True, "num_layers": 2},
        {"peephole": True},
        {"coupled": True},
        {"proj_size": 5},
        {"bias": False},
        {"zoneout": 0.3, "weight_drop": 0.5},
    ],
    ids=[
        "plain",
        "3-layers",
        "bidirectional",
        "peephole",
        "coupled",
        "proj",
        "no-bias",
        "train-only-variants",
    ],
)
@pytest.mark.parametrize("steps, rows", [(1, 1), (7, 2), (64, 1)])
def test_matches_the_reference_path(kw, steps, rows, monkeypatch):
    auto, ref = pair(**kw)
    calls = counting(monkeypatch)
    x = torch.randn(steps, rows, 6)
    d = 2 if auto.bidirectional else 1
    h0 = torch.randn(auto.num_layers * d, rows, auto.proj_size or 8)
    c0 = torch.randn(auto.num_layers * d, rows, 8)
    with torch.no_grad():
        out, (h, c) = auto(x, (h0, c0))
        expected, (eh, ec) = ref(x, (h0, c0))
    # it ran: per layer and direction one input projection and one product a step
    assert len(calls) == auto.num_layers * d * (1 + steps)
    for a, b in ((out, expected), (h, eh), (c, ec)):
        assert a.shape == b.shape and (a - b).abs().max() <= TOL


def test_lengths_and_gates(monkeypatch):
    auto, ref = pair(bidirectional=True)
    calls = counting(monkeypatch)
    x, lengths = torch.randn(9, 2, 6), torch.tensor([9, 4])
    with torch.no_grad():
        out, (h, c), gates = auto(x, lengths=lengths, return_gates=True)
        e_out, (eh, ec), e_gates = ref(x, lengths=lengths, return_gates=True)
    assert calls
    assert (out - e_out).abs().max() <= TOL and (h - eh).abs().max() <= TOL
    assert out[4:, 1].abs().max() == 0  # past its length a sequence outputs zeros
    for g, e in zip(gates, e_gates):
        for a, b in zip(g, e):
            assert (a - b).abs().max() <= TOL


@pytest.mark.parametrize(
    "case",
    ["three-rows", "long", "training", "autograd", "float64", "layer-norm", "reference"],
)
def test_when_it_does_not_run(case, monkeypatch):
    kw = {"layer_norm": True} if case == "layer-norm" else {}
    if case == "reference":
        kw["implementation"] = "reference"
    lstm = LSTM(6, 8, **kw).eval()
    x = torch.randn(65 if case == "long" else 3, 3 if case == "three-rows" else 1, 6)
    if case == "training":
        lstm.train()
    if case == "float64":
        lstm, x = lstm.double(), x.double()
    calls = counting(monkeypatch)
    if case == "autograd":  # gradients flow on the other paths
        out, _ = lstm(x)
        out.sum().backward()
        assert lstm.weight_hh_l0.grad is not None
    else:
        with torch.no_grad():
            lstm(x)
    assert calls == []
    with torch.no_grad():  # the eligibility rule itself
        assert short_step.eligible(torch.randn(64, 2, 6)) and short_step.eligible(
            torch.randn(1, 1, 6)
        )
        assert not short_step.eligible(torch.randn(65, 1, 6))
        assert not short_step.eligible(torch.randn(1, 3, 6))


def test_cached_transposes_follow_the_weights():
    auto, ref = pair()
    x = torch.randn(3, 1, 6)
    with torch.no_grad():
        auto(x)  # the transposes are cached now
        auto.weight_hh_l0.mul_(-2.0)  # in place: a new version of the weight
        ref.weight_hh_l0.mul_(-2.0)
        assert (auto(x)[0] - ref(x)[0]).abs().max() <= TOL
        other = LSTM(6, 8).eval()
        auto.load_state_dict(other.state_dict())  # copied in place: versions bump
        assert (auto(x)[0] - other(x)[0]).abs().max() <= TOL
    # an optimizer step on the training path, then inference again
    auto.train()
    opt = torch.optim.SGD(auto.parameters(), lr=0.5)
    auto(torch.randn(5, 3, 6))[0].sum().backward()
    opt.step()
    ref.load_state_dict(auto.state_dict())
    auto.eval()
    with torch.no_grad():
        assert (auto(x)[0] - ref(x)[0]).abs().max() <= TOL
    w = torch.randn(4, 3)
    t1 = short_step.transposed(w)
    assert short_step.transposed(w) is t1 and t1.is_contiguous() and torch.equal(t1, w.t())
    key = id(w)
    del w, t1
    assert key not in short_step._transposed  # the entry goes with its weight
