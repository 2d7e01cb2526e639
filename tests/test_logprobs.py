"""logprobs.py: response log-probs of a causal LM against HF's own forward, chunking, masks."""

from types import SimpleNamespace

import pytest
import torch

from rewardkit.logprobs import logit_map, response_mask, selective_log_softmax, sequence_logprobs


def test_selective_log_softmax_equals_log_softmax_in_any_chunks():
    g = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(6, 11, bias=False)
    hidden, targets = torch.randn(7, 6, generator=g), torch.randint(0, 11, (7,), generator=g)
    want = torch.log_softmax(head(hidden), -1).gather(-1, targets[:, None])[:, 0]
    for chunk in (1, 3, 7, None):
        torch.testing.assert_close(
            selective_log_softmax(hidden, head, targets, chunk), want, rtol=0, atol=1e-6
        )
    capped = selective_log_softmax(hidden, head, targets, 4, lambda x: 2.0 * torch.tanh(x / 2.0))
    want = torch.log_softmax(2.0 * torch.tanh(head(hidden) / 2.0), -1).gather(-1, targets[:, None])[:, 0]
    torch.testing.assert_close(capped, want, rtol=0, atol=1e-6)
    assert selective_log_softmax(hidden[:0], head, targets[:0]).shape == (0,)


def test_response_mask_by_hand():
    attention = torch.tensor([[1, 1, 1, 1, 0], [0, 1, 1, 1, 1]])
    got = response_mask(attention, torch.tensor([2, 0]))  # start 0 has no context: from 1
    assert got.int().tolist() == [[0, 0, 1, 1, 0], [0, 1, 1, 1, 1]]


def test_sequence_logprobs_equal_hf_forward_left_or_right_padded(tiny_lm):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_lm).eval()
    ids = torch.tensor([5, 9, 14, 3, 7, 21])  # prompt 5 9 14 | response 3 7 21
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids[None]).logits[0].float(), -1)
    want = sum(float(logp[t - 1, ids[t]]) for t in range(3, 6))
    pad = torch.tensor([0, 0])
    right = torch.cat([ids, pad])[None], torch.tensor([[1] * 6 + [0, 0]]), torch.tensor([3])
    left = torch.cat([pad, ids])[None], torch.tensor([[0, 0] + [1] * 6]), torch.tensor([5])
    with torch.no_grad():
        for input_ids, mask, start in (right, left):
            sums, lengths = sequence_logprobs(model, input_ids, mask, start, chunk_size=2)
            assert lengths.tolist() == [3]
            assert float(sums[0]) == pytest.approx(want, abs=1e-4)


def test_logit_map_reproduces_soft_capping_and_scaling():
    def lm(**config):
        inner = SimpleNamespace(config=SimpleNamespace(model_type="x", **config))
        return inner

    assert logit_map(lm()) is None
    x = torch.tensor([-100.0, 0.5, 100.0])
    torch.testing.assert_close(logit_map(lm(final_logit_softcapping=30.0))(x), 30.0 * torch.tanh(x / 30.0))
    granite = SimpleNamespace(config=SimpleNamespace(model_type="granite", logits_scaling=4.0))
    torch.testing.assert_close(logit_map(granite)(x), x / 4.0)
