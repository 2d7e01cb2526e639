import numpy as np
import pytest
import torch

from rewardkit import BradleyTerryRM, RewardkitError, load_reward_model, train_reward_model


def test_bt_learns_synthetic_preference(trained_rm, synthetic_split):
    rm, out = trained_rm
    train, test = synthetic_split
    untrained = BradleyTerryRM.from_pretrained(rm.base_model, head_seed=0)
    assert untrained.score_pairs(test).accuracy() < 0.75
    assert rm.score_pairs(test).accuracy() >= 0.9
    # the saved checkpoint is safetensors and scores identically
    assert (out / "model.safetensors").is_file()
    np.testing.assert_array_equal(
        load_reward_model(out).score_pairs(test).margins, rm.score_pairs(test).margins
    )


def test_lora_training_learns(tiny_lm, synthetic_split, tmp_path):
    train, test = synthetic_split
    rm = train_reward_model(
        tiny_lm,
        train,
        out=tmp_path / "lora",
        epochs=3,
        lr=3e-3,
        lora_r=8,
        head_seed=2,
        batch_size=16,
        progress=False,
    )
    assert rm.is_lora and (tmp_path / "lora" / "adapter_model.safetensors").is_file()
    assert rm.score_pairs(test).accuracy() >= 0.9
    assert (
        load_reward_model(tmp_path / "lora").score_pairs(test[:20]).accuracy()
        == rm.score_pairs(test[:20]).accuracy()
    )


def _weights(rm):
    return {n: p.detach().clone() for n, p in rm.module.named_parameters()}


def test_head_seed_and_data_seed_are_separate(tiny_lm, synthetic_split):
    train, _ = synthetic_split
    small = train[:64]
    kw = dict(epochs=1, lr=1e-3, batch_size=8, progress=False)
    a = _weights(train_reward_model(tiny_lm, small, head_seed=1, data_seed=1, **kw))
    b = _weights(train_reward_model(tiny_lm, small, head_seed=1, data_seed=1, **kw))
    c = _weights(train_reward_model(tiny_lm, small, head_seed=1, data_seed=2, **kw))
    assert all(torch.equal(a[n], b[n]) for n in a)  # fully reproducible
    assert any(not torch.equal(a[n], c[n]) for n in a)  # data order changes the result
    h1 = BradleyTerryRM.from_pretrained(tiny_lm, head_seed=1).module.model.score.weight
    h2 = BradleyTerryRM.from_pretrained(tiny_lm, head_seed=2).module.model.score.weight
    assert not torch.equal(h1, h2)
    assert torch.equal(h1, BradleyTerryRM.from_pretrained(tiny_lm, head_seed=1).module.model.score.weight)


def test_linear_probe_warmup_trains_only_the_head(tiny_lm, synthetic_split):
    train, _ = synthetic_split
    start = _weights(BradleyTerryRM.from_pretrained(tiny_lm, head_seed=0))
    # warm-up at lr 1e-2, then a fine-tuning phase whose lr is too small to move anything measurably
    rm = train_reward_model(
        tiny_lm, train[:64], lp_epochs=1, lp_lr=1e-2, epochs=1, lr=1e-12, batch_size=8, progress=False
    )
    after = _weights(rm)
    head = [n for n in after if ".score." in f".{n}"]
    assert head and all(not torch.equal(after[n], start[n]) for n in head)
    assert max((after[n] - start[n]).abs().max().item() for n in after if n not in head) < 1e-6


def test_margin_field_is_used(tiny_lm, synthetic_split):
    train, _ = synthetic_split
    with pytest.raises(RewardkitError, match="margin field 'nope' missing"):
        train_reward_model(tiny_lm, train[:8], margin_field="nope", progress=False)


def test_existing_output_is_refused(tiny_lm, synthetic_split, tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(RewardkitError, match="already exists"):
        train_reward_model(tiny_lm, synthetic_split[0][:8], out=tmp_path / "out", progress=False)


def test_length_bucket_sampler_is_a_seeded_permutation_with_little_padding():
    from rewardkit.train.trainer import LengthBucketSampler

    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 200, size=203)
    s = LengthBucketSampler(lengths, batch_size=8, seed=3)
    e0, e1 = list(s), list(s)
    assert sorted(e0) == sorted(e1) == list(range(203)) and e0 != e1  # reshuffled each epoch
    assert list(LengthBucketSampler(lengths, 8, seed=3)) == e0  # seeded
    assert list(LengthBucketSampler(lengths, 8, seed=4)) != e0

    def padded(order):
        return sum(8 * lengths[order[i : i + 8]].max() for i in range(0, 200, 8))  # full batches only

    random_order = list(rng.permutation(203))
    assert padded(e0) < 0.75 * padded(random_order)  # padding waste is cut
    first_half = [lengths[e0[i : i + 8]].mean() for i in range(0, 96, 8)]
    assert np.std(first_half) > 10  # but batch order is not sorted by length (no curriculum)
    assert not (np.all(np.diff(first_half) >= 0) or np.all(np.diff(first_half) <= 0))
