import numpy as np
import pytest
import torch

from rewardkit import BradleyTerryRM, load_reward_model
from rewardkit.scoring import collate
from rewardkit.synthetic import make_synthetic_preferences


def _rows(rm, prompts, responses, side):
    items = rm.formatter.encode_many(prompts, responses)
    batch = collate(items, list(range(len(items))), rm.tokenizer.pad_token_id, padding_side=side)
    with torch.inference_mode():
        return rm.module(batch.input_ids, batch.attention_mask).numpy()


def test_left_right_padding_and_batch_size_invariance(tiny_lm):
    rm = BradleyTerryRM.from_pretrained(tiny_lm, head_seed=3)
    ds = make_synthetic_preferences(16, seed=5)
    prompts, responses = ds.prompts, [p.chosen for p in ds]
    single = np.array([_rows(rm, [p], [r], "right")[0] for p, r in zip(prompts, responses)])
    right, left = _rows(rm, prompts, responses, "right"), _rows(rm, prompts, responses, "left")
    assert len({len(x) for x in rm.formatter.encode_many(prompts, responses)}) > 1  # padding really happens
    assert np.abs(right - single).max() <= 1e-4
    assert np.abs(left - single).max() <= 1e-4
    engine = rm.score(prompts, responses)  # token-budget batches, sorted by length
    rm.configure(max_tokens=1)  # forces batches of one
    assert (
        np.abs(engine - single).max() <= 1e-4 and np.abs(rm.score(prompts, responses) - single).max() <= 1e-4
    )


def test_pad_equals_eos_reads_where_hf_reads(tiny_lm_pad_eos):
    """pad == eos == end-of-turn: the reward is read where HF's seq-cls forward reads it (the rightmost
    token that is not the pad id), in any batch, left or right padded."""
    from transformers import AutoModelForSequenceClassification

    rm = BradleyTerryRM.from_pretrained(tiny_lm_pad_eos, head_seed=0)
    tok = rm.tokenizer
    assert tok.pad_token_id == tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    conv = [{"role": "user", "content": "tell me about pasta"}]
    prompts = [conv, conv, "tell me about pasta", "tell me about pasta"]
    responses = ["great helpful clear", " bad bad bad vague unclear", " good", " wrong rude"]
    scores = rm.score(prompts, responses)
    hf = rm.model.eval()
    for i, (p, r) in enumerate(zip(prompts, responses)):
        ids = torch.tensor([rm.formatter.encode(p, r).ids])
        with torch.inference_mode():
            alone = hf(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.item()
        assert abs(alone - scores[i]) <= 1e-5
    # plain text ends with the EOS it was given: HF (and so rewardkit) read the token before it
    ids = rm.formatter.encode(prompts[2], responses[2]).ids
    assert ids[-1] == tok.eos_token_id
    for side in ("right", "left"):
        assert np.abs(_rows(rm, prompts, responses, side) - scores).max() <= 1e-5
    # a checkpoint saved with pad == eos reads the same in HF's own batched forward (right padding)
    batch = tok(
        [tok.decode(rm.formatter.encode(p, r).ids) for p, r in zip(prompts, responses)],
        padding=True,
        add_special_tokens=False,
        return_tensors="pt",
    )
    with torch.inference_mode():
        hf_batched = AutoModelForSequenceClassification.from_config(hf.config)
        hf_batched.load_state_dict(hf.state_dict())
        out = hf_batched.eval()(**batch).logits[:, 0].numpy()
    assert np.abs(out - scores).max() <= 1e-5


def test_no_template_and_encoder_paths(tiny_bert, tmp_path):
    from rewardkit.tiny import build_tiny_model

    plain = build_tiny_model(tmp_path / "plain", chat_template=False)
    rm = BradleyTerryRM.from_pretrained(plain, head_seed=1)
    enc = rm.formatter.encode("tell me about pasta", " good answer")  # raw text + EOS (TRL)
    toks = rm.tokenizer.convert_ids_to_tokens(enc.ids)
    assert toks == ["tell", "me", "about", "pasta", "good", "<unk>", "<|im_end|>"] and enc.response_start == 4
    bert = BradleyTerryRM.from_pretrained(tiny_bert, head_seed=1)
    enc = bert.formatter.encode("tell me about pasta", "good answer")  # a text pair, no EOS
    toks = bert.tokenizer.convert_ids_to_tokens(enc.ids)
    assert toks == ["[CLS]", "tell", "me", "about", "pasta", "[SEP]", "good", "<unk>", "[SEP]"]
    assert enc.response_start == 6
    for model in (rm, bert):
        ds = make_synthetic_preferences(8, seed=2)
        scores = model.score(ds.prompts, [p.chosen for p in ds])
        model.configure(max_tokens=1)
        assert np.abs(scores - model.score(ds.prompts, [p.chosen for p in ds])).max() <= 1e-4


@pytest.mark.parametrize("lora", [False, True])
def test_save_load_round_trip(tiny_lm, tmp_path, lora):
    rm = BradleyTerryRM.from_pretrained(tiny_lm, head_seed=4, lora_r=4 if lora else None)
    if lora:  # make the adapter non-trivial (B starts at zero)
        with torch.no_grad():
            for n, p in rm.model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.5)
    ds = make_synthetic_preferences(12, seed=7)
    before = rm.score_pairs(ds)
    rm.save(tmp_path / "rm")
    with pytest.raises(Exception, match="already exists"):
        rm.save(tmp_path / "rm")
    loaded = load_reward_model(tmp_path / "rm")
    assert isinstance(loaded, BradleyTerryRM) and loaded.is_lora == lora
    after = loaded.score_pairs(ds)
    np.testing.assert_array_equal(before.chosen, after.chosen)
    np.testing.assert_array_equal(before.rejected, after.rejected)
    if lora:
        rm.merged().save(tmp_path / "merged")
        merged = load_reward_model(tmp_path / "merged")
        assert not merged.is_lora
        assert np.abs(merged.score_pairs(ds).chosen - before.chosen).max() <= 1e-5


def test_trl_reward_call_scores_what_grpo_scores(tiny_lm):
    """The reward_funcs call: conversations templated; plain text as prompt + completion with no EOS and
    no special tokens (GRPOTrainer's nn.Module path), checked against HF's forward on those ids."""
    rm = BradleyTerryRM.from_pretrained(tiny_lm, head_seed=2)
    tok, hf = rm.tokenizer, rm.model.eval()

    def hf_reward(ids):
        with torch.inference_mode():
            return hf(input_ids=torch.tensor([ids])).logits.item()

    conv = [{"role": "user", "content": "tell me about pasta"}]
    out = rm(
        prompts=[conv, conv], completions=[[{"role": "assistant", "content": c}] for c in ("good", "bad")]
    )
    for c, r in zip(("good", "bad"), out):
        ids = tok.apply_chat_template(conv + [{"role": "assistant", "content": c}])["input_ids"]
        assert abs(hf_reward(ids) - r) <= 1e-5
    out = rm(prompts=["tell me about pasta"] * 2, completions=[" good", " bad"], completion_ids=None)
    assert isinstance(out, list) and all(isinstance(x, float) for x in out)
    for c, r in zip((" good", " bad"), out):
        ids = tok("tell me about pasta" + c, add_special_tokens=False)["input_ids"]
        assert tok.eos_token_id not in ids and abs(hf_reward(ids) - r) <= 1e-5


def test_score_length_mismatch_is_an_error(tiny_lm):
    rm = BradleyTerryRM.from_pretrained(tiny_lm)
    with pytest.raises(ValueError, match="got 2 prompts but 1 responses"):
        rm.score(["a", "b"], ["c"])


def test_hf_seqcls_checkpoint_loads_without_manifest(tiny_lm, tmp_path):
    rm = BradleyTerryRM.from_pretrained(tiny_lm, head_seed=9)
    rm.model.save_pretrained(tmp_path / "hf")
    rm.tokenizer.save_pretrained(tmp_path / "hf")
    loaded = load_reward_model(tmp_path / "hf")
    np.testing.assert_array_equal(loaded.score(["tell me"], ["good"]), rm.score(["tell me"], ["good"]))


def test_default_device_is_this_ranks_gpu(monkeypatch):
    """Under torchrun each rank's default device is its own GPU (LOCAL_RANK), never cuda:0 for all."""
    from rewardkit.dtypes import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device(None) == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device(None) == torch.device("cuda", 1)
    monkeypatch.setenv("LOCAL_RANK", "3")  # more ranks than visible GPUs: ranks share them in turn
    assert resolve_device(None) == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")
