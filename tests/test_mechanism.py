"""Affine maximizer payments over a finite candidate set: values derived by hand, DSIC and IR checked
numerically against misreports, and the paper's point that without payments misreporting pays."""

import math

import numpy as np
import pytest

from rewardkit.mechanism import affine_maximizer, aggregate, normalize_rewards, utility


def test_two_groups_two_candidates_by_hand():
    # r1 = (1, 0), r2 = (0, 1), w = (1, 1), kl_coef = 1, uniform base: pi* = (1/2, 1/2), v = (1/2, 1/2), KL = 0
    res = affine_maximizer(np.array([[1.0, 0.0], [0.0, 1.0]]), [1.0, 1.0], 1.0)
    np.testing.assert_allclose(res.policy, [0.5, 0.5])
    np.testing.assert_allclose(res.valuations, [0.5, 0.5])
    assert res.kl == pytest.approx(0.0) and res.welfare == pytest.approx(1.0)
    # without group 1 the optimum of w2 v2 - KL is (1, e)/(1 + e) with value log E_base[e^{r2}] = log((1+e)/2);
    # with group 1, the others' welfare at pi* is 1/2 - 0: p1 = log((1 + e) / 2) - 1/2 (same for group 2)
    p = math.log((1 + math.e) / 2) - 0.5
    np.testing.assert_allclose(res.payments, [p, p])
    np.testing.assert_allclose(res.utilities, [0.5 - p, 0.5 - p])


def test_three_candidates_weights_lambda_and_base_by_hand():
    r = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    w, kl_coef, base = np.array([2.0, 1.0]), 0.5, np.array([0.5, 0.25, 0.25])
    res = affine_maximizer(r, w, kl_coef, base)
    # pi* proportional to base * exp((2 r1 + r2) / 0.5): exponents (2.2, 1.4, 2.4)
    e = np.array([0.5 * math.exp(2.2), 0.25 * math.exp(1.4), 0.25 * math.exp(2.4)])
    np.testing.assert_allclose(res.policy, e / e.sum())
    np.testing.assert_allclose(res.valuations, r @ (e / e.sum()))
    # group 1's payment: max of the others' welfare is kl_coef log E_base exp(r2 / kl_coef); minus its value at pi*
    pi = e / e.sum()
    kl = float(np.sum(pi * np.log(pi / base)))
    best_without_1 = kl_coef * math.log(float(base @ np.exp(r[1] / kl_coef)))
    assert res.payments[0] == pytest.approx(best_without_1 - (w[1] * (r[1] @ pi) - kl_coef * kl))
    best_without_2 = kl_coef * math.log(float(base @ np.exp(w[0] * r[0] / kl_coef)))
    assert res.payments[1] == pytest.approx(best_without_2 - (w[0] * (r[0] @ pi) - kl_coef * kl))


def test_normalisation():
    out = normalize_rewards(np.array([[2.0, 4.0, 3.0], [1.0, 1.0, 1.0], [-1.0, 0.0, 1.0]]))
    np.testing.assert_allclose(out, [[0, 2 / 3, 1 / 3], [1 / 3, 1 / 3, 1 / 3], [0, 1 / 3, 2 / 3]])


def _misreports(true: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    polarised = np.zeros_like(true)
    polarised[np.argmax(true)] = (
        1.0  # all reward on the favourite candidate (the paper's Theorem 3.3 misreport)
    )
    return [
        normalize_rewards(rng.random(true.shape)),  # random
        true * 3.0,  # scaled up
        true * 0.2,  # scaled down
        polarised,
        normalize_rewards(true**4),  # sharpened
    ]


def test_dsic_and_ir_hold_numerically():
    """No misreport gives a group more utility than the truth; the truthful utility is non-negative."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        g, n = rng.integers(2, 5), rng.integers(2, 7)
        true = normalize_rewards(rng.random((g, n)))
        w = rng.integers(1, 10, size=g).astype(float)
        kl_coef = float(rng.choice([0.05, 0.3, 1.0, 3.0]))
        base = normalize_rewards(rng.random(n)) * 0.9 + 0.1 / n
        for i in range(g):
            honest = utility(true[i], i, true, w, kl_coef, base)
            assert honest >= -1e-12  # IR
            for lie in _misreports(true[i], rng):
                reports = true.copy()
                reports[i] = lie
                assert utility(true[i], i, reports, w, kl_coef, base) <= honest + 1e-10  # DSIC


def test_without_payments_the_polarised_misreport_pays():
    # by hand: r1 = (0.6, 0.4, 0), r2 = (0, 0.4, 0.6), w = 1, kl_coef = 1; polarising puts pi* mass on candidate 0
    true = np.array([[0.6, 0.4, 0.0], [0.0, 0.4, 0.6]])
    lie = true.copy()
    lie[0] = [1.0, 0.0, 0.0]
    honest = utility(true[0], 0, true, [1, 1], 1.0, payments=False)
    assert utility(true[0], 0, lie, [1, 1], 1.0, payments=False) > honest + 0.01
    assert utility(true[0], 0, lie, [1, 1], 1.0) < utility(
        true[0], 0, true, [1, 1], 1.0
    )  # with payments: not
    rng = np.random.default_rng(1)
    gains = []
    for _ in range(200):
        t = normalize_rewards(rng.random((3, 5)))
        p = np.zeros(5)
        p[np.argmax(t[0])] = 1.0
        r = t.copy()
        r[0] = p
        gains.append(
            utility(t[0], 0, r, [1, 1, 1], 0.3, payments=False)
            - utility(t[0], 0, t, [1, 1, 1], 0.3, payments=False)
        )
    assert np.mean(np.array(gains) > 0) > 0.9  # misreporting pays in the large majority of instances


def test_refusals():
    with pytest.raises(ValueError, match="weights must be 2 finite non-negative"):
        affine_maximizer(np.ones((2, 3)), [1.0, -1.0], 1.0)
    with pytest.raises(ValueError, match="kl_coef must be a positive finite number"):
        affine_maximizer(np.ones((2, 3)), [1.0, 1.0], 0.0)
    with pytest.raises(ValueError, match="NaN"):
        affine_maximizer(np.array([[np.nan, 1.0]]), [1.0], 1.0)


def test_aggregate_scores_through_the_engine_once_per_model(tiny_lm, batch_shapes):
    from rewardkit import BradleyTerryRM

    rms = [BradleyTerryRM.from_pretrained(tiny_lm, head_seed=s) for s in (1, 2)]
    prompts = ["tell me about pasta", "explain the star"]
    candidates = [[" good clear", " bad", " kind useful"], [" wrong", " precise great", " vague"]]
    out = aggregate(rms, [3.0, 1.0], prompts, candidates, kl_coef=0.5)
    assert len(batch_shapes) == 2  # one engine call (one batch here) per model
    for p, cands in enumerate(candidates):
        r = normalize_rewards(np.stack([rm.score([prompts[p]] * 3, cands) for rm in rms]))
        expected = affine_maximizer(r, [3.0, 1.0], 0.5)
        # one batched call vs a call per prompt: float32 padding layouts differ by ~1e-6 (1.5e-6 seen)
        np.testing.assert_allclose(out.results[p].policy, expected.policy, atol=1e-5)
        np.testing.assert_allclose(out.results[p].payments, expected.payments, atol=1e-5)
        assert out.best[p] == int(np.argmax(expected.policy))
    np.testing.assert_allclose(out.valuations, np.mean([x.valuations for x in out.results], axis=0))
