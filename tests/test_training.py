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
    ).model
    assert rm.is_lora and (tmp_path / "lora" / "adapter_model.safetensors").is_file()
    assert rm.score_pairs(test).accuracy() >= 0.9
    # the saved adapter + head restore the same rewards (not only the same ranking)
    again, now = load_reward_model(tmp_path / "lora").score_pairs(test[:20]), rm.score_pairs(test[:20])
    assert np.abs(now.margins).max() > 0.1  # trained: the comparison is not of zeros
    np.testing.assert_allclose(again.chosen, now.chosen, atol=1e-5)
    np.testing.assert_allclose(again.rejected, now.rejected, atol=1e-5)


def _weights(rm):
    return {n: p.detach().clone() for n, p in rm.module.named_parameters()}


def test_head_seed_and_data_seed_are_separate(tiny_lm, synthetic_split):
    train, _ = synthetic_split
    small = train[:64]
    kw = dict(epochs=1, lr=1e-3, batch_size=8, progress=False)
    a = _weights(train_reward_model(tiny_lm, small, head_seed=1, data_seed=1, **kw).model)
    b = _weights(train_reward_model(tiny_lm, small, head_seed=1, data_seed=1, **kw).model)
    c = _weights(train_reward_model(tiny_lm, small, head_seed=1, data_seed=2, **kw).model)
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
    ).model
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
    from rewardkit.train.pairs import LengthBucketSampler

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


class _Rewards(torch.nn.Module):
    """Stand-in model returning fixed leaf rewards, so the loss gradient w.r.t. each reward is visible."""

    def __init__(self, values):
        super().__init__()
        self.leaf = torch.tensor(values, dtype=torch.float32, requires_grad=True)

    def forward(self, *args, **kwargs):
        return self.leaf


def _capture_trainer(monkeypatch, cls):
    box = {}

    def fake_train(self, *args, **kwargs):
        box["trainer"] = self

    monkeypatch.setattr(cls, "train", fake_train)
    return box


def test_margin_label_smoothing_and_centring_reach_the_training_loss(tiny_lm, monkeypatch):
    """Config -> trainer -> loss: d loss / d r equals the hand-derived gradient of
    mean[-(1-e) log s(d) - e log s(-d)] + c mean (r_c + r_r)^2 with d = r_c - r_r - m."""
    from rewardkit.data import PreferenceDataset
    from rewardkit.records import PreferencePair
    from rewardkit.train.bradley_terry import RewardTrainer

    pairs = PreferenceDataset(
        [PreferencePair("tell me", " good", " bad", {"m": m}) for m in (0.5, -1.0, 2.0)]
    )
    box = _capture_trainer(monkeypatch, RewardTrainer)
    train_reward_model(tiny_lm, pairs, margin_field="m", label_smoothing=0.1, center_coef=0.3, progress=False)
    trainer = box["trainer"]
    inputs = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    rc, rr, m = np.array([1.0, 0.2, -0.5]), np.array([0.4, 0.9, 0.3]), np.array([0.5, -1.0, 2.0])
    model = _Rewards(np.concatenate([rc, rr]))
    loss, _, _ = trainer.pair_loss(model, inputs)
    loss.backward()
    e, c, b = 0.1, 0.3, 3
    d = rc - rr - m
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    expected_loss = np.mean(-(1 - e) * np.log(sig(d)) - e * np.log(sig(-d))) + c * np.mean((rc + rr) ** 2)
    g_bt = (-(1 - e) * sig(-d) + e * sig(d)) / b
    g_c = 2 * c * (rc + rr) / b
    np.testing.assert_allclose(loss.item(), expected_loss, rtol=1e-6)
    np.testing.assert_allclose(model.leaf.grad.numpy(), np.concatenate([g_bt + g_c, -g_bt + g_c]), rtol=1e-5)


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_dpo_settings_reach_the_training_loss(tiny_lm, monkeypatch, loss_type):
    """beta, label smoothing and (IPO) the response lengths reach the DPO loss: d loss / d log pi."""
    from rewardkit import train_dpo
    from rewardkit.data import PreferenceDataset
    from rewardkit.records import PreferencePair
    from rewardkit.train.dpo import DPOTrainer

    pairs = PreferenceDataset(
        [
            PreferencePair("tell me", " good clear", " bad"),
            PreferencePair("tell me", " kind", " rude vague wrong"),
        ]
    )
    box = _capture_trainer(monkeypatch, DPOTrainer)
    smoothing = 0.2 if loss_type == "sigmoid" else 0.0
    train_dpo(tiny_lm, pairs, beta=0.5, loss=loss_type, label_smoothing=smoothing, progress=False)
    trainer = box["trainer"]
    inputs = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    pc, pr = np.array([-3.0, -2.0]), np.array([-4.0, -1.0])
    lengths = np.array([3.0, 2.0, 2.0, 4.0])  # response tokens of chosen 0, 1 and rejected 0, 1

    class Policy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.leaf = torch.tensor(np.concatenate([pc, pr]), dtype=torch.float32, requires_grad=True)

        def forward(self, *args, **kwargs):
            return self.leaf, torch.tensor(lengths, dtype=torch.float32)

    model = Policy()
    loss, _, _ = trainer.pair_loss(model, inputs)
    loss.backward()
    ref_c, ref_r = inputs["ref_chosen"].numpy(), inputs["ref_rejected"].numpy()
    beta, b = 0.5, 2
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    if loss_type == "sigmoid":
        h = (pc - ref_c) - (pr - ref_r)
        g = beta * (-(1 - smoothing) * sig(-beta * h) + smoothing * sig(beta * h)) / b
        expected = np.concatenate([g, -g])
    else:
        n_c, n_r = lengths[:2], lengths[2:]
        x = (pc - ref_c) / n_c - (pr - ref_r) / n_r
        g = 2 * (x - 1 / (2 * beta)) / b
        expected = np.concatenate([g / n_c, -g / n_r])
    np.testing.assert_allclose(model.leaf.grad.numpy(), expected, rtol=1e-5)


def test_warmup_ratio_warms_up_over_that_fraction_of_the_steps(tiny_lm, synthetic_split):
    """warmup_ratio=0.5 over 8 steps: the learning rate rises for 4 steps, then decays (transformers >= 5
    reads a warmup_steps below 1 as a ratio)."""
    trained = train_reward_model(
        tiny_lm,
        synthetic_split[0][:64],
        batch_size=8,
        lr=1e-3,
        warmup_ratio=0.5,
        logging_steps=1,
        progress=False,
    )
    lrs = [h["learning_rate"] for h in trained.record.log_history if "learning_rate" in h]
    assert len(lrs) == 8
    assert all(a < b for a, b in zip(lrs[:4], lrs[1:5])) and lrs[4] == pytest.approx(1e-3)
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:]))


def test_training_an_existing_model_keeps_its_max_length_and_convention(tiny_lm, synthetic_split):
    rm = BradleyTerryRM.from_pretrained(tiny_lm, max_length=40, chat_template="always")
    train_reward_model(rm, synthetic_split[0][:16], batch_size=8, progress=False)
    assert rm.formatter.max_length == 40 and rm.formatter.chat_template == "always"
    train_reward_model(rm, synthetic_split[0][:16], batch_size=8, max_length=64, progress=False)
    assert rm.formatter.max_length == 64


class _StopAtFirstSave:
    """A TrainerCallback that interrupts the run right after its first checkpoint is written."""

    def __getattr__(self, name):  # every other callback event: nothing
        return lambda *args, **kwargs: None

    def on_save(self, args, state, control, **kwargs):
        raise KeyboardInterrupt


@pytest.mark.parametrize("kind", ["explicit", "dpo-lora"])
def test_checkpoints_survive_and_an_interrupted_run_resumes_to_the_same_model(
    kind, tiny_lm, synthetic_split, tmp_path
):
    from rewardkit import train_dpo

    train = synthetic_split[0][:32]
    if kind == "explicit":
        fn, kw, sub = train_reward_model, {}, "fine-tune"
    else:
        fn, kw, sub = train_dpo, {"lora_r": 4, "beta": 0.1}, ""
    kw.update(epochs=2, lr=1e-3, batch_size=8, save_checkpoints=True, progress=False)
    full = fn(tiny_lm, train, out=tmp_path / "full", **kw).model
    ckpts = tmp_path / "full" / "checkpoints" / sub
    assert sorted(p.name for p in ckpts.iterdir()) == [
        "checkpoint-4",
        "checkpoint-8",
    ]  # kept beside the model
    assert (tmp_path / "full" / "rewardkit.json").is_file()
    with pytest.raises(KeyboardInterrupt):
        fn(tiny_lm, train, out=tmp_path / "cut", callbacks=[_StopAtFirstSave()], **kw)
    assert (tmp_path / "cut" / "checkpoints" / sub / "checkpoint-4").is_dir()
    assert not (tmp_path / "cut" / "rewardkit.json").exists()
    with pytest.raises(RewardkitError, match="already exists"):  # never reused without resume or force
        fn(tiny_lm, train, out=tmp_path / "cut", **kw)
    resumed = fn(tiny_lm, train, out=tmp_path / "cut", resume=True, **kw).model
    a = full.module.state_dict() if kind == "explicit" else full.policy.state_dict()
    b = resumed.module.state_dict() if kind == "explicit" else resumed.policy.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "cut" / "checkpoints" / sub / "checkpoint-8").is_dir()
    with pytest.raises(RewardkitError, match="no complete checkpoint to resume from"):
        fn(tiny_lm, train, out=tmp_path / "nothing", resume=True, **kw)


def test_training_configs_share_one_base():
    """The fields both trainers take are declared once (PairTrainingConfig) with one rule each; each
    trainer keeps its own defaults where they differ (learning rate, max_length, chat_template)."""
    from pydantic import ValidationError

    from rewardkit.train.config import DPOTrainingConfig, PairTrainingConfig, RewardTrainingConfig

    shared = set(PairTrainingConfig.model_fields)
    assert len(shared) == 19 and {"save_steps", "lora_r", "label_smoothing", "data_seed"} <= shared
    for cls in (RewardTrainingConfig, DPOTrainingConfig):
        assert shared <= set(cls.model_fields)
        for field, bad in (("batch_size", 0), ("warmup_ratio", 1.0), ("lora_dropout", 1.0), ("seed", 2**32)):
            with pytest.raises(ValidationError, match=field):
                cls(**{field: bad})
        with pytest.raises(ValidationError, match="extra"):
            cls(batch_sise=8)
    assert (RewardTrainingConfig().lr, DPOTrainingConfig().lr) == (1e-5, 1e-6)
    assert (RewardTrainingConfig().max_length, DPOTrainingConfig().max_length) == (None, 512)
