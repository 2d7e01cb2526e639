"""rewardkit.eval.overoptimisation: the path KL estimator against exact KL by enumeration (pure arrays
and a tiny HF policy), Gao et al.'s fits on planted parameters, peak / drop, win rates, the frontier."""

import itertools
import math

import numpy as np
import pytest

from rewardkit.eval.overoptimisation import (
    best_within,
    fit_gao,
    gao_curve,
    path_kl,
    peak_and_drop,
    win_rate_per_prompt,
)


def test_path_kl_by_hand():
    """Two positions over a 2-token vocabulary; the second masked out."""
    p = np.log(np.array([[[0.5, 0.5], [0.9, 0.1]]]))
    q = np.log(np.array([[[0.25, 0.75], [0.5, 0.5]]]))
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert path_kl(p, q, np.array([[1, 0]]))[0] == pytest.approx(expected)
    both = expected + 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert path_kl(p, q, np.array([[1, 1]]))[0] == pytest.approx(both)
    assert path_kl(p, p, np.array([[1, 1]]))[0] == 0.0


def test_path_kl_expectation_is_the_sequence_kl_of_random_autoregressive_tables():
    """Policies as tables prefix -> next-token distribution (vocabulary 3, token 0 is EOS, length <= 3):
    the estimator averaged over every sequence, weighted by its probability under p, equals
    sum_y p(y) log p(y) / q(y) computed by enumerating the sequences."""
    rng = np.random.default_rng(0)
    v, t_max, eos = 3, 3, 0
    prefixes = [pre for n in range(t_max) for pre in itertools.product(range(1, v), repeat=n)]
    p_tab = {pre: rng.dirichlet(np.ones(v)) for pre in prefixes}
    q_tab = {pre: rng.dirichlet(np.ones(v)) for pre in prefixes}
    seqs = [s for n in range(1, t_max + 1) for s in itertools.product(range(v), repeat=n)]
    seqs = [s for s in seqs if eos not in s[:-1] and (len(s) == t_max or s[-1] == eos)]
    exact, expected, total = 0.0, 0.0, 0.0
    for s in seqs:
        logp = np.zeros((1, t_max, v))
        logq = np.zeros((1, t_max, v))
        mask = np.zeros((1, t_max))
        for t in range(len(s)):
            logp[0, t], logq[0, t], mask[0, t] = np.log(p_tab[s[:t]]), np.log(q_tab[s[:t]]), 1
        prob = np.prod([p_tab[s[:t]][s[t]] for t in range(len(s))])
        qprob = np.prod([q_tab[s[:t]][s[t]] for t in range(len(s))])
        exact += prob * math.log(prob / qprob)
        expected += prob * path_kl(logp, logq, mask)[0]
        total += prob
    assert total == pytest.approx(1.0)
    assert expected == pytest.approx(exact, rel=1e-10)


def test_path_kl_of_a_tiny_hf_policy_equals_exact_kl_by_enumeration(tmp_path):
    """The engine's log-probabilities (completion_logprobs on left-padded prompts, completion_mask
    through EOS) of two tiny causal LMs: over every completion of <= 2 tokens, the estimator's expectation
    under p equals the exact sequence KL(p || q)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rewardkit.bench.rl_eval import completion_kl, completion_logprobs, completion_mask
    from rewardkit.tiny import build_tiny_model

    build_tiny_model(tmp_path / "p", ["a", "b"], hidden=16, seed=1)
    build_tiny_model(tmp_path / "q", ["a", "b"], hidden=16, seed=2)
    tok = AutoTokenizer.from_pretrained(tmp_path / "p")
    pm = AutoModelForCausalLM.from_pretrained(tmp_path / "p").eval()
    qm = AutoModelForCausalLM.from_pretrained(tmp_path / "q").eval()
    v, eos = len(tok), tok.eos_token_id
    seqs = [(a,) for a in range(v) if a == eos] + [(a, b) for a in range(v) if a != eos for b in range(v)]
    comp = torch.tensor([list(s) + [tok.pad_token_id] * (2 - len(s)) for s in seqs])
    prompt = tok(text="a b")["input_ids"]
    ids = torch.tensor([[tok.pad_token_id] + prompt] * len(seqs))  # one left pad: positions must skip it
    mask = torch.tensor([[0] + [1] * len(prompt)] * len(seqs))
    cmask = completion_mask(comp, eos).numpy()
    logp = completion_logprobs(pm, ids, mask, comp).double().numpy()
    logq = completion_logprobs(qm, ids, mask, comp).double().numpy()
    picked = np.take_along_axis(logp, comp.numpy()[..., None], -1)[..., 0]
    pickq = np.take_along_axis(logq, comp.numpy()[..., None], -1)[..., 0]
    lp, lq = (picked * cmask).sum(1), (pickq * cmask).sum(1)
    prob = np.exp(lp)
    assert prob.sum() == pytest.approx(1.0, abs=1e-5)
    exact = float((prob * (lp - lq)).sum())
    assert exact > 0.01
    assert float((prob * path_kl(logp, logq, cmask)).sum()) == pytest.approx(exact, rel=1e-4)
    # the engine's on-device computation (rl_eval.completion_kl) is path_kl on the same tokens
    on_device = completion_kl(pm, qm, ids, mask, comp, torch.from_numpy(cmask))
    np.testing.assert_allclose(on_device, path_kl(logp, logq, cmask), rtol=1e-4, atol=1e-6)
    # unpadded positions give the same log-probabilities as the padded batch
    alone = completion_logprobs(pm, ids[:1, 1:], mask[:1, 1:], comp[:1]).double().numpy()
    assert np.abs(alone - logp[:1]).max() < 1e-4


@pytest.mark.parametrize(("form", "alpha", "beta"), [("rl", 2.0, 0.5), ("bon", 1.2, 0.3)])
def test_gao_fit_recovers_planted_parameters(form, alpha, beta):
    d = np.linspace(0.0, 4.0, 25)
    clean = gao_curve(d, alpha, beta, form)
    if form == "rl":
        assert clean[0] == 0.0 and clean[5] == pytest.approx(d[5] * (alpha - beta * math.log(d[5])))
    else:
        assert clean[5] == pytest.approx(d[5] * (alpha - beta * d[5]))
    fit = fit_gao(d, clean, form)
    assert (fit.alpha, fit.beta) == pytest.approx((alpha, beta), abs=1e-9) and fit.residual < 1e-9
    noisy = clean + np.random.default_rng(0).normal(0, 0.05, d.shape)
    fit = fit_gao(d, noisy, form)
    assert fit.alpha == pytest.approx(alpha, abs=0.1) and fit.beta == pytest.approx(beta, abs=0.1)
    assert 0.02 < fit.residual < 0.08
    assert math.isnan(fit_gao(np.array([0.0, 1.0]), np.array([0.0, 1.0]), form).alpha)


def test_peak_drop_win_rate_and_frontier_by_hand():
    peak, drop, over = peak_and_drop(np.array([0.0, 1.0, 0.4]), np.array([[0, 0], [0, 2], [0.2, 0.6]]))
    assert (peak, over) == (1, True) and drop == pytest.approx(0.6)
    assert peak_and_drop(np.array([0.0, 1.0, 0.4]), np.array([[0, 0], [0, 2], [0.0, 1.4]]))[2] is False
    a = np.array([[1.0, 2.0], [0.0, 0.0]])
    b = np.array([[1.0, 0.0], [1.0, 1.0]])
    # prompt 0: pairs (1,1) tie, (1,0) win, (2,1) win, (2,0) win -> 3.5 / 4; prompt 1: all lose
    np.testing.assert_allclose(win_rate_per_prompt(a, b), [0.875, 0.0])
    assert best_within(np.array([0.0, 1.0, 3.0]), np.array([0.0, 2.0, 5.0]), 1.5) == 2.0
    assert math.isnan(best_within(np.array([2.0]), np.array([1.0]), 1.0))
