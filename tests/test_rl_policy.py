"""The initial RL policy of the hacking benchmark: after SFT its samples say what its SFT mix says."""

import numpy as np
import pytest
import torch

from rewardkit.bench.rl_policy import PolicySFT, build_initial_policy, mix_summary, sft_mix
from rewardkit.errors import RewardkitError
from rewardkit.synthetic import SPURIOUS, gold_reward, make_hacking_candidates, vocabulary
from rewardkit.tiny import build_tiny_model


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rl_policy") / "base"
    return build_tiny_model(folder, vocabulary(spurious=True), hidden=64, layers=2, heads=4, seed=0)


def _samples(policy, n_prompts: int = 48, per_prompt: int = 8) -> list[str]:
    """Completions sampled at temperature 1 from the full distribution (no top-k) on unseen prompts."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(policy)
    model = AutoModelForCausalLM.from_pretrained(policy).eval()
    prompts, _ = make_hacking_candidates(n_prompts, 1, seed=900)
    ids = torch.tensor([tok(p, add_special_tokens=False)["input_ids"] for p in prompts])  # all 5 words
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(
            ids.repeat_interleave(per_prompt, 0),
            attention_mask=torch.ones(len(ids) * per_prompt, ids.shape[1], dtype=torch.long),
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            max_new_tokens=16,
            pad_token_id=tok.pad_token_id,
        )
    return [tok.decode(row[ids.shape[1] :], skip_special_tokens=True) for row in out]


def test_sft_mix_is_every_candidate():
    settings = PolicySFT(n_prompts=10, k=4, p_spurious=0.5, data_seed=3)
    prompts, completions = sft_mix(settings)
    ref_prompts, ref_cands = make_hacking_candidates(10, 4, seed=3, p_spurious=0.5, max_count=6)
    assert prompts == [p for p in ref_prompts for _ in range(4)]
    assert completions == [c for row in ref_cands for c in row]
    s = mix_summary(completions)
    assert s["gold"] == pytest.approx(np.mean([gold_reward(c) for c in completions]))
    assert s["spurious"] == pytest.approx(np.mean([c.split().count(SPURIOUS) for c in completions]))


@pytest.mark.parametrize("p_spurious", [0.0, 0.3])
def test_samples_match_the_sft_mix(backbone, tmp_path, p_spurious):
    settings = PolicySFT(n_prompts=128, k=16, p_spurious=p_spurious)
    policy = build_initial_policy(backbone, tmp_path / "policy", settings, seed=0)
    mix = mix_summary(sft_mix(settings)[1])
    got = mix_summary(_samples(policy))
    # 384 samples: the standard error of the mean gold is ~0.1 (per-sample std ~2)
    assert abs(got["gold"] - mix["gold"]) < 0.35, (got, mix)
    assert abs(got["words"] - mix["words"]) < 1.0, (got, mix)
    assert abs(got["spurious"] - mix["spurious"]) < max(0.25 * mix["spurious"], 0.05), (got, mix)
    if p_spurious == 0.0:
        assert got["spurious"] < 0.02  # SFT on a mix without the word drives it out


def test_an_existing_folder_is_not_replaced(backbone, tmp_path):
    (tmp_path / "policy").mkdir()
    with pytest.raises(RewardkitError, match="already exists"):
        build_initial_policy(backbone, tmp_path / "policy", PolicySFT(n_prompts=2, k=2))
