import numpy as np
import pytest
import torch

from rewardkit.scoring import plan_batches, run_batches
from rewardkit.templating import Encoded


def test_plan_respects_token_budget_and_covers_everything():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 300, size=500).tolist()
    plan = plan_batches(lengths, max_tokens=1024, max_batch_size=64)
    assert sorted(i for b in plan for i in b) == list(range(500))
    for b in plan:
        width = -(-max(lengths[i] for i in b) // 8) * 8
        assert len(b) * width <= 1024 and len(b) <= 64
    # an over-long sequence is never dropped: it gets a batch of its own
    assert plan_batches([5000, 3], max_tokens=1024) == [[0], [1]]


def test_run_batches_restores_input_order():
    items = [Encoded(list(range(n)), 0) for n in (5, 17, 2, 9, 30, 1)]
    out = run_batches(
        items, lambda b: b.attention_mask.sum(-1).float(), pad_id=0, device="cpu", max_tokens=32
    )
    np.testing.assert_array_equal(out, [5, 17, 2, 9, 30, 1])


def test_oom_batches_are_split_and_retried():
    calls = []

    def fn(batch):
        calls.append(len(batch.indices))
        if len(batch.indices) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return batch.attention_mask.sum(-1).float() * 10

    items = [Encoded([1] * n, 0) for n in range(1, 9)]
    out = run_batches(items, fn, pad_id=0, device="cpu", max_tokens=10_000)
    np.testing.assert_array_equal(out, np.arange(1, 9) * 10)
    assert calls[0] == 8 and max(calls[1:]) <= 4 and sum(c for c in calls if c <= 2) == 8


def test_right_padded_causal_batches_drop_the_mask_with_identical_outputs(tiny_lm, tiny_bert):
    from transformers import AutoModel

    from rewardkit.backbone import backbone_mask, is_causal_decoder

    lm, bert = AutoModel.from_pretrained(tiny_lm).eval(), AutoModel.from_pretrained(tiny_bert).eval()
    assert is_causal_decoder(lm) and not is_causal_decoder(bert)
    right = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    left = right.flip(-1)
    assert backbone_mask(True, right) is None
    assert backbone_mask(True, left) is left and backbone_mask(False, right) is right
    # the causal mask alone gives the masked outputs at every real position of a right-padded batch
    ids = torch.randint(5, lm.config.vocab_size, right.shape)
    with torch.inference_mode():
        masked = lm(input_ids=ids, attention_mask=right).last_hidden_state
        causal = lm(input_ids=ids, attention_mask=None).last_hidden_state
    real = right.bool()
    assert (masked[real] - causal[real]).abs().max() < 1e-5
    assert (masked[~real] - causal[~real]).abs().max() > 1e-3  # pads differ, and nobody reads them


@pytest.mark.parametrize("kind", ["explicit", "implicit"])
def test_models_score_under_the_token_budget_and_match_one_at_a_time(tiny_lm, kind, batch_shapes):
    """End to end: every batch a model's forward sees holds <= max_tokens padded tokens (a longer
    sequence goes alone), and the rewards equal those of one-at-a-time scoring."""
    from rewardkit import BradleyTerryRM, DPOImplicitRM
    from rewardkit.synthetic import make_synthetic_preferences

    rm = (
        BradleyTerryRM.from_pretrained(tiny_lm, head_seed=0)
        if kind == "explicit"
        else DPOImplicitRM.from_pretrained(tiny_lm, tiny_lm, beta=0.5)
    )
    if kind == "implicit":  # a reference different from the policy, so rewards are not all zero
        with torch.no_grad():
            for p in rm.ref_model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    ds = make_synthetic_preferences(24, seed=7)
    rm.configure(max_tokens=96)
    batched = rm.score_pairs(ds)
    assert len(batch_shapes) > 1 and sum(b for b, _ in batch_shapes) == 2 * len(ds)
    assert all(b * t <= 96 or b == 1 for b, t in batch_shapes)
    assert max(b for b, _ in batch_shapes) > 1  # the budget really groups sequences
    batch_shapes.clear()
    rm.configure(max_tokens=1)
    single = rm.score_pairs(ds)
    assert all(b == 1 for b, _ in batch_shapes)
    assert np.abs(batched.chosen - single.chosen).max() <= 1e-4
    assert np.abs(batched.rejected - single.rejected).max() <= 1e-4
    assert np.abs(single.margins).max() > 1e-3  # non-trivial rewards
