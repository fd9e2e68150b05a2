"""The documented eligibility rules choose the path; forcing a path works or fails clearly."""

import pytest
import torch

from lstmkit.nn import GRU, LSTM, RNN


@pytest.fixture
def kernel_calls(monkeypatch):
    import lstmkit.nn.base as base

    calls = []
    real = base.torch_rnn

    def spy(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(base, "torch_rnn", spy)
    return calls


X = torch.randn(6, 3, 4)


@pytest.mark.parametrize(
    "kwargs,training,gates,uses_kernel",
    [
        (dict(), True, False, True),
        (dict(num_layers=2, bidirectional=True, proj_size=2, dropout=0.2), True, False, True),
        (dict(), True, True, False),  # return_gates
        (dict(peephole=True), False, False, False),
        (dict(layer_norm=True), False, False, False),
        (dict(coupled=True), False, False, False),
        (dict(zoneout=0.1), True, False, False),
        (dict(zoneout=0.1, recurrent_dropout=0.2, weight_drop=0.3), False, False, True),
        (dict(recurrent_dropout=0.2), True, False, False),
        (dict(weight_drop=0.3), True, False, False),
        (dict(implementation="reference"), True, False, False),
    ],
)
def test_lstm_eligibility(kernel_calls, kwargs, training, gates, uses_kernel):
    m = LSTM(4, 5, **kwargs).train(training)
    m(X, return_gates=gates)
    assert kernel_calls == (["LSTM"] if uses_kernel else [])


def test_gru_rnn_use_torch_kernels(kernel_calls):
    GRU(4, 5)(X)
    RNN(4, 5, nonlinearity="relu")(X, lengths=[6, 2, 3])
    RNN(4, 5, implementation="reference")(X)
    assert kernel_calls == ["GRU", "RNN_RELU"]


def test_forcing_torch_on_a_variant_is_an_error():
    m = LSTM(4, 5, peephole=True, zoneout=0.1, implementation="torch")
    with pytest.raises(ValueError, match="runs standard configurations only; active now: "
                       "peephole, zoneout"):  # fmt: skip
        m(X)
    with pytest.raises(ValueError, match="implementation must be one of auto, reference, torch"):
        LSTM(4, 5, implementation="cudnn")


def test_paths_agree_in_float64_with_gradients():
    torch.manual_seed(0)
    fast = LSTM(4, 5, num_layers=2, bidirectional=True).double()
    ref = LSTM(4, 5, num_layers=2, bidirectional=True, implementation="reference").double()
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(6, 3, 4, dtype=torch.double)
    results = []
    for m in (fast, ref):
        out, (h, c) = m(x, lengths=[6, 1, 4])
        loss = out.square().sum() + h.sum() + c.sum()
        results.append([out, h, c, *torch.autograd.grad(loss, list(m.parameters()))])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
