"""A language model read chunk by chunk with its state carried: what the server's streaming
sessions step (:meth:`LMPredictor.open_stream`).

An LSTM reads a stream one chunk at a time, so a client can send characters as they are
typed and get the model's output for each chunk without ever re-sending the prefix. A chunk
is tokenized on its own, so for a character model the results equal one pass over the
concatenated text (tested); for a BPE model they do when chunks end at word boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lstmkit.tasks.base import InputError


@dataclass(frozen=True)
class LMStream:
    """A language model's stream: ``state`` per layer (h, c) each (1, 1, H_l), ``logits``
    (V,) predicting the next token (``None`` before the first chunk), ``tokens`` read.

    Each step returns ``tokens`` (read in this chunk), ``log_prob`` (natural log of the
    probability of the chunk's tokens given everything before; the stream's very first token
    has no prediction and is not counted), ``scored`` (how many were), and ``next``: the
    ``top_k`` most likely next tokens with their probabilities (``distribution: true`` adds
    the whole distribution, ``V`` numbers in vocabulary order).
    """

    predictor: Any
    state: list[tuple[Tensor, Tensor]] | None = None
    logits: Tensor | None = None
    tokens: int = 0

    @property
    def nbytes(self) -> int:
        tensors = [t for pair in self.state or [] for t in pair]
        if self.logits is not None:
            tensors.append(self.logits)
        return sum(t.numel() * t.element_size() for t in tensors)

    @torch.no_grad()
    def step(self, chunk: Any, options: dict[str, Any]) -> tuple[dict[str, Any], LMStream]:
        tokenizer, model = self.predictor.tokenizer, self.predictor.model
        if not isinstance(chunk, str) or not chunk:
            raise InputError("must be a non-empty text")
        unknown = tokenizer.unknown(chunk)
        if unknown:
            raise InputError(f"has characters the model never saw: {unknown}")
        ids = tokenizer.encode(chunk)
        if not ids:
            raise InputError("encodes to no tokens")
        x = torch.tensor(ids, device=self.predictor.device).unsqueeze(1)  # (L, 1)
        # a short chunk runs lstmkit.kernels.short_step, a long one the fused kernels
        logits, new_state = model(x, self.state)
        logits = logits[:, 0].float()  # (L, V)
        # the distribution before token t: the previous chunk's last one, then this chunk's
        before = logits[:-1]
        if self.logits is not None:
            before = torch.cat([self.logits[None], before])
        targets = x[1:, 0] if self.logits is None else x[:, 0]
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
        return output, LMStream(self.predictor, new_state, logits[-1], self.tokens + len(ids))
