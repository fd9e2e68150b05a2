"""Stateful streaming sessions: the recurrent state kept server-side between requests.

An LSTM reads a stream one chunk at a time with its state carried, so a client can send
characters as they are typed (or values as they are measured) and get the model's output
for each chunk without ever re-sending the prefix: the LSTM's natural advantage over
models that re-read their context. A model streams when its Predictor offers
``open_stream()`` (a :class:`~lstmkit.tasks.base.Stream`, which says what a chunk is and
what a step returns); :class:`SessionStore` keeps the streams, bounded in number and in
bytes, and drops a session idle for longer than the timeout.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lstmkit.serve.config import SessionConfig
from lstmkit.serve.inputs import RequestError


@dataclass
class Session:
    """One stream: its ``id``, the ``model`` it reads with, its ``state`` (the
    :class:`~lstmkit.tasks.base.Stream`) and bookkeeping."""

    id: str
    model: str
    state: Any
    nbytes: int
    last_used: float
    steps: int = 0
    lock: Any = field(default=None, repr=False)  # an asyncio.Lock: one step at a time


class SessionStore:
    """Open sessions, bounded by ``config`` (count, total state bytes, idle timeout).

    ``clock`` (default ``time.monotonic``) is injectable so expiry is testable without
    sleeping. Thread-safe: sessions are created and stepped from the event loop while
    states are computed in the models' worker threads.
    """

    def __init__(self, config: SessionConfig, clock: Callable[[], float] = time.monotonic):
        self.config, self.clock = config, clock
        self._sessions: dict[str, Session] = {}
        self._mutex = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def total_bytes(self) -> int:
        return sum(s.nbytes for s in self._sessions.values())

    def expire(self) -> int:
        """Drop the sessions idle for longer than the timeout; how many were dropped."""
        now = self.clock()
        with self._mutex:
            old = [
                k
                for k, s in self._sessions.items()
                if now - s.last_used > self.config.idle_timeout_s
            ]
            for k in old:
                del self._sessions[k]
        return len(old)

    def create(self, model: str, state: Any, nbytes: int, lock: Any = None) -> Session:
        self.expire()
        with self._mutex:
            if len(self._sessions) >= self.config.max_sessions:
                raise RequestError(
                    429,
                    "sessions",
                    f"{self.config.max_sessions} sessions are open "
                    "(the server's bound); close one or retry later",
                )
            session = Session(secrets.token_hex(16), model, state, nbytes, self.clock(), 0, lock)
            self._sessions[session.id] = session
        return session

    def get(self, model: str, session_id: str) -> Session:
        self.expire()
        session = self._sessions.get(session_id)
        if session is None or session.model != model:
            raise RequestError(
                404,
                "session_id",
                f"no open session {session_id!r} of model "
                f"{model!r} (never opened, closed, or expired after "
                f"{self.config.idle_timeout_s:g} s idle)",
            )
        session.last_used = self.clock()
        return session

    def update(self, session: Session, state: Any, nbytes: int) -> None:
        """Store a stepped state, within the memory bound (the session is kept as it was
        when the new state would exceed it)."""
        with self._mutex:
            total = self.total_bytes - session.nbytes + nbytes
            if total > self.config.max_state_bytes:
                raise RequestError(
                    429,
                    "sessions",
                    "the sessions' state memory bound "
                    f"({self.config.max_state_bytes} bytes) is reached",
                )
            session.state, session.nbytes = state, nbytes
            session.steps += 1
            session.last_used = self.clock()

    def close(self, model: str, session_id: str) -> None:
        self.get(model, session_id)
        with self._mutex:
            self._sessions.pop(session_id, None)
