"""Length-penalised rewards (CourseGPT-zh Eq. 1) and the length-bias evaluator column."""

import json

import numpy as np
import pytest

from rewardkit import BradleyTerryRM, DataError, LengthPenalizedRM, load_reward_model
from rewardkit.cli import main
from rewardkit.data import PreferenceDataset
from rewardkit.eval.metrics import length_bias
from rewardkit.models.length import length_penalty, text_length
from rewardkit.records import PreferencePair
from rewardkit.templating import Texts


def test_penalty_hand_computed():
    # l_res <= l_ref: no penalty; 30 vs 20 at weight 0.5: 0.5 * (30/20 - 1) = 0.25; 60 vs 20: 0.5 * 2 = 1
    np.testing.assert_allclose(length_penalty([10, 20, 30, 60], [20, 20, 20, 20], 0.5), [0, 0, 0.25, 1.0])
    assert text_length(["a bb  ccc", ""], "words").tolist() == [3, 0]
    assert text_length(["a bb  ccc", ""], "chars").tolist() == [9, 0]


@pytest.fixture(scope="module")
def rm(tiny_lm):
    return BradleyTerryRM.from_pretrained(tiny_lm, head_seed=3)


def test_wrapped_reward_is_raw_minus_the_penalty(rm):
    lp = LengthPenalizedRM(rm, length_penalty=0.5, reference="reference", unit="words")
    pairs = PreferenceDataset(
        [
            PreferencePair("tell me", " good clear kind", " bad", {"reference": "one two"}),  # 3 words vs 2
            PreferencePair("tell me", " good", " bad bad bad bad", {"reference": 2}),  # a length
        ]
    )
    raw = rm.score_pairs(pairs)
    got = lp.score_pairs(pairs)
    # chosen: 3 vs 2 words -> 0.25, 1 vs 2 -> 0; rejected: 1 vs 2 -> 0, 4 vs 2 -> 0.5
    np.testing.assert_allclose(got.chosen, raw.chosen - np.array([0.25, 0.0]), atol=1e-6)
    np.testing.assert_allclose(got.rejected, raw.rejected - np.array([0.0, 0.5]), atol=1e-6)
    d = lp.detailed(Texts.from_pairs(pairs))
    np.testing.assert_allclose(d.penalty, [0.25, 0.0, 0.0, 0.5])
    # the columns against what was computed apart: the wrapped model's own rewards, the wrapper's score
    np.testing.assert_allclose(d.raw, np.concatenate([raw.chosen, raw.rejected]), atol=1e-6)
    np.testing.assert_allclose(d.reward, np.concatenate([got.chosen, got.rejected]), atol=1e-6)


def test_units_references_and_errors(rm):
    tok_len = len(rm.tokenizer(" good clear kind", add_special_tokens=False)["input_ids"])
    lp = LengthPenalizedRM(rm, length_penalty=1.0, reference=1, unit="tokens")
    raw = rm.score(["tell me"], [" good clear kind"])
    np.testing.assert_allclose(lp.score(["tell me"], [" good clear kind"]), raw - (tok_len - 1), atol=1e-5)
    fixed = LengthPenalizedRM(rm, length_penalty=1.0, reference=lambda p, r: 2.0, unit="chars")
    np.testing.assert_allclose(fixed.score(["x"], ["abcd"]), rm.score(["x"], ["abcd"]) - 1.0, atol=1e-6)
    field = LengthPenalizedRM(rm, length_penalty=1.0, unit="words")
    with pytest.raises(DataError, match="example 0: no reference field 'reference'"):
        field.score(["x"], [" good"])
    np.testing.assert_allclose(
        field.score(["x"], [" good bad"], references=[1]), rm.score(["x"], [" good bad"]) - 1.0, atol=1e-6
    )
    with pytest.raises(DataError, match="reference length 0.0"):
        field.score(["x"], [" good"], references=[""])
    with pytest.raises(Exception, match="length_penalty must be a non-negative finite number"):
        LengthPenalizedRM(rm, length_penalty=float("nan"))


def test_trl_call_reads_the_reference_column(rm):
    lp = LengthPenalizedRM(rm, length_penalty=0.5, unit="words")
    out = lp(
        prompts=["tell me", "tell me"],
        completions=[" good good good good", " good"],
        reference=["a b", "a b"],
    )
    raw = rm(prompts=["tell me", "tell me"], completions=[" good good good good", " good"])
    np.testing.assert_allclose(out, np.array(raw) - np.array([0.5, 0.0]), atol=1e-6)


def test_save_and_load(rm, tmp_path):
    lp = LengthPenalizedRM(rm, length_penalty=0.3, reference="ref", unit="chars")
    lp.save(tmp_path / "lp")
    again = load_reward_model(tmp_path / "lp")
    assert isinstance(again, LengthPenalizedRM) and (again.length_penalty, again.reference, again.unit) == (
        0.3,
        "ref",
        "chars",
    )
    t = Texts(["q", "q"], [" good clear", " bad"], metadata=[{"ref": "abc"}, {"ref": "abcdef"}])
    np.testing.assert_allclose(again.score_texts(t), lp.score_texts(t), atol=1e-6)
    with pytest.raises(Exception, match="callable reference cannot be saved"):
        LengthPenalizedRM(rm, reference=lambda p, r: 3).save(tmp_path / "no")


def test_length_bias_hand_computed():
    # pairs 0, 1, 3 differ in length; the longer wins in pair 0 only (pair 2: equal lengths, ignored)
    assert length_bias([1.0, -1.0, 5.0, 2.0], [5, 5, 3, 3], [3, 3, 3, 5]) == pytest.approx(1 / 3)
    assert length_bias([0.0], [2], [1]) == 0.5  # a tie counts 1/2
    assert length_bias([1.0], [2], [2]) is None


def test_cli_score_and_eval_with_a_length_penalty(rm, tmp_path, capsys):
    rm.save(tmp_path / "rm")
    rows = [
        {"prompt": "tell me", "chosen": " good clear kind useful", "rejected": " bad", "reference": "x y"},
        {"prompt": "tell me", "chosen": " good", "rejected": " bad vague rude wrong", "reference": "x y"},
    ]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    main(
        [
            "score",
            "--rm",
            str(tmp_path / "rm"),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "s.jsonl"),
            "--length-penalty",
            "0.5",
            "--length-unit",
            "words",
        ]
    )
    out = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [r["chosen_penalty"] for r in out] == [0.5, 0.0] and [r["rejected_penalty"] for r in out] == [
        0.0,
        0.5,
    ]
    assert all(abs(r["chosen"] - (r["chosen_raw"] - r["chosen_penalty"])) < 1e-6 for r in out)
    capsys.readouterr()
    main(
        [
            "eval",
            "--rm",
            f"base={tmp_path / 'rm'}",
            "--data",
            str(data),
            "--length-penalty",
            "0.5",
            "--length-unit",
            "words",
            "--json",
            str(tmp_path / "e.json"),
        ]
    )
    report = json.loads((tmp_path / "e.json").read_text())
    assert list(report["models"]) == ["base", "base+LP"]
    assert report["lengths"]["all"] == {"chosen": 2.5, "rejected": 2.5, "unit": "words"}
    assert "Length bias" in capsys.readouterr().out


def test_evaluate_scores_a_penalised_models_inner_model_once(rm, monkeypatch):
    """eval --length-penalty reports NAME and NAME+LP: the wrapped model is scored once per split and
    the penalised margins equal scoring the wrapper on its own."""
    from rewardkit.eval import evaluate

    pairs = PreferenceDataset(
        [PreferencePair("tell me", " good clear kind", " bad", {"reference": 2})] * 3
        + [PreferencePair("tell me", " good", " bad bad bad bad", {"reference": 2})] * 2
    )
    lp = LengthPenalizedRM(rm, length_penalty=0.5, reference="reference", unit="words")
    alone = lp.score_pairs(pairs).accuracy()
    calls = []
    real = type(rm).score_texts
    monkeypatch.setattr(
        type(rm), "score_texts", lambda self, texts: calls.append(len(texts)) or real(self, texts)
    )
    report = evaluate({"m": rm, "m+LP": lp}, {"id": pairs, "ood": pairs}, n_boot=50)
    assert calls == [10, 10]  # one call per split for both models
    assert report.models["m+LP"]["splits"]["id"]["accuracy"] == pytest.approx(alone)
    assert report.models["m"]["splits"]["id"]["accuracy"] == pytest.approx(rm.score_pairs(pairs).accuracy())
