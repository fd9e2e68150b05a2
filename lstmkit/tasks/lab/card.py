"""What the model card of a lab model says of the task (a TaskCard)."""

from lstmkit.tasks.base import LSTM_CITATION, TaskCard

CARD = TaskCard(
    "long-time-lag experiment",
    None,
    "Synthetic sequences (the adding, temporal-order and copy problems of Hochreiter & "
    "Schmidhuber 1997 and Arjovsky et al. 2016), generated fresh from a seed; the test "
    "sequences from an unseen seed.",
    LSTM_CITATION,
    "Studying how recurrent models learn long time lags (gradients, gates, chrono initialisation).",
    "Solves its synthetic problem at the trained length T only; it is not a model of any "
    "real data.",
    ("solved_fraction", "accuracy", "T", "test_sequences"),
)
