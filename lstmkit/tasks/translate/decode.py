"""Decoding a :class:`~lstmkit.tasks.translate.model.Seq2Seq`: greedy and batched beam search.

Both read the model through two methods, ``encode(src, lengths) -> memory`` and
``step(tokens, memory) -> (log_probs (N, V), weights (N, S), state)``, with
:func:`~lstmkit.tasks.translate.model.reorder` to copy or reorder a memory, so any model with
that interface decodes (the tests use a constructed one).

* ``<pad>``, ``<unk>`` and ``<s>`` are never emitted (their log-probability is set to -inf).
* A hypothesis ends at ``</s>`` and takes no step after it; one that reaches the maximum
  length, ``ceil(max_len_ratio * source length) + 5``, ends there.
* Beam search ranks finished hypotheses by ``log p / lp(|y|)`` with GNMT's length penalty
  ``lp = ((5 + |y|) / 6) ** length_penalty`` (Wu et al. 2016; 0: raw log-probability; |y|
  counts ``</s>``), keeps ``beam`` live hypotheses per sentence, and stops a sentence once
  ``beam`` have finished and no live one can still beat the best finished one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from lstmkit.data.parallel import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from lstmkit.tasks.translate.model import reorder

BANNED = (PAD_ID, UNK_ID, BOS_ID)


def check_beam(beam: int, vocab_size: int) -> None:
    """A ``--beam`` asked for at translation time: from 1 (greedy) to the size of the target
    vocabulary (a wider beam cannot fill at the first step, and each hypothesis costs a
    decoder row per sentence)."""
    if not 1 <= beam <= vocab_size:
        raise ValueError(
            f"--beam must be in [1, {vocab_size}] (1: greedy; at most the target "
            f"vocabulary's {vocab_size} subwords), got {beam}"
        )


@dataclass
class Hypothesis:
    """A translation: target ``tokens`` (without ``<s>``/``</s>``), ``score`` (the summed
    log-probability, ``</s>`` included when it ended there), the ranking score ``normalized``
    (length-penalised) and the attention ``weights`` (len(tokens) + 1, S) when kept."""

    tokens: list[int]
    score: float
    normalized: float
    weights: Tensor | None = None


def max_steps(length: int, ratio: float) -> int:
    return math.ceil(ratio * length) + 5


def length_penalty(length: int, alpha: float) -> float:
    return ((5 + length) / 6) ** alpha if alpha else 1.0


def _ban(log_probs: Tensor) -> Tensor:
    log_probs[:, list(BANNED)] = float("-inf")
    return log_probs


@torch.no_grad()
def greedy(
    model, src: Tensor, lengths: Tensor, max_len_ratio: float = 1.5, keep_weights: bool = False
) -> list[Hypothesis]:
    """The most probable next token at every step, for each of the N sentences of ``src``."""
    memory = model.encode(src, lengths)
    n = src.shape[0]
    limit = [max_steps(int(k), max_len_ratio) for k in lengths]
    tokens = torch.full((n,), BOS_ID, dtype=torch.long, device=src.device)
    out: list[list[int]] = [[] for _ in range(n)]
    scores = [0.0] * n
    weights: list[list[Tensor]] = [[] for _ in range(n)]
    alive = list(range(n))  # rows of memory still decoding
    rows = torch.arange(n, device=src.device)
    for t in range(max(limit)):
        log_probs, w, state = model.step(tokens, memory)
        best_lp, best = _ban(log_probs).max(-1)
        memory = memory._replace(state=state)
        keep = []
        for r, i in enumerate(alive):
            token = int(best[r])
            scores[i] += float(best_lp[r])
            if keep_weights:
                weights[i].append(w[r, : int(lengths[i])].cpu())
            if token == EOS_ID:
                continue
            out[i].append(token)
            if t + 1 < limit[i]:
                keep.append(r)
        if not keep:
            break
        if len(keep) < len(alive):
            index = rows.new_tensor(keep)
            memory = reorder(memory, index)
            best = best[index]
            alive = [alive[r] for r in keep]
        tokens = best
    return [
        Hypothesis(out[i], scores[i], scores[i], torch.stack(weights[i]) if keep_weights else None)
        for i in range(n)
    ]


@torch.no_grad()
def beam_search(
    model,
    src: Tensor,
    lengths: Tensor,
    beam: int = 5,
    length_penalty_alpha: float = 0.6,
    max_len_ratio: float = 1.5,
    n_best: int = 1,
    keep_weights: bool = False,
) -> list[list[Hypothesis]]:
    """The ``n_best`` best of ``beam`` hypotheses of each sentence of ``src``, best first."""
    if beam < 1 or not 1 <= n_best <= beam:
        raise ValueError(
            f"need beam >= 1 and 1 <= n_best <= beam, got beam {beam}, n_best {n_best}"
        )
    n, device = src.shape[0], src.device
    memory = model.encode(src, lengths)
    memory = reorder(memory, torch.arange(n, device=device).repeat_interleave(beam))
    limit = [max_steps(int(k), max_len_ratio) for k in lengths]
    # (N, K) running log-probabilities; only beam 0 is live at the start
    scores = torch.full((n, beam), float("-inf"), device=device)
    scores[:, 0] = 0.0
    tokens = torch.full((n * beam,), BOS_ID, dtype=torch.long, device=device)
    history = torch.zeros(n * beam, 0, dtype=torch.long, device=device)
    att = torch.zeros(n * beam, 0, src.shape[1], device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(n)]
    done = [False] * n

    def finish(i: int, seq: Tensor, score: float, w: Tensor) -> None:
        toks = seq.tolist()
        finished[i].append(
            Hypothesis(
                toks,
                score,
                score / length_penalty(len(toks) + 1, length_penalty_alpha),
                w[:, : int(lengths[i])].cpu() if keep_weights else None,
            )
        )

    for t in range(max(limit)):
        log_probs, w, state = model.step(tokens, memory)
        memory = memory._replace(state=state)
        vocab = log_probs.shape[-1]
        total = scores.view(-1, 1) + _ban(log_probs)  # (N*K, V)
        # 2K candidates per sentence, so K survive even if K of them end here
        top, idx = total.view(n, -1).topk(min(2 * beam, beam * vocab), -1)
        origin, token = idx // vocab, idx % vocab
        new_scores = torch.full_like(scores, float("-inf"))
        new_origin = (torch.arange(n, device=device) * beam)[:, None].repeat(1, beam)
        new_token = torch.full((n, beam), EOS_ID, dtype=torch.long, device=device)
        for i in range(n):
            if done[i]:
                continue
            kept = 0
            for j in range(top.shape[1]):
                score = float(top[i, j])
                if score == float("-inf") or kept == beam:
                    break
                row = i * beam + int(origin[i, j])
                if int(token[i, j]) == EOS_ID:
                    weights = torch.cat([att[row], w[row : row + 1]]) if keep_weights else w
                    finish(i, history[row], score, weights)
                    continue
                new_scores[i, kept] = score
                new_origin[i, kept] = row
                new_token[i, kept] = token[i, j]
                kept += 1
            at_limit = t + 1 >= limit[i]
            if at_limit:  # the survivors end here, unfinished
                for k in range(kept):
                    row = int(new_origin[i, k])
                    seq = torch.cat([history[row], new_token[i, k : k + 1]])
                    weights = torch.cat([att[row], w[row : row + 1]]) if keep_weights else w
                    finish(i, seq, float(new_scores[i, k]), weights)
                new_scores[i] = float("-inf")
            if at_limit or _settled(
                finished[i], new_scores[i], beam, limit[i], length_penalty_alpha
            ):
                done[i] = True
                new_scores[i] = float("-inf")
        if all(done):
            break
        rows = new_origin.view(-1)
        history = torch.cat([history[rows], new_token.view(-1, 1)], 1)
        if keep_weights:
            att = torch.cat([att[rows], w[rows].unsqueeze(1)], 1)
        memory = reorder(memory, rows)
        tokens = new_token.view(-1)
        scores = new_scores
    results = []
    for i in range(n):
        hyps = sorted(finished[i], key=lambda h: -h.normalized)
        results.append(hyps[:n_best])
    return results


def _settled(
    finished: list[Hypothesis], alive: Tensor, beam: int, limit: int, alpha: float
) -> bool:
    """``beam`` hypotheses have finished and no live one can outrank the best: a live
    log-probability only falls, and its penalty is at most ``lp(limit + 1)`` (alpha >= 0)."""
    top = float(alive.max())
    if top == float("-inf"):  # nothing left alive
        return True
    if len(finished) < beam:
        return False
    best = max(h.normalized for h in finished)
    return top / length_penalty(limit + 1, max(alpha, 0.0)) < best
