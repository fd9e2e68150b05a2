"""``lstmkit speech``: the generic train/evaluate/predict with FSDD recordings, and ``speech transcribe``."""

DEFAULT_OUT = "runs/speech"
