"""The gradient lab: long-time-lag tasks and gradient diagnostics."""
