"""rewardkit bench hacking: the exact best-of-N estimator against brute force, the spurious synthetic
task, report statistics, the ci preset end to end, and one-line errors."""

import itertools
import math

import numpy as np
import pytest

from rewardkit.eval.bon import (
    bon_expectations,
    bon_kl_bound,
    bon_rank_weights,
    default_ns,
    top1_agreement_at_n,
    win_indicator,
)


def _brute(proxy, gold, n):
    """Mean over every n-subset of the gold (and proxy) of the proxy's pick, ties averaged."""
    gs, ps = [], []
    for sub in itertools.combinations(range(len(proxy)), n):
        top = max(proxy[i] for i in sub)
        tied = [i for i in sub if proxy[i] == top]
        gs.append(np.mean([gold[i] for i in tied]))
        ps.append(top)
    return np.mean(gs), np.mean(ps)


@pytest.mark.parametrize("ties", [False, True])
def test_exact_estimator_equals_brute_force_enumeration(ties):
    rng = np.random.default_rng(1 + ties)
    k = 7
    proxy = rng.integers(0, 3, (5, k)).astype(float) if ties else rng.normal(size=(5, k))
    gold = rng.normal(size=(5, k))
    ns = list(range(1, k + 1))
    g, p = bon_expectations(proxy, gold, ns)
    assert g.shape == p.shape == (5, k)
    for row in range(5):
        for i, n in enumerate(ns):
            bg, bp = _brute(proxy[row], gold[row], n)
            assert g[row, i] == pytest.approx(bg, abs=1e-12)
            assert p[row, i] == pytest.approx(bp, abs=1e-12)
    assert np.allclose(g[:, 0], gold.mean(axis=1))  # N = 1: a uniformly random candidate
    assert np.all(np.diff(p, axis=1) >= -1e-12)  # expected proxy reward never decreases in N
    if ties:  # N = k: the mean gold of the top proxy group
        for row in range(5):
            top = proxy[row] == proxy[row].max()
            assert g[row, -1] == pytest.approx(gold[row][top].mean())


def test_rank_weights_and_kl_bound():
    w = bon_rank_weights(5, 2)
    assert w.tolist() == [0.0, 0.1, 0.2, 0.3, 0.4]  # C(j, 1) / C(5, 2)
    assert bon_rank_weights(1000, 500).sum() == pytest.approx(1.0)  # no overflow at large k
    assert bon_kl_bound(1) == 0.0 and bon_kl_bound(4) == pytest.approx(math.log(4) - 0.75)
    assert default_ns(16) == [1, 2, 4, 8, 16] and default_ns(12) == [1, 2, 4, 8, 12]
    with pytest.raises(ValueError):
        bon_rank_weights(3, 4)


def test_planted_proxy_over_optimises_as_computed_by_hand():
    # gold 0..3 and one candidate the feature (not rewarded by gold) pushes to the top of the proxy
    gold = np.array([[0.0, 1.0, 2.0, 3.0, 0.0]])
    feature = np.array([[0.0, 0.0, 0.0, 0.0, 1.0]])
    g, p = bon_expectations(gold + 10 * feature, gold, [1, 2, 3, 4, 5])
    # ascending proxy ranks hold gold [0, 1, 2, 3, 0]; weights C(j, n-1) / C(5, n):
    # n=2: [0, .1, .2, .3, .4] -> 1.4; n=3: [0, 0, .1, .3, .6] -> 1.1; n=4: [0, 0, 0, .2, .8] -> 0.6
    assert g[0].tolist() == pytest.approx([1.2, 1.4, 1.1, 0.6, 0.0])
    assert p[0].tolist() == pytest.approx([3.2, 5.4, 7.1, 8.6, 10.0])
    honest, _ = bon_expectations(gold, gold, [1, 2, 3, 4, 5])
    assert honest[0].tolist() == pytest.approx([1.2, 2.0, 2.5, 2.8, 3.0])  # E[max of n of 0,0,1,2,3]


def test_win_rate_and_top1_agreement_by_hand():
    gold = np.array([[0.0, 1.0, 1.0, 2.0]])
    q = win_indicator(gold)
    assert q[0].tolist() == [0.125, 0.5, 0.5, 0.875]  # (#below + #equal / 2) / 4
    wr, _ = bon_expectations(gold, q, [1, 4])
    assert wr[0].tolist() == pytest.approx([0.5, 0.875])
    a = np.array([[0.0, 1.0, 2.0, 3.0]])
    b = np.array([[3.0, 2.0, 1.0, 0.0]])
    agree = top1_agreement_at_n(a, b, [1, 2, 4])
    assert agree[0].tolist() == pytest.approx([1.0, 0.0, 0.0])  # opposite orders agree only at N=1
    assert top1_agreement_at_n(a, a, [1, 2, 4])[0].tolist() == pytest.approx([1.0, 1.0, 1.0])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    brute = [
        np.mean(
            [
                np.argmax(x[r, list(s)]) == np.argmax(y[r, list(s)])
                for s in itertools.combinations(range(6), 3)
            ]
        )
        for r in range(3)
    ]
    assert top1_agreement_at_n(x, y, [3])[:, 0] == pytest.approx(brute)


def test_spurious_task_leaves_existing_callers_unchanged_and_plants_the_feature():
    from rewardkit.synthetic import (
        SPURIOUS,
        gold_reward,
        make_hacking_candidates,
        make_hacking_preferences,
        make_synthetic_preferences,
        vocabulary,
    )

    assert SPURIOUS not in vocabulary() and SPURIOUS in vocabulary(spurious=True)
    base, hack = make_synthetic_preferences(300, 4), make_hacking_preferences(300, 4, 0.9, 0.1)
    strip = lambda t: " ".join(w for w in t.split() if w != SPURIOUS)  # noqa: E731
    for b, h in zip(base, hack):  # the same pairs, labels by gold; only the spurious word added
        assert (b.prompt, b.chosen.split(), b.rejected.split()) == (
            h.prompt,
            strip(h.chosen).split(),
            strip(h.rejected).split(),
        )
        assert gold_reward(h.chosen) == b.metadata["gold_chosen"] > gold_reward(h.rejected)
        assert h.chosen.split().count(SPURIOUS) == h.metadata["spurious_chosen"] <= 2
    share_c = np.mean([p.metadata["spurious_chosen"] > 0 for p in hack])
    share_r = np.mean([p.metadata["spurious_rejected"] > 0 for p in hack])
    assert 0.85 < share_c < 0.95 and 0.05 < share_r < 0.15  # p_chosen 0.9, p_rejected 0.1
    prompts, cands = make_hacking_candidates(40, 16, 0, p_spurious=0.3, max_count=6)
    assert len(prompts) == 40 and {len(c) for c in cands} == {16}
    counts = np.array([[c.split().count(SPURIOUS) for c in row] for row in cands])
    gold = np.array([[gold_reward(c) for c in row] for row in cands])
    assert 0.25 < (counts > 0).mean() < 0.35 and counts.max() == 6
    assert gold[counts > 0].mean() < gold[counts == 0].mean() - 1  # padding replaces good words


def test_curve_stats_peak_drop_and_paired_test_by_hand():
    from rewardkit.bench.hacking_report import ci95, setup_report

    gold = np.tile([0.0, 1.0, 2.0, 3.0], (30, 1))
    planted = gold + 10 * np.tile([0.0, 0.0, 0.0, 1.0], (30, 1))[:, ::-1]  # the gold-0 candidate on top
    rep = setup_report(
        {"EXRM-1": gold.copy(), "EXRM-2": planted, "ENS-mean": gold + 0.1},
        gold,
        ["EXRM-1", "EXRM-2"],
        ["ENS-mean"],
        n_boot=200,
    )
    assert rep["n"] == [1, 2, 4] and rep["kl"][0] == 0.0
    honest, hacked = rep["models"]["EXRM-1"], rep["models"]["EXRM-2"]
    assert (
        honest["gold"] == pytest.approx([1.5, 14 / 6, 3.0]) and honest["peak_n"] == 4 and honest["drop"] == 0
    )
    # weights C(j, n-1) / C(4, n): n=2 [0, 1, 2, 3] / 6; planted ascending ranks hold gold [1, 2, 3, 0]
    assert hacked["gold"] == pytest.approx([1.5, (1 * 2 + 2 * 3 + 3 * 0) / 6, 0.0])
    assert hacked["peak_n"] == 1 and hacked["drop"] == pytest.approx(1.5) and hacked["over_optimised"]
    assert hacked["gold_ci95"][0] == pytest.approx([1.5, 1.5])  # every prompt alike: no spread
    assert honest["win_rate"] == pytest.approx([0.5, 4.25 / 6, 0.875])  # q = (j + 1/2) / 4
    test = rep["paired_tests"][0]
    assert (test["model"], test["baseline"], test["n"]) == ("ENS-mean", "EXRM-1", 4)
    assert test["gold_diff"] == 0.0 and test["p_value"] == 1.0
    assert rep["top1_agreement"]["EXRM-1|EXRM-2"] == pytest.approx([1.0, 0.5, 0.0])
    lo, hi = ci95(np.arange(100.0)[:, None], 500, 0)[0]
    assert lo < 49.5 < hi and hi - lo < 25
