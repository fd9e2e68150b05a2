"""The server's settings: limits on what a request may ask, micro-batching and sessions.

Every number here is a bound a client cannot exceed; a request over one is answered with a
4xx JSON error naming the field (see :mod:`lstmkit.serve.app`), never a 500.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lstmkit.config import check_positive


@dataclass
class Limits:
    """What one request may ask.

    Args:
        max_body_bytes: request body size (JSON or WAV). Default: 1 MiB
        max_inputs: items in one ``inputs`` list. Default: 64
        max_chars: characters of one text input, session chunk or prompt. Default: 20000
        max_numbers: numbers in one numeric input (a series, a lab sequence). Default: 100000
        max_new_tokens: tokens one generation may produce. Default: 1000
        max_audio_seconds: length of one uploaded WAV. Default: 30
        timeout_s: a request waiting longer for its result is answered 504. Default: 30
    """

    max_body_bytes: int = 1 << 20
    max_inputs: int = 64
    max_chars: int = 20000
    max_numbers: int = 100_000
    max_new_tokens: int = 1000
    max_audio_seconds: float = 30.0
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        check_positive(self, "limits", tuple(self.__dataclass_fields__))


@dataclass
class BatchConfig:
    """Dynamic micro-batching of concurrent ``predict`` requests to the same model.

    A call takes every queued request up to ``max_batch`` inputs; under load (the previous
    call held several requests) the first one waits at most ``max_wait_ms`` for others.
    ``enabled: False`` runs every request alone (same results).

    Args:
        enabled: batch concurrent requests. Default: ``True``
        max_batch: inputs per batched call. Default: 32
        max_wait_ms: how long the first request of a batch waits for company, under load.
            Default: 5
    """

    enabled: bool = True
    max_batch: int = 32
    max_wait_ms: float = 5.0

    def __post_init__(self) -> None:
        check_positive(self, "batching", ("max_batch",))
        if not self.max_wait_ms >= 0:
            raise ValueError(f"batching.max_wait_ms must be >= 0, got {self.max_wait_ms!r}")


@dataclass
class SessionConfig:
    """Stateful streaming sessions (the recurrent state kept server-side).

    Args:
        max_sessions: open sessions, all models together; one more is refused with 429
            (after expired ones are dropped). Default: 256
        idle_timeout_s: a session not stepped for this long is dropped. Default: 600
        max_state_bytes: the recurrent states of all sessions together. Default: 256 MiB
    """

    max_sessions: int = 256
    idle_timeout_s: float = 600.0
    max_state_bytes: int = 256 << 20

    def __post_init__(self) -> None:
        check_positive(self, "sessions", ("max_sessions", "idle_timeout_s", "max_state_bytes"))


@dataclass
class ServeConfig:
    """The whole server: ``limits``, ``batching``, ``sessions`` and ``threads`` (torch's
    intra-op threads for the models; 0 leaves torch's default)."""

    limits: Limits = field(default_factory=Limits)
    batching: BatchConfig = field(default_factory=BatchConfig)
    sessions: SessionConfig = field(default_factory=SessionConfig)
    threads: int = 0

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads!r}")
