"""Audio read chunk by chunk by a unidirectional CTC model, the LSTM state carried: what
``speech transcribe --stream-chunk-ms`` and the server's streaming sessions both run
(:meth:`SpeechPredictor.stream`, :meth:`SpeechPredictor.open_stream`).

Frames are cut as the samples arrive (:class:`~lstmkit.data.audio.FrameStream`), normalised
frame by frame (``features.normalize`` ``global`` or ``none``: nothing may look at the
whole utterance) and run through the model a whole ``subsample`` step at a time; the end of
the stream zero-pads the last frames to a whole step, as one pass pads them. So the CTC
log-probabilities equal one pass over the whole audio (tested).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lstmkit.data.audio import FrameStream, normalize
from lstmkit.tasks.base import InputError
from lstmkit.tasks.speech.decode import ctc_decode, transcript


@dataclass(frozen=True)
class SpeechStream:
    """An audio stream: the frames still forming (``frames``), frames waiting for a whole
    ``subsample`` step (``pending``, (T, width)), the LSTM ``state``, and every CTC
    log-probability so far (``log_probs``, (T', C + 1)) for the transcript.

    A chunk is samples (numbers in [-1, 1]) at the model's rate; ``final: true`` ends the
    stream. Each step returns ``frames`` (new CTC steps), ``transcript`` and
    ``confidence``: the best path over everything heard so far, final once ``final`` is
    given.
    """

    predictor: Any
    frames: FrameStream
    pending: Tensor
    state: Any = None
    log_probs: Tensor | None = None
    finished: bool = False

    @classmethod
    def open(cls, predictor: Any) -> SpeechStream:
        try:
            predictor.check_streamable()
        except ValueError as e:
            raise InputError(str(e), "name") from None
        width = predictor.config.features.width
        return cls(predictor, FrameStream(predictor.featurizer.extractor), torch.zeros(0, width))

    @property
    def nbytes(self) -> int:
        tensors = [self.pending, *(self.state or ())]
        if self.log_probs is not None:
            tensors.append(self.log_probs)
        return sum(t.numel() * t.element_size() for t in tensors) + self.frames.buffer.nbytes

    def _run(self, frames: Tensor, state: Any) -> tuple[Tensor, Any]:
        p = self.predictor
        out, state = p.model.step(frames[:, None].to(p.device), state)
        return out[:, 0].cpu(), state

    @torch.no_grad()
    def advance(self, audio: np.ndarray, final: bool = False) -> tuple[SpeechStream, list[Tensor]]:
        """The stream after ``audio`` (and, ``final``, after its end) and the CTC
        log-probabilities it completed, chunk by chunk; this stream is left as it was."""
        config, stats = self.predictor.config, self.predictor.stats
        frames = copy.deepcopy(self.frames)
        k = config.model.subsample
        pending = torch.cat(
            [self.pending, normalize(frames.push(audio), config.features.normalize, stats)]
        )
        outputs, state = [], self.state
        ready = pending.shape[0] - pending.shape[0] % k
        if ready:
            out, state = self._run(pending[:ready], state)
            outputs.append(out)
            pending = pending[ready:]
        if final:
            tail = torch.cat([pending, normalize(frames.flush(), config.features.normalize, stats)])
            if tail.shape[0]:  # the last frames, zero-padded to whole steps as in one pass
                tail = torch.cat([tail, tail.new_zeros((-tail.shape[0]) % k, tail.shape[1])])
                out, state = self._run(tail, state)
                outputs.append(out)
            pending = pending[:0]
        parts = [p for p in (self.log_probs, *outputs) if p is not None]
        log_probs = torch.cat(parts) if parts else None
        return replace(
            self, frames=frames, pending=pending, state=state, log_probs=log_probs, finished=final
        ), outputs

    def step(self, chunk: Any, options: dict[str, Any]) -> tuple[dict[str, Any], SpeechStream]:
        if self.finished:
            raise InputError("this stream has ended; open a new session", "final")
        if not isinstance(chunk, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in chunk
        ):
            raise InputError("must be a list of samples (numbers)")
        audio = np.asarray(chunk, dtype=np.float32)
        if not np.isfinite(audio).all():
            raise InputError("holds NaN or infinite samples")
        final = bool(options.get("final"))
        after, outputs = self.advance(audio, final)
        text, confidence = "", 0.0
        if after.log_probs is not None and after.log_probs.shape[0]:
            digits, confidence = ctc_decode(
                after.log_probs, self.predictor.config.decode.beam_width
            )
            text = transcript(digits)
        output = {
            "frames": int(sum(o.shape[0] for o in outputs)),
            "transcript": text,
            "confidence": round(float(confidence), 6),
            "final": final,
        }
        return output, after
