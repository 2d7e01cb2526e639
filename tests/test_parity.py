"""Parity with the tools users already run: each test runs the reference tool itself (TRL's trainers
and data utilities, transformers' sequence-classification forward, mergekit) on the same tiny model
and text, and compares numbers. No reference is re-implemented here.

TRL's configs default to bf16 autocast even on CPU; the tests set ``bf16=False`` so both sides run in
fp32 (with bf16 on, TRL's own rewards move by ~1e-4 from its fp32 values).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from rewardkit import BradleyTerryRM, DPOImplicitRM, load_preferences, load_reward_model, train_reward_model
from rewardkit.tiny import build_tiny_model

datasets = pytest.importorskip("datasets")
trl = pytest.importorskip("trl")  # the dev extra installs trl and mergekit: CI runs these tests

CONV = [{"role": "user", "content": "tell me about pasta"}]


@pytest.fixture(autouse=True)
def _quiet():
    datasets.disable_progress_bars()
    logging.getLogger("trl").setLevel(logging.ERROR)
    yield


@pytest.fixture(scope="module")
def bpe_models(tmp_path_factory):
    """Byte-level BPE tiny models (spaces live inside tokens, as in real chat models): policy and
    reference with a chat template, and a pair without one."""
    d = tmp_path_factory.mktemp("parity")
    return {
        "template": (
            build_tiny_model(d / "pol", seed=0, bpe=True),
            build_tiny_model(d / "ref", seed=1, bpe=True),
        ),
        "none": (
            build_tiny_model(d / "pol_nt", seed=2, bpe=True, chat_template=False),
            build_tiny_model(d / "ref_nt", seed=3, bpe=True, chat_template=False),
        ),
    }


def _rows(kind: str) -> list[dict]:
    """Preference rows in TRL's dataset formats."""
    answers = [(" great good clear", " bad wrong"), (" helpful", " rude rude vague"), (" good", " bad")]
    if kind == "conversational":
        return [
            {
                "prompt": CONV,
                "chosen": [{"role": "assistant", "content": c.strip()}],
                "rejected": [{"role": "assistant", "content": r.strip()}],
            }
            for c, r in answers
        ]
    if kind == "trailing_space":  # the prompt ends in a space: TRL's boundary is inside a token
        return [
            {"prompt": "tell me about pasta ", "chosen": c.strip(), "rejected": r.strip()} for c, r in answers
        ]
    return [{"prompt": "tell me about pasta", "chosen": c, "rejected": r} for c, r in answers]


def test_implicit_prompt_split_matches_trl_extract_prompt():
    from trl.data_utils import extract_prompt

    cases = [
        ("The sky is blue.", "The sky is green."),
        ("Answer: 5", "Answer: 6"),
        ("x  y", "x  z"),
        ("Hello world, friend", "Hello world! friend"),
    ]
    for chosen, rejected in cases:
        p = load_preferences([{"chosen": chosen, "rejected": rejected}])[0]
        ref = extract_prompt({"chosen": chosen, "rejected": rejected})
        assert (p.prompt, p.chosen, p.rejected) == (ref["prompt"], ref["chosen"], ref["rejected"])
    conv = {
        "chosen": CONV + [{"role": "assistant", "content": "yes"}],
        "rejected": CONV + [{"role": "assistant", "content": "no"}],
    }
    p, ref = load_preferences([conv])[0], extract_prompt(conv)
    assert p.prompt == ref["prompt"] and [p.chosen, p.rejected] == [
        ref["chosen"][0]["content"],
        ref["rejected"][0]["content"],
    ]


@pytest.mark.parametrize("kind", ["plain", "conversational", "no_template", "trailing_space"])
def test_dporm_rewards_equal_dpo_trainer(bpe_models, kind, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    policy, reference = bpe_models["none" if kind == "no_template" else "template"]
    rows = _rows("plain" if kind == "no_template" else kind)
    args = DPOConfig(
        output_dir=str(tmp_path),
        per_device_eval_batch_size=1,
        report_to=[],
        use_cpu=True,
        bf16=False,
        beta=1.0,
        max_length=None,
        disable_tqdm=True,
    )
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(policy),
        ref_model=AutoModelForCausalLM.from_pretrained(reference),
        args=args,
        processing_class=AutoTokenizer.from_pretrained(policy),
        train_dataset=datasets.Dataset.from_list(rows),
    )
    rm = DPOImplicitRM.from_pretrained(policy, reference, beta=1.0)
    ours = rm.score_pairs(load_preferences(rows))
    for i, row in enumerate(rows):
        m = trainer.evaluate(eval_dataset=datasets.Dataset.from_list([row]))
        assert abs(m["eval_rewards/chosen"] - ours.chosen[i]) <= 1e-4
        assert abs(m["eval_rewards/rejected"] - ours.rejected[i]) <= 1e-4
    rewards = np.concatenate([ours.chosen, ours.rejected])
    assert np.abs(rewards).max() > 1e-2 and len(set(rewards.tolist())) == len(rewards)  # not 0 == 0


def _hf_scores(folder, id_lists) -> np.ndarray:
    """HF's own batched forward (right padding with the tokenizer's pad id) on the given ids."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    width = max(map(len, id_lists))
    ids = torch.tensor([x + [pad] * (width - len(x)) for x in id_lists])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in id_lists])
    with torch.inference_mode():
        return model(input_ids=ids, attention_mask=mask).logits[:, 0].numpy()


@pytest.mark.parametrize("kind", ["plain", "conversational"])
def test_reward_trainer_checkpoint_scores_the_same_in_rewardkit_and_hf(kind, tmp_path):
    """A checkpoint trained by TRL's RewardTrainer with a pad == eos tokenizer: rewardkit tokenises the
    pairs into TRL's own ids, and its rewards equal TRL's predictions and HF's forward (<= 1e-5)."""
    from trl import RewardConfig, RewardTrainer

    base = build_tiny_model(tmp_path / "base", seed=4, bpe=True, pad_token=False)
    rows = _rows(kind) * 4
    args = RewardConfig(
        output_dir=str(tmp_path / "trl"),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=1,
        max_steps=4,
        learning_rate=1e-2,
        report_to=[],
        use_cpu=True,
        bf16=False,
        disable_tqdm=True,
        save_strategy="no",
        logging_steps=100,
    )
    trainer = RewardTrainer(model=str(base), args=args, train_dataset=datasets.Dataset.from_list(rows))
    trainer.train()
    trainer.save_model(str(tmp_path / "rm"))
    tok = trainer.processing_class
    assert tok.pad_token_id == tok.eos_token_id  # TRL padded with EOS
    evals = _rows(kind)
    trl_ds = trainer._prepare_dataset(datasets.Dataset.from_list(evals), tok, args, "parity")
    trl_ids = list(trl_ds["chosen_ids"]) + list(trl_ds["rejected_ids"])
    trl_pred = trainer.predict(trl_ds).predictions.reshape(-1)  # batch 1: chosen_i, rejected_i, ...
    trl_pred = np.concatenate([trl_pred[0::2], trl_pred[1::2]])

    rm = load_reward_model(tmp_path / "rm")
    pairs = load_preferences(evals)
    ours_ids = [e.ids for e in rm.formatter.encode_pairs(pairs)]
    assert ours_ids == trl_ids  # one token convention: TRL's
    ours = rm.score_pairs(pairs)
    ours = np.concatenate([ours.chosen, ours.rejected])
    np.testing.assert_allclose(ours, trl_pred, atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours, _hf_scores(tmp_path / "rm", trl_ids), atol=1e-5, rtol=0)
    assert np.ptp(ours) > 1e-3


@pytest.mark.parametrize("kind", ["plain", "conversational"])
def test_rewardkit_checkpoint_scores_the_same_in_hf(kind, tmp_path):
    base = build_tiny_model(tmp_path / "base", seed=5, bpe=True, pad_token=False)
    rows = _rows(kind) * 4
    train_reward_model(
        base, load_preferences(rows), out=tmp_path / "rm", epochs=2, lr=1e-2, batch_size=4, progress=False
    )
    rm = load_reward_model(tmp_path / "rm")
    pairs = load_preferences(_rows(kind))
    ids = [e.ids for e in rm.formatter.encode_pairs(pairs)]
    ours = rm.score_pairs(pairs)
    np.testing.assert_allclose(
        np.concatenate([ours.chosen, ours.rejected]), _hf_scores(tmp_path / "rm", ids), atol=1e-5, rtol=0
    )


def test_grpo_reward_funcs_rewardkit_equals_the_module(tmp_path):
    """GRPOTrainer's own reward computation with [rewardkit RM, the same checkpoint as an nn.Module]."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    base = build_tiny_model(tmp_path / "base", seed=6, bpe=True, pad_token=False)
    BradleyTerryRM.from_pretrained(base, head_seed=3).save(tmp_path / "rm")
    rk = load_reward_model(tmp_path / "rm")
    module = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm")
    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"),
        report_to=[],
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=2,
        num_generations=2,
        max_completion_length=4,
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(
        model=str(base),
        reward_funcs=[rk, module],
        reward_processing_classes=[None, AutoTokenizer.from_pretrained(tmp_path / "rm")],
        args=args,
        train_dataset=datasets.Dataset.from_list([{"prompt": "tell me"}] * 2),
    )
    batches = [
        (["tell me about pasta", "tell me about pasta "], [" great good", "bad wrong vague"]),
        (
            [CONV, CONV],
            [[{"role": "assistant", "content": "great good"}], [{"role": "assistant", "content": "bad"}]],
        ),
    ]
    for prompts, completions in batches:
        inputs = [{"prompt": p, "completion": c} for p, c in zip(prompts, completions)]
        rewards = trainer._calculate_rewards(inputs, prompts, completions, [[0]] * len(prompts)).numpy()
        assert np.abs(rewards[:, 0] - rewards[:, 1]).max() <= 1e-5
        assert abs(rewards[0, 0] - rewards[1, 0]) > 1e-4


def _mergekit(sources, weights, out, dtype=None):
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    cfg = {
        "merge_method": "linear",
        "models": [{"model": str(s), "parameters": {"weight": w}} for s, w in zip(sources, weights)],
    }
    if dtype is not None:
        cfg["dtype"] = dtype
    run_merge(MergeConfiguration.model_validate(cfg), str(out), options=MergeOptions(copy_tokenizer=True))
    from safetensors.torch import load_file

    return load_file(out / "model.safetensors")


@pytest.mark.parametrize(
    "in_dtype,weights,dtype",
    [
        ("float32", [1.0, 1.0, 1.0], None),
        ("float32", [0.2, 0.3, 0.5], None),
        ("bfloat16", [1.0, 1.0, 1.0], None),
        ("bfloat16", [0.7, 0.1, 0.2], "float32"),
        ("bfloat16", [2.0, 1.0, 1.0], None),  # exact products, a power-of-two sum
        ("float32", [0.3, 0.1, 0.2, 0.25, 0.15, 0.4], None),  # 6 members: torch's order of summing weights
    ],
)
def test_merge_equals_mergekit_linear_bit_for_bit(tmp_path, monkeypatch, in_dtype, weights, dtype):
    """Bit for bit, whichever path the weights take (plain adds, exact products, the fused emulation),
    with tensors split into several blocks and chunks (small sizes here, so the tiny model's do)."""
    from safetensors.torch import load_file

    from rewardkit.merge import weight_average

    monkeypatch.setattr("rewardkit.merge.average.BLOCK_BYTES", 20_000)
    monkeypatch.setattr("rewardkit.merge.kernel.CHUNK", 777)

    base = build_tiny_model(tmp_path / "base", seed=7)
    sources = []
    for i in range(len(weights)):
        rm = BradleyTerryRM.from_pretrained(base, head_seed=i, dtype=in_dtype)
        with torch.no_grad():
            g = torch.Generator().manual_seed(i)
            for p in rm.model.parameters():
                p.add_(torch.randn(p.shape, generator=g).to(p.dtype) * 0.05)
        rm.save(tmp_path / f"m{i}")
        sources.append(tmp_path / f"m{i}")
    ref = _mergekit(sources, weights, tmp_path / "mk", dtype)
    weight_average(sources, weights, out=tmp_path / "rk", dtype=dtype)
    ours = load_file(tmp_path / "rk" / "model.safetensors")
    assert set(ours) == set(ref)
    for k in ref:
        assert ours[k].dtype == ref[k].dtype and torch.equal(ours[k], ref[k]), k
