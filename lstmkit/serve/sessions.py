"""Stateful streaming sessions: the recurrent state kept server-side between requests.

An LSTM reads a stream one chunk at a time with its state carried, so a client can send
characters as they are typed (or values as they are measured) and get the model's output
for each chunk without ever re-sending the prefix: the LSTM's natural advantage over
models that re-read their context. A :class:`Stepper` says how a task opens a state and
steps it; :class:`SessionStore` keeps the states, bounded in number and in bytes, and drops
a session idle for longer than the timeout.

Steppers: ``lm`` (characters or text in; the log-probability of the chunk's tokens and the
next-token distribution out), ``speech`` (audio samples in; the transcript so far out,
for a unidirectional CTC model) and ``forecast`` (values in; the forecast from the series
so far out). A chunk is tokenized on its own, so for a character model
the results equal one pass over the concatenated text (tested); for a BPE model they do
when chunks end at word boundaries.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from lstmkit.serve.config import SessionConfig
from lstmkit.serve.inputs import RequestError


class Stepper(Protocol):
    """How a task streams: ``open()`` the initial state, ``step(predictor, state, chunk,
    options)`` -> (output, new state), and ``nbytes(state)``."""

    def open(self, predictor: Any) -> Any: ...

    def step(
        self, predictor: Any, state: Any, chunk: Any, options: dict[str, Any]
    ) -> tuple[dict[str, Any], Any]: ...

    def nbytes(self, state: Any) -> int: ...


@dataclass
class LMState:
    """A language model's stream: ``state`` per layer (h, c) each (1, 1, H_l), ``logits``
    (V,) predicting the next token (``None`` before the first chunk), ``tokens`` read."""

    state: list[tuple[Tensor, Tensor]] | None = None
    logits: Tensor | None = None
    tokens: int = 0


class LMStepper:
    """A language model read chunk by chunk.

    Each step returns ``tokens`` (read in this chunk), ``log_prob`` (natural log of the
    probability of the chunk's tokens given everything before; the stream's very first token
    has no prediction and is not counted), ``scored`` (how many were), and ``next``: the
    ``top_k`` most likely next tokens with their probabilities (``distribution: true`` adds
    the whole distribution, ``V`` numbers in vocabulary order).
    """

    def open(self, predictor: Any) -> LMState:
        return LMState()

    @torch.no_grad()
    def step(
        self, predictor: Any, state: LMState, chunk: Any, options: dict[str, Any]
    ) -> tuple[dict[str, Any], LMState]:
        tokenizer, model = predictor.tokenizer, predictor.model
        if not isinstance(chunk, str) or not chunk:
            raise RequestError(422, "input", "must be a non-empty text")
        unknown = tokenizer.unknown(chunk)
        if unknown:
            raise RequestError(422, "input", f"has characters the model never saw: {unknown}")
        ids = tokenizer.encode(chunk)
        if not ids:
            raise RequestError(422, "input", "encodes to no tokens")
        x = torch.tensor(ids, device=predictor.device).unsqueeze(1)  # (L, 1)
        # a short chunk runs lstmkit.kernels.short_step, a long one the fused kernels
        logits, new_state = model(x, state.state)
        logits = logits[:, 0].float()  # (L, V)
        # the distribution before token t: the previous chunk's last one, then this chunk's
        before = logits[:-1]
        if state.logits is not None:
            before = torch.cat([state.logits[None], before])
        targets = x[1:, 0] if state.logits is None else x[:, 0]
        log_prob = before.log_softmax(-1).gather(1, targets[:, None]).sum()
        probs = logits[-1].softmax(-1)
        k = min(int(options.get("top_k", 5)), probs.numel())
        top = probs.topk(k)
        output: dict[str, Any] = {
            "tokens": len(ids),
            "scored": int(targets.numel()),
            "log_prob": float(log_prob),
            "next": [
                {"token": tokenizer.hf.id_to_token(int(i)), "probability": float(p)}
                for p, i in zip(top.values, top.indices)
            ],
        }
        if options.get("distribution"):
            output["distribution"] = probs.tolist()
        return output, LMState(new_state, logits[-1], state.tokens + len(ids))

    def nbytes(self, state: LMState) -> int:
        tensors = [t for pair in state.state or [] for t in pair]
        if state.logits is not None:
            tensors.append(state.logits)
        return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class SpeechState:
    """An audio stream: the frames still forming (``frames``), frames waiting for a whole
    ``subsample`` step (``pending``, (T, n_mels)), the LSTM ``state``, and every CTC
    log-probability so far (``log_probs``, (T', C + 1)) for the transcript."""

    frames: Any
    pending: Tensor
    state: Any = None
    log_probs: Tensor | None = None
    finished: bool = False


class SpeechStepper:
    """A unidirectional CTC speech model fed audio as it arrives, as
    :meth:`~lstmkit.tasks.speech.task.SpeechPredictor.stream` reads a whole file.

    A chunk is samples (numbers in [-1, 1]) at the model's rate; ``final: true`` ends the
    stream (the last frames, zero-padded to a whole step as one pass pads them). Each step
    returns ``frames`` (new CTC steps), ``transcript`` and ``confidence``: the best path over
    everything heard so far, final once ``final`` is given.
    """

    def open(self, predictor: Any) -> SpeechState:
        from lstmkit.data.audio import FrameStream

        try:
            predictor.check_streamable()
        except ValueError as e:
            raise RequestError(422, "name", str(e)) from None
        width = predictor.config.features.width
        return SpeechState(FrameStream(predictor.featurizer.extractor), torch.zeros(0, width))

    @torch.no_grad()
    def step(
        self, predictor: Any, state: SpeechState, chunk: Any, options: dict[str, Any]
    ) -> tuple[dict[str, Any], SpeechState]:
        import copy

        import numpy as np

        from lstmkit.data.audio import normalize
        from lstmkit.tasks.speech.task import ctc_decode, transcript

        if state.finished:
            raise RequestError(422, "final", "this stream has ended; open a new session")
        if not isinstance(chunk, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in chunk
        ):
            raise RequestError(422, "input", "must be a list of samples (numbers)")
        audio = np.asarray(chunk, dtype=np.float32)
        if not np.isfinite(audio).all():
            raise RequestError(422, "input", "holds NaN or infinite samples")
        config, stats, model = predictor.config, predictor.stats, predictor.model
        frames = copy.deepcopy(state.frames)  # the stored session stays as it was on error
        k = config.model.subsample
        new = normalize(frames.push(audio), config.features.normalize, stats)
        pending = torch.cat([state.pending, new])
        outputs, rnn_state = [], state.state
        ready = pending.shape[0] - pending.shape[0] % k
        if ready:
            out, rnn_state = model.step(pending[:ready, None].to(predictor.device), rnn_state)
            outputs.append(out[:, 0].cpu())
            pending = pending[ready:]
        final = bool(options.get("final"))
        if final:
            tail = torch.cat([pending, normalize(frames.flush(), config.features.normalize,
                                                 stats)])  # fmt: skip
            if tail.shape[0]:
                tail = torch.cat([tail, tail.new_zeros((-tail.shape[0]) % k, tail.shape[1])])
                out, rnn_state = model.step(tail[:, None].to(predictor.device), rnn_state)
                outputs.append(out[:, 0].cpu())
            pending = pending[:0]
        parts = [p for p in (state.log_probs, *outputs) if p is not None]
        log_probs = torch.cat(parts) if parts else None
        text, confidence = "", 0.0
        if log_probs is not None and log_probs.shape[0]:
            digits, confidence = ctc_decode(log_probs, config.decode.beam_width)
            text = transcript(digits)
        output = {
            "frames": int(sum(o.shape[0] for o in outputs)),
            "transcript": text,
            "confidence": round(float(confidence), 6),
            "final": final,
        }
        return output, SpeechState(frames, pending, rnn_state, log_probs, final)

    def nbytes(self, state: SpeechState) -> int:
        tensors = [state.pending, *(state.state or ())]
        if state.log_probs is not None:
            tensors.append(state.log_probs)
        return sum(t.numel() * t.element_size() for t in tensors) + state.frames.buffer.nbytes


@dataclass
class ForecastState:
    """A series as it is measured: its latest ``values`` (as many as a forecast reads,
    whole seasons of them) and the ``total`` count received."""

    values: Any
    total: int = 0


class ForecastStepper:
    """A series fed value by value (or chunk by chunk): each step returns the forecast
    from everything received so far, as ``predict`` gives for the whole series posted at
    once (tested equal).

    The forecaster normalises each input window by its own level, so it re-reads its window
    rather than carrying an LSTM state across it: the state kept is the series' tail, the
    longest a forecast reads (the window, the ES-RNN hybrid's history) and under a season
    more, as whole seasons are dropped, so each window keeps its position in the season.
    A step returns ``values`` (received in this chunk), ``total`` and the Predictor's
    output (``forecast``, ``quantiles``, with ``lower``/``upper`` where the model has an
    interval).
    """

    def open(self, predictor: Any) -> ForecastState:
        import numpy as np

        return ForecastState(np.zeros(0))

    def keep(self, predictor: Any) -> int:
        """The fewest values a forecast reads (the tail keeps this many, fewer than a season
        more)."""
        return max(predictor.model.input_size, predictor.model.history, 1)

    @torch.no_grad()
    def step(
        self, predictor: Any, state: ForecastState, chunk: Any, options: dict[str, Any]
    ) -> tuple[dict[str, Any], ForecastState]:
        import numpy as np

        if (
            not isinstance(chunk, list)
            or not chunk
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in chunk)
        ):
            raise RequestError(422, "input", "must be a non-empty list of numbers")
        new = np.asarray(chunk, dtype=np.float64)
        if not np.isfinite(new).all():
            raise RequestError(422, "input", "holds NaN or infinite values")
        values = np.concatenate([state.values, new])
        season = predictor.model.season
        drop = (len(values) - self.keep(predictor)) // season * season
        if drop > 0:  # whole seasons only: the window keeps its phase
            values = values[drop:]
        try:
            (output,) = predictor.predict([values])
        except ValueError as e:
            raise RequestError(422, "input", str(e)) from None
        total = state.total + len(new)
        return {"values": len(new), "total": total, **output}, ForecastState(values, total)

    def nbytes(self, state: ForecastState) -> int:
        return int(state.values.nbytes)


STEPPERS: dict[str, Stepper] = {
    "lm": LMStepper(),
    "speech": SpeechStepper(),
    "forecast": ForecastStepper(),
}


@dataclass
class Session:
    """One stream: its ``id``, the ``model`` it reads with, its ``state`` and bookkeeping."""

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
            old = [k for k, s in self._sessions.items()
                   if now - s.last_used > self.config.idle_timeout_s]  # fmt: skip
            for k in old:
                del self._sessions[k]
        return len(old)

    def create(self, model: str, state: Any, nbytes: int, lock: Any = None) -> Session:
        self.expire()
        with self._mutex:
            if len(self._sessions) >= self.config.max_sessions:
                raise RequestError(429, "sessions", f"{self.config.max_sessions} sessions are open "
                                   "(the server's bound); close one or retry later")  # fmt: skip
            session = Session(secrets.token_hex(16), model, state, nbytes, self.clock(), 0, lock)
            self._sessions[session.id] = session
        return session

    def get(self, model: str, session_id: str) -> Session:
        self.expire()
        session = self._sessions.get(session_id)
        if session is None or session.model != model:
            raise RequestError(404, "session_id", f"no open session {session_id!r} of model "
                               f"{model!r} (never opened, closed, or expired after "
                               f"{self.config.idle_timeout_s:g} s idle)")  # fmt: skip
        session.last_used = self.clock()
        return session

    def update(self, session: Session, state: Any, nbytes: int) -> None:
        """Store a stepped state, within the memory bound (the session is kept as it was
        when the new state would exceed it)."""
        with self._mutex:
            total = self.total_bytes - session.nbytes + nbytes
            if total > self.config.max_state_bytes:
                raise RequestError(429, "sessions", "the sessions' state memory bound "
                                   f"({self.config.max_state_bytes} bytes) is reached")  # fmt: skip
            session.state, session.nbytes = state, nbytes
            session.steps += 1
            session.last_used = self.clock()

    def close(self, model: str, session_id: str) -> None:
        self.get(model, session_id)
        with self._mutex:
            self._sessions.pop(session_id, None)
