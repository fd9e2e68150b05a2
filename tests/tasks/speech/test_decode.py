"""CTC decoding on hand-made posteriors: greedy, prefix beam search (width 1 against greedy,
a case where the beam finds the more probable labelling, exact probabilities against brute
force over all paths), and the edit distance."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from lstmkit.tasks.speech.decode import collapse, edit_distance, greedy, prefix_beam_search


def posteriors(rows: list[list[float]]) -> np.ndarray:
    p = np.asarray(rows, dtype=np.float64)
    return np.log(p / p.sum(1, keepdims=True))


def test_greedy_on_hand_made_posteriors():
    # classes: blank, "a", "b"; best path  a a - a b b -  ->  a a b
    lp = posteriors(
        [
            [0.1, 0.8, 0.1],
            [0.2, 0.7, 0.1],
            [0.9, 0.05, 0.05],
            [0.1, 0.6, 0.3],
            [0.1, 0.2, 0.7],
            [0.3, 0.1, 0.6],
            [0.8, 0.1, 0.1],
        ]
    )
    assert greedy(lp) == [1, 1, 2]
    assert greedy(posteriors([[0.9, 0.05, 0.05]] * 4)) == []
    assert collapse([2, 2, 2]) == [2] and collapse([]) == []


def brute_force(lp: np.ndarray) -> dict[tuple[int, ...], float]:
    """P(labelling) summed over every path: the definition CTC's prefix search follows."""
    out: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(lp.shape[1]), repeat=lp.shape[0]):
        key = tuple(collapse(list(path)))
        out[key] = out.get(key, 0.0) + math.exp(sum(lp[t, c] for t, c in enumerate(path)))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_a_wide_beam_finds_the_exact_labelling_probabilities(seed):
    lp = np.log(np.random.default_rng(seed).dirichlet(np.ones(3), size=5))
    exact = brute_force(lp)
    beams = prefix_beam_search(lp, beam_width=1000)
    assert len(beams) == len(exact)
    for labels, score in beams:
        assert math.exp(score) == pytest.approx(exact[tuple(labels)], rel=1e-9)
    best = max(exact, key=exact.get)
    assert tuple(beams[0][0]) == best


def test_beam_finds_the_better_labelling_where_greedy_does_not():
    # every frame's best class is blank (0.6), so greedy says ""; but "a" collects
    # P(a-) + P(-a) + P(aa) = 0.24 + 0.24 + 0.16 = 0.64 > P(--) = 0.36
    lp = posteriors([[0.6, 0.4], [0.6, 0.4]])
    assert greedy(lp) == []
    (labels, score), (second, score2) = prefix_beam_search(lp, beam_width=2)
    assert labels == [1] and math.exp(score) == pytest.approx(0.64)
    assert second == [] and math.exp(score2) == pytest.approx(0.36)


def test_beam_keeps_a_repeat_apart_only_through_a_blank():
    # a - a: the labelling "a a" needs the blank between
    lp = posteriors([[0.02, 0.98], [0.98, 0.02], [0.02, 0.98]])
    assert prefix_beam_search(lp, 4)[0][0] == [1, 1] == greedy(lp)
    lp = posteriors([[0.02, 0.98], [0.02, 0.98], [0.02, 0.98]])
    assert prefix_beam_search(lp, 4)[0][0] == [1] == greedy(lp)


@pytest.mark.parametrize("seed", range(30))
def test_width_one_equals_greedy_on_peaked_posteriors(seed):
    """With one class above 0.5 in every frame (what a trained CTC model gives), the best
    path's labelling is the most probable one kept by a beam of 1."""
    rng = np.random.default_rng(seed)
    t, c = 25, 11
    p = rng.dirichlet(np.ones(c) * 0.3, size=t) * 0.3
    top = rng.choice(c, size=t, p=[0.5] + [0.05] * 10)
    p[np.arange(t), top] += 0.7
    lp = np.log(p / p.sum(1, keepdims=True))
    assert prefix_beam_search(lp, beam_width=1)[0][0] == greedy(lp)


def test_beam_width_must_be_positive_and_empty_input():
    with pytest.raises(ValueError, match="beam_width"):
        prefix_beam_search(posteriors([[0.5, 0.5]]), 0)
    assert prefix_beam_search(np.zeros((0, 3)), 4) == [([], 0.0)]


def test_edit_distance():
    assert edit_distance([], []) == 0
    assert edit_distance([1, 2, 3], []) == 3
    assert edit_distance([], [4, 5]) == 2
    assert edit_distance([3, 1, 4, 1, 5], [3, 1, 4, 1, 5]) == 0
    assert edit_distance([3, 1, 4, 1, 5], [3, 4, 1, 5, 9]) == 2  # one deletion, one insertion
    assert edit_distance([1, 2, 3], [1, 9, 3]) == 1
