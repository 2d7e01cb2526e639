"""eval/bon.py: best-of-n maths against brute force over every n-subset, and the selection helpers."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from rewardkit.base import RewardModel
from rewardkit.eval.bon import (
    best_of_n,
    bon_expectations,
    bon_kl_bound,
    bon_rank_weights,
    default_ns,
    label_preferences,
    score_candidates,
    top1_agreement_at_n,
    win_indicator,
)


class WordsRM(RewardModel):
    """r = number of words of the response."""

    kind = "test_words_bon"

    def score_texts(self, texts):
        return np.array([len(r.split()) for r in texts.responses], dtype=np.float32)

    def save(self, path, *, force=False):  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def _load(cls, path, manifest, **kwargs):  # pragma: no cover
        raise NotImplementedError


def brute_bon(proxy, values, n):
    """E[values of the proxy's pick], E[proxy of the pick] over every n-subset; ties split uniformly."""
    ev, ep, subsets = Fraction(0), Fraction(0), list(itertools.combinations(range(len(proxy)), n))
    for s in subsets:
        top = max(proxy[i] for i in s)
        tied = [i for i in s if proxy[i] == top]
        ev += sum(Fraction(values[i]) for i in tied) / len(tied)
        ep += Fraction(top)
    return float(ev / len(subsets)), float(ep / len(subsets))


def test_kl_bound_and_rank_weights_by_hand():
    assert bon_kl_bound(1) == 0.0 and bon_kl_bound(4) == pytest.approx(math.log(4) - 0.75)
    # best of 2 out of 5 is the candidate of rank j with probability C(j, 1) / C(5, 2) = j / 10
    np.testing.assert_allclose(bon_rank_weights(5, 2), [0.0, 0.1, 0.2, 0.3, 0.4])
    np.testing.assert_array_equal(bon_rank_weights(4, 4), [0, 0, 0, 1])
    np.testing.assert_array_equal(bon_rank_weights(3, 1), [1 / 3] * 3)
    with pytest.raises(ValueError):
        bon_rank_weights(3, 4)
    assert default_ns(8) == [1, 2, 4, 8] and default_ns(6) == [1, 2, 4, 6] and default_ns(1) == [1]


def test_bon_expectations_equal_brute_force_with_ties():
    rng = np.random.default_rng(0)
    proxy = rng.integers(0, 3, size=(4, 6)).astype(float)  # many ties
    gold = rng.normal(size=(4, 6)).round(3)
    ns = [1, 2, 3, 6]
    got_gold, got_proxy = bon_expectations(proxy, gold, ns)
    for p in range(4):
        for j, n in enumerate(ns):
            want_gold, want_proxy = brute_bon(proxy[p].tolist(), gold[p].tolist(), n)
            assert got_gold[p, j] == pytest.approx(want_gold, abs=1e-12)
            assert got_proxy[p, j] == pytest.approx(want_proxy, abs=1e-12)
    assert got_gold[:, 0] == pytest.approx(gold.mean(axis=1))  # n = 1: a uniform pick


def test_win_indicator_by_hand():
    # against a uniform candidate of [1, 2, 2, 3]: 1 ties itself (1/2 of 1/4); 2 beats 1, ties two 2s
    np.testing.assert_allclose(win_indicator(np.array([[1.0, 2.0, 2.0, 3.0]])), [[0.125, 0.5, 0.5, 0.875]])


def test_top1_agreement_equals_brute_force():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 4, size=(3, 5)), rng.integers(0, 4, size=(3, 5))
    ns = [1, 2, 3, 5]
    got = top1_agreement_at_n(a, b, ns)

    def pick(x, s):  # the later index wins a tie
        return max(s, key=lambda i: (x[i], i))

    for p in range(3):
        for j, n in enumerate(ns):
            subsets = list(itertools.combinations(range(5), n))
            same = sum(pick(a[p], s) == pick(b[p], s) for s in subsets)
            assert got[p, j] == pytest.approx(same / len(subsets), abs=1e-12)
    np.testing.assert_allclose(top1_agreement_at_n(a, a, ns), 1.0)


def test_selection_helpers_score_in_one_call():
    rm = WordsRM()
    cands = [["a", "a b c", "a b"], ["x y", "x"]]
    rewards = score_candidates(rm, ["p", "q"], cands)
    assert [r.tolist() for r in rewards] == [[1.0, 3.0, 2.0], [2.0, 1.0]]
    assert best_of_n(rm, ["p", "q"], cands) == ([1, 0], [3.0, 2.0])
    ds = label_preferences(rm, ["p", "q", "r"], [*cands, ["same", "tied"]], strategy="max_min")
    assert [(x.chosen, x.rejected) for x in ds] == [("a b c", "a"), ("x y", "x")]
    assert [s.location for s in ds.skipped] == ["prompt 2"]  # rewards tie: never silently dropped
    with pytest.raises(ValueError, match="2 prompts but 1"):
        score_candidates(rm, ["p", "q"], cands[:1])
