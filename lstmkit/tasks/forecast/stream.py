"""A series fed value by value (or chunk by chunk): what the server's streaming sessions step
(:meth:`ForecastPredictor.open_stream`).

Each step returns the forecast from everything received so far, as ``predict`` gives for the
whole series posted at once (tested equal). The forecaster normalises each input window by
its own level, so it re-reads its window rather than carrying an LSTM state across it: the
state kept is the series' tail, the longest a forecast reads (the window, the ES-RNN
hybrid's history) and under a season more, as whole seasons are dropped, so each window
keeps its position in the season.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lstmkit.tasks.base import InputError


@dataclass(frozen=True)
class ForecastStream:
    """A series as it is measured: its latest ``values`` (as many as a forecast reads, whole
    seasons of them) and the ``total`` count received.

    A step returns ``values`` (received in this chunk), ``total`` and the Predictor's output
    (``forecast``, ``quantiles``, with ``lower``/``upper`` where the model has an interval).
    """

    predictor: Any
    values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    total: int = 0

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes)

    def keep(self) -> int:
        """The fewest values a forecast reads (the tail keeps this many, fewer than a season
        more)."""
        model = self.predictor.model
        return max(model.input_size, model.history, 1)

    def step(self, chunk: Any, options: dict[str, Any]) -> tuple[dict[str, Any], ForecastStream]:
        if (
            not isinstance(chunk, list)
            or not chunk
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in chunk)
        ):
            raise InputError("must be a non-empty list of numbers")
        new = np.asarray(chunk, dtype=np.float64)
        if not np.isfinite(new).all():
            raise InputError("holds NaN or infinite values")
        values = np.concatenate([self.values, new])
        season = self.predictor.model.season
        drop = (len(values) - self.keep()) // season * season
        if drop > 0:  # whole seasons only: the window keeps its phase
            values = values[drop:]
        try:
            (output,) = self.predictor.predict([values])
        except ValueError as e:
            raise InputError(str(e)) from None
        total = self.total + len(new)
        return {"values": len(new), "total": total, **output}, ForecastStream(
            self.predictor, values, total
        )
