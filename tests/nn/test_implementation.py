"""The documented eligibility rules choose the path; forcing a path works or fails clearly."""

import pytest
import torch

from lstmkit.nn import GRU, LSTM, RNN


@pytest.fixture
def kernel_calls(monkeypatch):
    import lstmkit.nn.base as base

    calls = []

    def spy_on(name):
        real = getattr(base, name)

        def spy(*args, **kwargs):
            calls.append(args[0])
            return real(*args, **kwargs)

        monkeypatch.setattr(base, name, spy)

    spy_on("torch_rnn")
    spy_on("torch_rnn_packed")  # a PackedSequence handed to torch's kernel as it is
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
        (dict(weight_drop=0.3), True, False, True),  # on the dropped weights
        (dict(weight_drop=0.3, peephole=True), True, False, False),
        (dict(implementation="reference"), True, False, False),
    ],
)
def test_lstm_eligibility(kernel_calls, kwargs, training, gates, uses_kernel):
    m = LSTM(4, 5, **kwargs).train(training)
    m(X, return_gates=gates)
    assert kernel_calls == (["LSTM"] if uses_kernel else [])


@pytest.mark.parametrize("packed", [False, True])
def test_variable_lengths_on_the_cpu_take_lstmkits_kernel(kernel_calls, monkeypatch, packed):
    from torch.nn.utils.rnn import pack_padded_sequence

    from lstmkit.kernels.fused_lstm import extension_available

    lengths = torch.tensor([6, 2, 3])
    x = pack_padded_sequence(X, lengths, enforce_sorted=False) if packed else X
    kwargs = {} if packed else {"lengths": lengths}
    LSTM(4, 5, num_layers=2)(x, **kwargs)
    assert kernel_calls == ([] if extension_available() else ["LSTM"])
    with torch.no_grad():  # inference: torch's packed forward is as fast
        LSTM(4, 5)(x, **kwargs)
    LSTM(4, 5, implementation="torch")(x, **kwargs)  # forced: torch's packed kernel
    LSTM(4, 5)(X, lengths=[6, 6, 6])  # all full: no masking, torch's kernel
    monkeypatch.setenv("LSTMKIT_NO_EXTENSION", "1")
    LSTM(4, 5)(x, **kwargs)  # no extension: torch's packed kernel
    assert kernel_calls[-4:] == ["LSTM"] * 4


@pytest.fixture
def fused_calls(monkeypatch):
    import lstmkit.nn.lstm as lstm_module

    calls = []
    real = lstm_module.lstm_direction

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(lstm_module, "lstm_direction", spy)
    return calls


@pytest.mark.parametrize(
    "kwargs,gates,fused",
    [
        (dict(peephole=True, num_layers=2, bidirectional=True), False, 4),  # every direction
        (dict(zoneout=0.1), False, 1),
        (dict(weight_drop=0.3, num_layers=2), False, 0),  # torch's kernel, dropped weights
        (dict(), True, 1),  # return_gates on a standard configuration
        (dict(), False, 0),  # torch's kernel
        (dict(implementation="fused"), False, 1),
        (dict(peephole=True, implementation="reference"), False, 0),
    ],
)
def test_lstmkit_kernel_eligibility(fused_calls, kwargs, gates, fused):
    from lstmkit.kernels.fused_lstm import extension_available

    if not extension_available():
        pytest.skip("the fused LSTM extension is not built here")
    LSTM(4, 5, **kwargs).train()(X, return_gates=gates)
    assert len(fused_calls) == fused


def test_without_the_extension_variants_run_the_reference_path(fused_calls, monkeypatch):
    monkeypatch.setenv("LSTMKIT_NO_EXTENSION", "1")
    out, _ = LSTM(4, 5, peephole=True, implementation="fused")(X)
    assert fused_calls == [] and out.shape == (6, 3, 5)


def test_gru_rnn_use_torch_kernels(kernel_calls):
    GRU(4, 5)(X)
    RNN(4, 5, nonlinearity="relu")(X, lengths=[6, 2, 3])
    RNN(4, 5, implementation="reference")(X)
    assert kernel_calls == ["GRU", "RNN_RELU"]


def test_forcing_torch_on_a_variant_is_an_error():
    m = LSTM(4, 5, peephole=True, zoneout=0.1, implementation="torch")
    with pytest.raises(
        ValueError, match="runs standard configurations only; active now: peephole, zoneout"
    ):
        m(X)
    with pytest.raises(ValueError, match="must be one of auto, reference, torch, fused"):
        LSTM(4, 5, implementation="cudnn")
    with pytest.raises(ValueError, match="must be one of auto, reference, torch; got 'fused'"):
        GRU(4, 5, implementation="fused")


@pytest.mark.parametrize("implementation", ["auto", "torch"])
def test_paths_agree_in_float64_with_gradients(implementation):
    torch.manual_seed(0)
    fast = LSTM(4, 5, num_layers=2, bidirectional=True, implementation=implementation).double()
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


@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_packed_input_goes_to_torchs_kernel_as_it_is(cls, monkeypatch):
    """No padding and repacking around torch's kernel: its packed output comes back as it is,
    equal to the reference path's, with hx and the final states in the caller's order."""
    from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

    import lstmkit.nn.base as base

    def no_padding(*args, **kwargs):
        raise AssertionError("the packed input was padded")

    torch.manual_seed(0)
    fast = cls(4, 5, num_layers=2, bidirectional=True).double()
    ref = cls(4, 5, num_layers=2, bidirectional=True, implementation="reference").double()
    ref.load_state_dict(fast.state_dict())
    x = pack_padded_sequence(
        torch.randn(6, 3, 4, dtype=torch.double), torch.tensor([2, 6, 4]), enforce_sorted=False
    )
    h0 = torch.randn(4, 3, 5, dtype=torch.double)
    hx = (h0, torch.randn_like(h0)) if cls is LSTM else h0
    want_out, want_final = ref(x, hx)
    monkeypatch.setattr(base, "pad_packed_sequence", no_padding)
    with torch.no_grad():  # LSTM: torch's kernel for packed input in inference only
        out, final = fast(x, hx)
    assert isinstance(out, PackedSequence)
    assert torch.equal(out.batch_sizes, x.batch_sizes)
    assert torch.equal(out.sorted_indices, x.sorted_indices)
    torch.testing.assert_close(out.data, want_out.data, rtol=0, atol=1e-10)
    for got, want in zip(
        final if cls is LSTM else [final], want_final if cls is LSTM else [want_final]
    ):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
