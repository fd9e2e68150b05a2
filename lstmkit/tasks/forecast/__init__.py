"""Time-series forecasting (M4): data windows, a global LSTM forecaster, M4 scoring."""
