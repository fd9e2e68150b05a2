"""Recurrent layers written from their equations, with torch's names, shapes and layout."""

from lstmkit.nn import functional
from lstmkit.nn.attention import Attention
from lstmkit.nn.cells import GRUCell, LSTMCell, RNNCell
from lstmkit.nn.init import chrono_init_
from lstmkit.nn.lstm import LSTM, DropMasks, GateActivations, GateWeights
from lstmkit.nn.rnn import GRU, RNN

__all__ = [
    "Attention",
    "GRU",
    "LSTM",
    "RNN",
    "DropMasks",
    "GRUCell",
    "GateActivations",
    "GateWeights",
    "LSTMCell",
    "RNNCell",
    "chrono_init_",
    "functional",
]
