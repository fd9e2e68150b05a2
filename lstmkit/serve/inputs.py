"""Request errors and the checks an input passes before it reaches a model.

The server is generic over :class:`~lstmkit.tasks.base.Predictor`: an input is whatever the
task's ``predict`` reads (a text, a prompt or a dict of generation options, a list of
numbers, a list of steps). These checks bound its *size* for every task (characters,
numbers, nesting), bound what a Predictor says it would generate
(:meth:`~lstmkit.tasks.base.Predictor.generation_length`) and ask the Predictor whether an
input may come over HTTP at all (:meth:`~lstmkit.tasks.base.Predictor.check_input`).
Whether the content is right is the Predictor's own judgement: its ``ValueError`` becomes a
422 naming the input.
"""

from __future__ import annotations

from typing import Any

from lstmkit.serve.config import Limits

MAX_DEPTH = 4  # a lab sequence is a list of lists of numbers; deeper nesting is an attack


class RequestError(Exception):
    """A request the server refuses: an HTTP ``status``, the ``field`` at fault (a dotted
    path such as ``inputs[2].max_new``) and a one-line ``message``."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status, self.field, self.message = status, field, message

    def body(self) -> dict[str, Any]:
        return {"error": {"status": self.status, "field": self.field, "message": self.message}}


def _size(value: Any, where: str, limits: Limits, depth: int = 0) -> tuple[int, int]:
    """(characters, numbers) in ``value``; nesting and element types checked on the way."""
    if depth > MAX_DEPTH:
        raise RequestError(422, where, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        return len(value), 0
    if isinstance(value, bool) or value is None:
        return 0, 1
    if isinstance(value, (int, float)):
        return 0, 1
    chars = numbers = 0
    if isinstance(value, list):
        items = ((f"{where}[{k}]", v) for k, v in enumerate(value))
    elif isinstance(value, dict):
        items = ((f"{where}.{k}", v) for k, v in value.items())
    else:  # JSON has nothing else; kept for Python callers
        raise RequestError(422, where, f"a {type(value).__name__} is not a JSON value")
    for path, item in items:
        c, n = _size(item, path, limits, depth + 1)
        chars, numbers = chars + c, numbers + n
        if numbers > limits.max_numbers:
            raise RequestError(413, where, f"more than {limits.max_numbers} numbers")
    return chars, numbers


def check_inputs(predictor: Any, inputs: list[Any], limits: Limits) -> None:
    """Refuse ``inputs`` for ``predictor`` that break a limit or the Predictor's rule."""
    if not isinstance(inputs, list):
        raise RequestError(422, "inputs", "must be a list")
    if not inputs:
        raise RequestError(422, "inputs", "is empty; give at least one input")
    if len(inputs) > limits.max_inputs:
        raise RequestError(
            413, "inputs", f"holds {len(inputs)} inputs; at most {limits.max_inputs} per request"
        )
    for k, item in enumerate(inputs):
        where = f"inputs[{k}]"
        chars, _ = _size(item, where, limits)
        if chars > limits.max_chars:
            raise RequestError(413, where, f"has {chars} characters; at most {limits.max_chars}")
        if isinstance(item, str) and not item.strip():
            raise RequestError(422, where, "is empty")
        try:
            predictor.check_input(item)
        except ValueError as e:
            raise RequestError(422, where, str(e)) from None
        generated = predictor.generation_length(item)
        if generated is not None:
            option, value = generated
            check_max_new(value, f"{where}.{option}", limits)


def check_max_new(value: Any, where: str, limits: Limits) -> None:
    """A generation length: an integer in [0, ``max_new_tokens``]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(422, where, f"must be an integer, got {value!r}")
    if not 0 <= value <= limits.max_new_tokens:
        raise RequestError(422, where, f"must be in [0, {limits.max_new_tokens}], got {value}")


def check_text(value: Any, where: str, limits: Limits) -> str:
    """A non-empty text of at most ``max_chars`` characters."""
    if not isinstance(value, str):
        raise RequestError(422, where, f"must be a text, got {type(value).__name__}")
    if not value:
        raise RequestError(422, where, "is empty")
    if len(value) > limits.max_chars:
        raise RequestError(413, where, f"has {len(value)} characters; at most {limits.max_chars}")
    return value
