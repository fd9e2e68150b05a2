"""Language modelling: LSTM LMs with AWD-LSTM regularisation, evaluation and generation."""
