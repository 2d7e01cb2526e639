import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from rewardkit import DPOImplicitRM, load_reward_model, train_dpo
from rewardkit.scoring import collate
from rewardkit.synthetic import make_synthetic_preferences


@pytest.fixture(scope="module")
def two_lms(tmp_path_factory):
    from rewardkit.tiny import build_tiny_model

    d = tmp_path_factory.mktemp("dporm")
    return build_tiny_model(d / "policy", seed=0), build_tiny_model(d / "ref", seed=1)


def _naive_logprobs(model, ids, mask, starts):
    """Plain reference: full [B, T, V] log-softmax, gather, mask, sum."""
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float(), -1)
    tok_lp = logp[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)  # predicts tokens 1..T-1
    t = torch.arange(1, ids.shape[1])
    m = (t[None] >= starts[:, None]) & mask[:, 1:].bool()
    return (tok_lp * m).sum(-1), m.sum(-1)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_implicit_rewards_match_naive_computation(two_lms, reduction, side):
    rm = DPOImplicitRM.from_pretrained(*two_lms, beta=0.3, reduction=reduction)
    ds = make_synthetic_preferences(16, seed=4)
    prompts, responses = ds.prompts, [p.chosen for p in ds]
    items = rm.formatter.encode_many(prompts, responses)
    with torch.inference_mode():
        expected = []
        for rows in ([[i] for i in range(16)], [list(range(16))]):  # batch sizes 1 and 16
            out = np.empty(16)
            for idx in rows:
                b = collate(items, idx, rm.tokenizer.pad_token_id, padding_side=side)
                pi, n = _naive_logprobs(rm.policy, b.input_ids, b.attention_mask, b.response_start)
                ref, _ = _naive_logprobs(rm.ref_model, b.input_ids, b.attention_mask, b.response_start)
                d = pi - ref
                out[idx] = (0.3 * (d / n if reduction == "mean" else d)).numpy()
            expected.append(out)
    got = rm.score(prompts, responses)
    assert np.abs(got - expected[0]).max() <= 1e-4 and np.abs(got - expected[1]).max() <= 1e-4
    assert np.abs(got).max() > 1e-3  # not trivially zero: the two models differ


def test_reference_free_and_lengths(two_lms):
    rm = DPOImplicitRM.from_pretrained(two_lms[0], beta=1.0, reference_free=True)
    ds = make_synthetic_preferences(4, seed=1)
    items = rm.formatter.encode_many(ds.prompts, [p.chosen for p in ds])
    b = collate(items, list(range(4)), rm.tokenizer.pad_token_id)
    with torch.inference_mode():
        pi, n = _naive_logprobs(rm.policy, b.input_ids, b.attention_mask, b.response_start)
    np.testing.assert_allclose(rm.score(ds.prompts, [p.chosen for p in ds]), pi.numpy(), atol=1e-4)
    assert n.tolist() == [len(x) - x.response_start for x in items]  # response tokens incl. <|im_end|>


def test_dpo_training_learns_and_round_trips(tiny_lm, synthetic_split, tmp_path):
    train, test = synthetic_split
    before = DPOImplicitRM.from_pretrained(tiny_lm, tiny_lm, beta=0.1).score_pairs(test)
    assert np.all(before.margins == 0)  # policy == reference: every implicit reward is 0
    rm = train_dpo(
        tiny_lm, train, out=tmp_path / "dpo", epochs=3, lr=3e-3, beta=0.1, batch_size=16, progress=False
    ).model
    acc = rm.score_pairs(test).accuracy()
    assert acc >= 0.9
    loaded = load_reward_model(tmp_path / "dpo")
    assert isinstance(loaded, DPOImplicitRM) and loaded.beta == 0.1 and loaded.reduction == "sum"
    assert loaded.ref_model_path == str(tiny_lm.resolve())
    np.testing.assert_allclose(loaded.score_pairs(test).margins, rm.score_pairs(test).margins, atol=1e-5)


def test_lora_reference_is_the_adapter_disabled_base(tiny_lm, synthetic_split, tmp_path):
    train, test = synthetic_split
    rm = train_dpo(
        tiny_lm, train[:64], out=tmp_path / "lora", epochs=1, lr=1e-2, lora_r=4, batch_size=16, progress=False
    ).model
    assert rm.ref_model is None and rm.is_lora  # no second copy of the weights
    explicit_ref = DPOImplicitRM(
        rm.policy,
        DPOImplicitRM.from_pretrained(tiny_lm, reference_free=True, beta=1).policy,
        rm.tokenizer,
        beta=rm.beta,
    )
    a, b = rm.score_pairs(test[:16]).chosen, explicit_ref.score_pairs(test[:16]).chosen
    assert np.abs(a).max() > 1e-4 and np.abs(a - b).max() <= 1e-5
    loaded = load_reward_model(tmp_path / "lora")
    assert loaded.ref_model is None and np.abs(loaded.score_pairs(test[:16]).chosen - a).max() <= 1e-5


def test_pair_shares_the_earlier_boundary(two_lms):
    """A template that renders a non-empty answer under another role name than its generation prompt:
    each response starts where the tokenised prompt and the sequence first differ, and a pair's two
    responses share the earlier boundary, as in DPOTrainer."""
    rm = DPOImplicitRM.from_pretrained(*two_lms, beta=0.1)
    rm.tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'assistant' and m['content'] %}"
        "answer {{ m['content'] }}{% else %}{{ m['role'] }} {{ m['content'] }} {% endif %}"
        "{% endfor %}{% if add_generation_prompt %}assistant{% endif %}"
    )
    rm.formatter = type(rm.formatter)(rm.tokenizer, None, "auto")
    conv = [{"role": "user", "content": "tell me"}]
    empty, good = rm.formatter.encode_many([conv, conv], ["", "good"])
    assert (empty.response_start, empty.merged) == (4, False)  # "user tell me assistant" | ""
    assert (good.response_start, good.merged) == (3, True)  # "user tell me" | "answer good"
    c, r = rm.formatter.encode_pair(conv, "good", "", 0)
    assert c.response_start == r.response_start == 3


def test_full_policy_without_reference_is_refused(two_lms):
    with pytest.raises(Exception, match="needs a reference model"):
        DPOImplicitRM.from_pretrained(two_lms[0], beta=0.1)


PEAK_SCRIPT = textwrap.dedent("""
    import sys, torch
    from transformers import AutoModelForCausalLM
    from rewardkit.logprobs import sequence_logprobs
    model = AutoModelForCausalLM.from_pretrained(sys.argv[1]).eval()
    torch.manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (8, 512))
    mask = torch.ones_like(ids); starts = torch.full((8,), 256)
    def status(key): return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key))
    with torch.inference_mode():
        sequence_logprobs(model, ids[:1, :16], mask[:1, :16], starts[:1])  # warm-up
        open("/proc/self/clear_refs", "w").write("5")  # reset the peak-RSS mark (VmHWM)
        base = status("VmRSS:")
        if sys.argv[2] == "naive":
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
            out = logp[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)[:, 255:].sum(-1)
        else:
            out = sequence_logprobs(model, ids, mask, starts)[0]
    print(status("VmHWM:") - base)
""")


def test_peak_memory_large_vocab_is_at_most_half_of_naive(tmp_path):
    from rewardkit.tiny import build_tiny_model

    path = build_tiny_model(tmp_path / "bigvocab", vocab_extra=32000 - 100, hidden=64)
    peaks = {}
    for mode in ("naive", "rewardkit"):
        r = subprocess.run(
            [sys.executable, "-c", PEAK_SCRIPT, str(path), mode],
            capture_output=True,
            text=True,
            env={"OMP_NUM_THREADS": "1", "PATH": ""},
            timeout=300,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        peaks[mode] = int(r.stdout.strip().splitlines()[-1])
    print("peak RSS growth, bytes:", peaks)
    # naive holds [8, 512, 32000] fp32 logits and log-probs (~0.5 GB each)
    assert peaks["naive"] > 500e6
    assert peaks["rewardkit"] <= 0.5 * peaks["naive"], peaks


def _tiny_arch(kind: str, folder):
    """A tiny causal LM whose forward transforms the LM head's logits (saved with the tiny tokenizer)."""
    from transformers import AutoModelForCausalLM, CohereConfig, Gemma2Config, GraniteConfig

    from rewardkit.synthetic import vocabulary
    from rewardkit.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer(vocabulary())
    common = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
    )
    config = {
        "granite": lambda: GraniteConfig(**common, logits_scaling=4.0),
        "cohere": lambda: CohereConfig(**common, logit_scale=0.25),
        "gemma2": lambda: Gemma2Config(**common, head_dim=8, final_logit_softcapping=0.5),
    }[kind]()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(50)  # large logits: scaling and capping matter
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["granite", "cohere", "gemma2"])
def test_logprobs_match_the_model_own_logits(kind, tmp_path):
    """Granite divides logits by logits_scaling, Cohere multiplies by logit_scale, Gemma 2 soft-caps:
    chunked response log-probs equal a log-softmax of the model's own forward logits."""
    from transformers import AutoModelForCausalLM

    from rewardkit.logprobs import sequence_logprobs

    path = _tiny_arch(kind, tmp_path / kind)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    rm = DPOImplicitRM.from_pretrained(path, reference_free=True, beta=1.0)
    ds = make_synthetic_preferences(6, seed=5)
    items = rm.formatter.encode_many(ds.prompts, [p.chosen for p in ds])
    b = collate(items, list(range(6)), rm.tokenizer.pad_token_id)
    with torch.inference_mode():
        expected, _ = _naive_logprobs(model, b.input_ids, b.attention_mask, b.response_start)
        got, _ = sequence_logprobs(model, b.input_ids, b.attention_mask, b.response_start)
        raw = torch.log_softmax(model.get_output_embeddings()(model.model(b.input_ids).last_hidden_state), -1)
    assert torch.allclose(got, expected, atol=1e-3, rtol=1e-5)
    raw_lp = raw[:, :-1].gather(-1, b.input_ids[:, 1:, None])[..., 0]
    assert (raw_lp.sum(-1) - expected).abs().max() > 1.0  # ignoring the transform would be far off


def test_a_model_with_an_unknown_logit_transform_is_refused(tiny_lm):
    from transformers import AutoModelForCausalLM

    from rewardkit.checkpoints import load_tokenizer
    from rewardkit.errors import ModelError

    policy = AutoModelForCausalLM.from_pretrained(tiny_lm)
    forward = policy.forward

    def shifted(*args, **kwargs):  # e.g. a remote-code model scaling its logits on its own
        out = forward(*args, **kwargs)
        out.logits = out.logits * 3.0
        return out

    policy.forward = shifted
    with pytest.raises(ModelError, match="transforms the LM head's logits"):
        DPOImplicitRM(policy, None, load_tokenizer(tiny_lm), beta=0.1, reference_free=True)


def test_bf16_one_precision_rule_for_policy_and_reference(tiny_lm, synthetic_split, tmp_path):
    """bf16 (tested on CPU): the reference pass runs under the policy's autocast, so the first DPO step
    sees log-ratios of exactly 0 (loss log 2); the returned model is in one dtype and scores exactly as
    the same model reloaded in that dtype."""
    train, test = synthetic_split
    trained = train_dpo(
        tiny_lm,
        train[:32],
        out=tmp_path / "dpo",
        epochs=1,
        lr=1e-3,
        beta=0.1,
        batch_size=8,
        bf16=True,
        dtype="bfloat16",
        logging_steps=1,
        progress=False,
    )
    rm = trained.model
    assert trained.record.first_loss == pytest.approx(math.log(2), abs=1e-6)
    assert {p.dtype for p in rm.policy.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in rm.ref_model.parameters()} == {torch.bfloat16}
    reloaded = load_reward_model(tmp_path / "dpo", dtype="bfloat16")
    np.testing.assert_array_equal(rm.score_pairs(test[:16]).margins, reloaded.score_pairs(test[:16]).margins)
    same = DPOImplicitRM.from_pretrained(tiny_lm, tiny_lm, beta=0.1, dtype="bfloat16")
    assert np.all(same.score_pairs(test[:16]).margins == 0)  # identical weights, one dtype: zero rewards
