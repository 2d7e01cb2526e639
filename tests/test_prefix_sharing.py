"""Prefix-shared scoring: prompts run once per group, rewards equal the unshared forward's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rewardkit import scoring
from rewardkit.scoring import collate, collate_shared, plan_shared_batches, share_groups
from rewardkit.templating import Encoded

LONG = " ".join(["the quick brown fox jumps over the lazy dog"] * 12)  # a prompt of ~100 tokens
PROMPTS = [LONG + " tell me about cats", "short question", LONG + " now about dogs"]
RESPONSES = ["cats purr", "a dog barks at night", "", "the fox is quick and brown", "lazy"]


def _enc(prompt: list[int], response: list[int]) -> Encoded:
    return Encoded(prompt + response, len(prompt))


def test_share_groups_by_prompt_tokens_and_saving():
    """Groups are sequences with identical prompt tokens whose saving (k - 1) x P reaches the threshold
    share of their tokens; a single sequence, a short prompt or an empty response stays unshared."""
    p40, q40 = list(range(40)), list(range(1, 41))
    items = [
        _enc(p40, [7] * 10),  # 0: group A (3 x 40 prompt, 10 + 20 + 30 response tokens)
        _enc(p40, [8] * 20),  # 1: A
        _enc(q40, [9] * 5),  # 2: alone: unshared
        _enc(p40, [9] * 30),  # 3: A
        _enc(list(range(8)), [1]),  # 4: prompt under PREFIX_MIN_TOKENS
        _enc(list(range(8)), [2]),  # 5
        _enc(q40 + [0], []),  # 6: no response token
    ]
    groups, rest = share_groups(items)
    assert groups == [[0, 1, 3]] and rest == [2, 4, 5, 6]
    # saving of group A: 2 x 40 = 80 of 3 x 40 + 60 = 180 tokens (0.444): shared at 0.44, not at 0.45
    assert share_groups(items, min_saving=0.44)[0] == [[0, 1, 3]]
    assert share_groups(items, min_saving=0.45)[0] == []
    # a pair with a 40-token prompt and 300-token answers saves 40 / 680: not shared by default
    assert share_groups([_enc(p40, [1] * 300), _enc(p40, [2] * 300)])[0] == []


def test_plan_shared_batches_respects_budget_and_keeps_groups_whole():
    p = [list(range(k * 100, k * 100 + 40 + 8 * k)) for k in range(6)]
    items = [_enc(p[k], [5] * (3 + j + k)) for k in range(6) for j in range(3)]
    groups = [[3 * k, 3 * k + 1, 3 * k + 2] for k in range(6)]
    for budget in (64, 300, 10_000):
        plan = plan_shared_batches(items, groups, budget)
        assert sorted(i for b in plan for g in b for i in g) == list(range(18))
        assert all(g in groups for b in plan for g in b)
        for b in plan:
            sb = collate_shared(items, b, pad_id=0)
            assert len(b) == 1 or sb.prefix_ids.numel() + sb.suffix_ids.numel() <= budget
            # the concatenation the two calls see is each sequence, in order
            for row, i in enumerate(sb.indices):
                got = sb.input_ids[row][sb.attention_mask[row].bool()].tolist()
                assert got == items[i].ids
    assert len(plan_shared_batches(items, groups, 10_000)) == 1
    assert len(plan_shared_batches(items, groups, 64)) == 6


def test_shared_batch_split_keeps_rows_and_their_prompts():
    items = [_enc(list(range(40)), [1, 2]), _enc(list(range(40)), [3]), _enc(list(range(50, 90)), [4, 5, 6])]
    items += [_enc(list(range(50, 90)), [7])]
    sb = collate_shared(items, [[0, 1], [2, 3]], pad_id=0)
    halves = sb.split()
    assert [h.indices for h in halves] == [[0, 1], [2, 3]]
    quarters = halves[1].split()
    assert [q.indices for q in quarters] == [[2], [3]]
    for part in (*halves, *quarters):
        for row, i in enumerate(part.indices):
            assert part.input_ids[row][part.attention_mask[row].bool()].tolist() == items[i].ids


def _perturb_lora(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _texts():
    from rewardkit.templating import Texts

    prompts = [p for p in PROMPTS for _ in RESPONSES]
    return Texts.of(prompts, RESPONSES * len(PROMPTS))


def _compare_batches(rm, items, fn, shared, pad_id):
    groups, _ = share_groups(items)
    assert len(groups) == 2  # the two long prompts; the short one is not shared
    plan = plan_shared_batches(items, groups, 4096)
    with torch.inference_mode():
        got = torch.cat([shared(collate_shared(items, b, pad_id)) for b in plan])
        rows = [i for b in plan for g in b for i in g]
        for side in ("right", "left"):
            want = fn(collate(items, rows, pad_id, padding_side=side))
            assert float((got - want).abs().max()) <= 1e-4 * max(1.0, float(want.abs().max()))
    return got


@pytest.mark.parametrize("fixture", ["tiny_lm", "tiny_lm_pad_eos"])
@pytest.mark.parametrize("lora", [False, True])
def test_explicit_shared_equals_unshared(fixture, lora, request, monkeypatch):
    from rewardkit import BradleyTerryRM

    rm = BradleyTerryRM.from_pretrained(request.getfixturevalue(fixture), lora_r=4 if lora else None)
    if lora:
        _perturb_lora(rm.model)
    rm.configure(progress=False)
    items = _texts().encode(rm.formatter)
    pad = rm.tokenizer.pad_token_id
    assert rm.module.can_share_prefix()
    if fixture == "tiny_lm_pad_eos":  # the empty response holds only EOS == pad: its reward is in the prompt
        assert any(all(t == pad for t in x.ids[x.response_start :]) for x in items)
    got = _compare_batches(rm, items, rm._rewards, rm._shared_rewards, pad)
    assert float(got.std()) > 1e-3  # rewards differ between sequences: the comparison means something
    # through the engine: sharing used for the long prompts only, same rewards as with it off
    seen = []
    monkeypatch.setattr(scoring, "BATCH_OBSERVERS", [lambda n, real, padded: seen.append((n, real))])
    shared = rm.score_texts(_texts())
    real_shared = sum(r for _, r in seen)
    rm.configure(prefix_sharing=False)
    seen.clear()
    plain = rm.score_texts(_texts())
    assert np.abs(shared - plain).max() <= 1e-4
    k = len(RESPONSES)  # each long prompt (items 0 and 2k) ran once instead of k times
    saved = (k - 1) * (items[0].response_start + items[2 * k].response_start)
    assert sum(r for _, r in seen) - real_shared == saved


@pytest.mark.parametrize("fixture", ["tiny_lm", "tiny_lm_pad_eos"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_implicit_shared_equals_unshared(fixture, reduction, request):
    """A LoRA policy against its own base (adapter disabled) and a full policy against a separate
    reference: per-token log-ratio sums equal the unshared engine's."""
    from rewardkit import DPOImplicitRM
    from rewardkit.adapters import add_lora
    from rewardkit.checkpoints import load_tokenizer
    from rewardkit.models.implicit import load_causal_lm

    path = request.getfixturevalue(fixture)
    cpu = torch.device("cpu")
    tok = load_tokenizer(path)
    policy = add_lora(load_causal_lm(path, cpu), 4, task="CAUSAL_LM", seed=0)
    _perturb_lora(policy)
    reference = load_causal_lm(path, cpu)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    for rm in (
        DPOImplicitRM(policy, None, tok, beta=0.5, reduction=reduction),
        DPOImplicitRM(load_causal_lm(path, cpu), reference, tok, beta=0.5, reduction=reduction),
    ):
        rm.configure(progress=False)
        assert rm.can_share_prefix()
        items = _texts().encode(rm.formatter)
        got = _compare_batches(rm, items, rm._rewards, rm._rewards, tok.pad_token_id)
        assert float(got.abs().max()) > 1e-3
        shared = rm.score_texts(_texts())
        rm.configure(prefix_sharing=False)
        assert np.abs(shared - rm.score_texts(_texts())).max() <= 1e-4


def test_encoder_and_cacheless_models_fall_back(tiny_bert, tiny_lm, monkeypatch):
    """A BERT encoder (bidirectional) and a backbone whose forward takes no cache score unshared."""
    from rewardkit import BradleyTerryRM
    from rewardkit.backbone import can_share_prefix

    bert = BradleyTerryRM.from_pretrained(tiny_bert)
    assert not bert.module.can_share_prefix()
    rm = BradleyTerryRM.from_pretrained(tiny_lm)
    backbone = rm.model.base_model
    plain = backbone.forward

    def no_cache(input_ids=None, attention_mask=None, position_ids=None):
        return plain(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)

    monkeypatch.setattr(backbone, "forward", no_cache)
    assert not can_share_prefix(rm.model)
    calls = []
    monkeypatch.setattr(scoring, "collate_shared", lambda *a, **k: calls.append(1))
    rm.configure(progress=False)
    assert np.isfinite(rm.score_texts(_texts())).all() and not calls


def test_engine_settings_are_one_declared_object():
    """configure() changes the model's EngineSettings (None leaves a setting as it is); a misspelt or
    fixed setting (the device) is refused instead of becoming a stray attribute."""
    engine = scoring.EngineSettings(torch.device("cpu"), max_tokens=64)
    changed = engine.configured(max_batch_size=2, prefix_sharing=False, max_tokens=None)
    assert changed == scoring.EngineSettings(torch.device("cpu"), 64, 2, None, False)
    assert engine.prefix_sharing is True and engine.max_batch_size is None  # frozen: a copy changed
    for bad in ({"max_token": 1}, {"device": "cpu"}):
        with pytest.raises(TypeError, match="unknown engine setting"):
            engine.configured(**bad)
