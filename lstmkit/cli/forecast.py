"""``lstmkit forecast``: the generic train/evaluate/predict with M4 files."""

DEFAULT_OUT = "runs/forecast"
