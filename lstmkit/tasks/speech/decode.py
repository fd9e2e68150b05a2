"""CTC decoding: greedy (best path) and prefix beam search, on one utterance's
log-probabilities (T, C) with the blank at index 0.

Greedy takes each frame's most probable class, merges repeats and drops blanks. Prefix
beam search (Hannun et al. 2014, without a language model) keeps the ``beam_width`` label
prefixes of highest total probability, each summed over all the frame paths that collapse
to it (split by whether the path ends in a blank, so that ``a a`` and ``a - a`` are told
apart): it finds the most probable *labelling* where greedy finds the most probable *path*.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

NEG_INF = -math.inf


def collapse(path: list[int], blank: int = 0) -> list[int]:
    """Merge repeated labels, then drop blanks.

    >>> collapse([0, 3, 3, 0, 3, 1, 1, 0])
    [3, 3, 1]
    """
    out, previous = [], None
    for label in path:
        if label != previous and label != blank:
            out.append(label)
        previous = label
    return out


def greedy(log_probs: Tensor | np.ndarray, blank: int = 0) -> list[int]:
    """The labels of the best path of ``log_probs`` (T, C)."""
    return collapse(np.asarray(log_probs).argmax(-1).tolist(), blank)


def _lse(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def prefix_beam_search(
    log_probs: Tensor | np.ndarray, beam_width: int = 8, blank: int = 0
) -> list[tuple[list[int], float]]:
    """The ``beam_width`` best labellings of ``log_probs`` (T, C) with their log
    probabilities (summed over their paths), best first.

    >>> import numpy as np
    >>> lp = np.log([[0.6, 0.4], [0.6, 0.4]])  # greedy says "", but P("1") = 0.64
    >>> [(labels, round(math.exp(score), 2)) for labels, score in prefix_beam_search(lp, 2)]
    [([1], 0.64), ([], 0.36)]
    """
    if beam_width < 1:
        raise ValueError(f"beam_width must be >= 1, got {beam_width}")
    lp = np.asarray(log_probs, dtype=np.float64)
    # prefix -> (log P(paths ending in blank), log P(paths ending in its last label))
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}
    for frame in lp:
        nxt: dict[tuple[int, ...], list[float]] = {}

        def add(prefix: tuple[int, ...], ends_blank: bool, value: float, nxt=nxt) -> None:
            entry = nxt.setdefault(prefix, [NEG_INF, NEG_INF])
            k = 0 if ends_blank else 1
            entry[k] = _lse(entry[k], value)

        for prefix, (p_b, p_nb) in beams.items():
            total = _lse(p_b, p_nb)
            add(prefix, True, total + frame[blank])
            last = prefix[-1] if prefix else None
            for c in range(lp.shape[1]):
                if c == blank:
                    continue
                p = frame[c]
                if c == last:
                    add(prefix, False, p_nb + p)  # a repeat merges into the same label
                    add(prefix + (c,), False, p_b + p)  # a blank in between: a new label
                else:
                    add(prefix + (c,), False, total + p)
        # a prefix that no path reaches (a repeat without the blank it needs) is dropped
        ranked = [(p, v) for p, v in nxt.items() if _lse(*v) > NEG_INF]
        ranked.sort(key=lambda kv: _lse(*kv[1]), reverse=True)
        beams = {prefix: (v[0], v[1]) for prefix, v in ranked[:beam_width]}
    return [(list(prefix), _lse(*v)) for prefix, v in beams.items()]


def edit_distance(ref: list, hyp: list) -> int:
    """Levenshtein distance (substitutions, insertions, deletions) between two sequences.

    >>> edit_distance([1, 2, 3], [1, 3, 4])
    2
    """
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def transcript(digits: list[int] | tuple[int, ...]) -> str:
    """Digits as a transcript: ``[3, 1, 4]`` -> ``"3 1 4"``."""
    return " ".join(str(d) for d in digits)


def ctc_decode(log_probs: Tensor, beam_width: int) -> tuple[list[int], float]:
    """Digits of one utterance's CTC log-probabilities (T', C+1) and a confidence: the
    probability share of the best labelling among the beam's."""
    beams = prefix_beam_search(log_probs.float().cpu().numpy(), max(beam_width, 2))
    scores = torch.tensor([s for _, s in beams])
    confidence = float(torch.softmax(scores, 0)[0])
    return [c - 1 for c in beams[0][0]], confidence
