"""Bad input gets an exception naming the problem, in torch's words where torch has some."""

import re

import pytest
import torch

from lstmkit.nn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell


@pytest.mark.parametrize(
    "kwargs,exc,message",
    [
        (dict(hidden_size=0), ValueError, "hidden_size must be greater than zero"),
        (dict(input_size=-1), ValueError, "input_size must be greater than zero"),
        (dict(num_layers=0), ValueError, "num_layers must be greater than zero"),
        (dict(hidden_size=4.0), TypeError, "hidden_size should be of type int, got: float"),
        (dict(proj_size=5), ValueError, "proj_size has to be smaller than hidden_size"),
        (dict(proj_size=7), ValueError, "proj_size has to be smaller than hidden_size"),
        (dict(proj_size=-1), ValueError, "proj_size should be a positive integer or zero"),
        (dict(dropout=1.5), ValueError, "dropout should be a number in range [0, 1]"),
        (dict(dropout=-0.1), ValueError, "dropout should be a number in range [0, 1]"),
        (dict(dropout=True), ValueError, "dropout should be a number in range [0, 1]"),
        (dict(zoneout=1.2), ValueError, "zoneout should be a number in range [0, 1]"),
        (dict(zoneout=(0.1, 0.2, 0.3)), ValueError, "zoneout must be a probability or a pair"),
        (dict(recurrent_dropout=2), ValueError, "recurrent_dropout should be a number in range"),
        (dict(weight_drop=-0.5), ValueError, "weight_drop should be a number in range [0, 1]"),
        (dict(forget_bias="1"), TypeError, "forget_bias should be a number or None"),
        (dict(bias=1), TypeError, "bias should be of type bool, got: int"),
        (dict(batch_first="yes"), TypeError, "batch_first should be of type bool, got: str"),
    ],
)
def test_constructor_errors(kwargs, exc, message):
    args = dict(input_size=3, hidden_size=5) | kwargs
    with pytest.raises(exc, match=re.escape(message)):
        LSTM(**args)


def test_dropout_with_one_layer_warns_like_torch():
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        LSTM(3, 5, dropout=0.5)


def test_cell_dtype_errors_are_also_value_errors():
    """Torch raises RuntimeError there; lstmkit's named error is both, as it was a ValueError."""
    from lstmkit.nn.cells import DtypeMismatchError

    with pytest.raises(ValueError, match="GRUCell input dtype"):
        GRUCell(3, 5)(torch.randn(2, 3).double())
    assert issubclass(DtypeMismatchError, RuntimeError)


@pytest.mark.parametrize("cls", [GRU, RNN])
@pytest.mark.parametrize("proj_size", [0, 2])
def test_proj_size_is_the_lstms_only(cls, proj_size):
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM, not RNN"):
        cls(3, 5, proj_size=proj_size)


def test_rnn_constructor_errors():
    with pytest.raises(ValueError, match="Unknown nonlinearity 'sigmoid'"):
        RNN(3, 5, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size must be greater than zero"):
        GRU(3, 0)
    with pytest.raises(ValueError, match="input_size must be greater than zero"):
        LSTMCell(0, 3)


LSTM_2x = LSTM(3, 5, num_layers=2)
X = torch.randn(7, 4, 3)


@pytest.mark.parametrize(
    "call,exc,message",
    [
        (
            lambda: LSTM_2x(torch.randn(2, 7, 4, 3)),
            ValueError,
            "LSTM: Expected input to be 2D or 3D, got 4D instead",
        ),
        (
            lambda: GRU(3, 5)(torch.randn(3)),
            ValueError,
            "GRU: Expected input to be 2D or 3D, got 1D instead",
        ),
        (
            lambda: LSTM_2x(torch.randn(7, 4, 2)),
            RuntimeError,
            "input.size(-1) must be equal to input_size. Expected 3, got 2",
        ),
        (
            lambda: LSTM_2x(X.double()),
            ValueError,
            "RNN input dtype (torch.float64) does not match weight dtype (torch.float32). "
            "Convert input: input.to(torch.float32), or convert model: model.to(torch.float64)",
        ),
        (
            lambda: GRU(3, 5).double()(X),
            ValueError,
            "RNN input dtype (torch.float32) does not match weight dtype (torch.float64)",
        ),
        (
            lambda: LSTM_2x(X.to("meta")),
            RuntimeError,
            "Input and parameter tensors are not at the same device, found input tensor at meta",
        ),
        (
            lambda: LSTM_2x(torch.randn(0, 4, 3)),
            RuntimeError,
            "Expected sequence length to be larger than 0 in RNN (LSTM input of 4 sequences",
        ),
        (
            lambda: GRU(3, 5, batch_first=True)(torch.randn(4, 0, 3)),
            RuntimeError,
            "Expected sequence length to be larger than 0 in RNN",
        ),
        (
            lambda: LSTM_2x(X, (torch.zeros(2, 4, 5), torch.zeros(2, 4, 6))),
            RuntimeError,
            "Expected hidden[1] size (2, 4, 5), got [2, 4, 6]",
        ),
        (
            lambda: LSTM_2x(X, (torch.zeros(1, 4, 5), torch.zeros(2, 4, 5))),
            RuntimeError,
            "Expected hidden[0] size (2, 4, 5), got [1, 4, 5]",
        ),
        (
            lambda: LSTM_2x(X, (torch.zeros(2, 3, 5), torch.zeros(2, 3, 5))),
            RuntimeError,
            "Expected hidden[0] size (2, 4, 5), got [2, 3, 5]",
        ),
        (
            lambda: LSTM_2x(X, (torch.zeros(2, 5), torch.zeros(2, 5))),
            RuntimeError,
            "For batched 3-D input, hx and cx should also be 3-D but got (2-D, 2-D) tensors",
        ),
        (
            lambda: LSTM_2x(X[:, 0], (torch.zeros(2, 1, 5), torch.zeros(2, 1, 5))),
            RuntimeError,
            "For unbatched 2-D input, hx and cx should also be 2-D but got (3-D, 3-D) tensors",
        ),
        (
            lambda: LSTM_2x(X[:, 0], (torch.zeros(2, 4), torch.zeros(2, 5))),
            RuntimeError,
            "Expected hidden[0] size (2, 5), got [2, 4]",
        ),
        (lambda: LSTM_2x(X, torch.zeros(2, 4, 5)), TypeError, "hx must be a tuple (h_0, c_0)"),
        (
            lambda: LSTM_2x(X, (torch.zeros(2, 4, 5).double(), torch.zeros(2, 4, 5))),
            ValueError,
            "hx dtype (torch.float64) does not match input dtype (torch.float32)",
        ),
        (
            lambda: LSTM_2x(X, (torch.zeros(2, 4, 5, device="meta"), torch.zeros(2, 4, 5))),
            RuntimeError,
            "Input and hidden tensors are not at the same device",
        ),
        (
            lambda: GRU(3, 5)(X, torch.zeros(1, 4, 6)),
            RuntimeError,
            "Expected hidden size (1, 4, 5), got [1, 4, 6]",
        ),
        (
            lambda: RNN(3, 5)(X, torch.zeros(4, 5)),
            RuntimeError,
            "For batched 3-D input, hx should also be 3-D but got 2-D tensor",
        ),
        (
            lambda: LSTM(3, 5, proj_size=2)(X, (torch.zeros(1, 4, 5), torch.zeros(1, 4, 5))),
            RuntimeError,
            "Expected hidden[0] size (1, 4, 2), got [1, 4, 5]",
        ),
    ],
)
def test_forward_errors(call, exc, message):
    with pytest.raises(exc, match=re.escape(message)):
        call()


@pytest.mark.parametrize(
    "lengths,exc,message",
    [
        ([7, 0, 3, 2], ValueError, "lengths[1] = 0 must be positive"),
        ([7, -2, 3, 2], ValueError, "lengths[1] = -2 must be positive"),
        ([7, 8, 3, 2], ValueError, "lengths[1] = 8 exceeds the input's sequence length 7"),
        (
            [7, 3, 2],
            ValueError,
            "lengths must have one entry per sequence in the batch: expected shape (4,), got (3,)",
        ),
        ([[7, 3, 2, 1]], ValueError, "expected shape (4,), got (1, 4)"),
        ([7.0, 3.0, 2.0, 1.0], TypeError, "lengths must hold integers, got dtype torch.float32"),
    ],
)
def test_lengths_errors(lengths, exc, message):
    with pytest.raises(exc, match=re.escape(message)):
        LSTM_2x(X, lengths=torch.tensor(lengths))


def test_lengths_with_packed_or_unbatched_input_is_refused():
    packed = torch.nn.utils.rnn.pack_padded_sequence(X, [7, 5, 3, 1])
    with pytest.raises(ValueError, match="lengths must not be given with a PackedSequence"):
        LSTM_2x(packed, lengths=[7, 5, 3, 1])
    with pytest.raises(ValueError, match="lengths requires batched 3-D input"):
        LSTM_2x(X[:, 0], lengths=[7])


@pytest.mark.parametrize(
    "call,exc,message",
    [
        (
            lambda: LSTMCell(3, 5)(torch.randn(2, 2, 3)),
            ValueError,
            "LSTMCell: Expected input to be 1D or 2D, got 3D instead",
        ),
        (
            lambda: GRUCell(3, 5)(torch.randn(2, 4)),
            RuntimeError,
            "input has inconsistent input_size: got 4 expected 3",
        ),
        (
            lambda: RNNCell(3, 5)(torch.randn(2, 3), torch.randn(3, 5)),
            RuntimeError,
            "Input batch size 2 doesn't match hidden0 batch size 3",
        ),
        (
            lambda: LSTMCell(3, 5)(torch.randn(2, 3), (torch.randn(2, 5), torch.randn(2, 4))),
            RuntimeError,
            "hidden1 has inconsistent hidden_size: got 4, expected 5",
        ),
        (
            lambda: LSTMCell(3, 5)(torch.randn(2, 3), (torch.randn(5), torch.randn(5))),
            RuntimeError,
            "Input batch size 2 doesn't match hidden0 batch size 5",
        ),
        (
            lambda: RNNCell(3, 5)(torch.randn(5, 3), torch.randn(5)),
            RuntimeError,
            "Expected hidden0 to be 2D like the input, got 1D instead",
        ),
        (
            lambda: GRUCell(3, 5)(torch.randn(2, 3), torch.randn(2, 1, 1, 5)),
            ValueError,
            "GRUCell: Expected hidden to be 1D or 2D, got 4D instead",
        ),
        (
            lambda: LSTMCell(3, 5)(torch.randn(2, 3), (torch.randn(2, 5), torch.randn(1, 2, 5))),
            ValueError,
            "LSTMCell: Expected hx[1] to be 1D or 2D, got 3D instead",
        ),
        (
            lambda: GRUCell(3, 5)(torch.randn(2, 3).double()),
            RuntimeError,
            "GRUCell input dtype (torch.float64) does not match weight dtype (torch.float32)",
        ),
        (
            lambda: GRUCell(3, 5)(torch.randn(2, 4).double()),
            RuntimeError,  # sizes first
            "input has inconsistent input_size: got 4 expected 3",
        ),
        (
            lambda: RNNCell(3, 5)(torch.randn(2, 3), torch.randn(2, 5).double()),
            RuntimeError,
            "hx dtype (torch.float64) does not match input dtype (torch.float32)",
        ),
    ],
)
def test_cell_errors(call, exc, message):
    with pytest.raises(exc, match=re.escape(message)):
        call()


def test_autocast_lifts_the_dtype_check_as_in_torch():
    lstm = LSTM(3, 5, num_layers=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h_n, c_n) = lstm(X.bfloat16())
    assert out.shape == (7, 4, 5) and out.dtype == torch.bfloat16
