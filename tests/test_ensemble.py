import json

import numpy as np
import pytest

from rewardkit import BradleyTerryRM, EnsembleRM, load_ensemble, load_reward_model
from rewardkit.cli import main
from rewardkit.models.ensemble import AGGREGATIONS
from rewardkit.synthetic import make_synthetic_preferences

S = np.array([[1.0, 2.0, -1.0], [3.0, 0.0, -1.0], [2.0, 4.0, -1.0], [6.0, 2.0, -1.0]])  # [M=4, n=3]


def test_aggregations_hand_computed():
    np.testing.assert_allclose(AGGREGATIONS["mean"](S), [3.0, 2.0, -1.0])
    np.testing.assert_allclose(AGGREGATIONS["median"](S), [2.5, 2.0, -1.0])  # even count: mean of middle two
    np.testing.assert_allclose(AGGREGATIONS["min"](S), [1.0, 0.0, -1.0])
    # column 0: values 1, 3, 2, 6 -> mean 3, population variance (4 + 0 + 1 + 9) / 4 = 3.5
    np.testing.assert_allclose(AGGREGATIONS["mean_minus_var"](S, 2.0)[0], 3.0 - 2.0 * 3.5)
    np.testing.assert_allclose(AGGREGATIONS["mean_minus_std"](S, 0.5)[0], 3.0 - 0.5 * np.sqrt(3.5))
    np.testing.assert_allclose(AGGREGATIONS["mean_minus_std"](S)[2], -1.0)  # members agree: no penalty
    np.testing.assert_allclose(AGGREGATIONS["weighted"](S, weights=np.array([1, 1, 0, 2])), [4.0, 1.5, -1.0])
    with pytest.raises(ValueError, match="needs weights"):
        AGGREGATIONS["weighted"](S)


def test_aggregations_odd_count_hand_computed():
    s = np.array([[1.0, 5.0], [2.0, 7.0], [9.0, 6.0]])  # [M=3, n=2]
    np.testing.assert_allclose(AGGREGATIONS["median"](s), [2.0, 6.0])  # odd count: the middle value
    # column 0: 1, 2, 9 -> mean 4, population variance (9 + 4 + 25) / 3 = 38/3
    np.testing.assert_allclose(AGGREGATIONS["mean_minus_std"](s, 1.3)[0], 4.0 - 1.3 * (38 / 3) ** 0.5)
    # column 1: 5, 7, 6 -> mean 6, variance 2/3
    np.testing.assert_allclose(AGGREGATIONS["mean_minus_var"](s, 3.0)[1], 6.0 - 3.0 * 2 / 3)
    for bad in ([1.0, np.nan, 1.0], [1.0, 1.0], [-1.0, 1.0, 1.0], [0.0, 0.0, 0.0]):
        with pytest.raises(ValueError, match="finite non-negative"):
            AGGREGATIONS["weighted"](s, weights=np.array(bad))


@pytest.fixture(scope="module")
def members(tiny_lm):
    return [BradleyTerryRM.from_pretrained(tiny_lm, head_seed=s) for s in range(3)]


def test_ensemble_scores_and_uncertainty(members):
    ds = make_synthetic_preferences(10, seed=3)
    prompts, responses = ds.prompts, [p.chosen for p in ds]
    alone = np.stack([m.score(prompts, responses) for m in members])
    ens = EnsembleRM(members, aggregation="mean_minus_std", uncertainty_penalty=0.5)
    u = ens.score_with_uncertainty(prompts, responses)
    np.testing.assert_allclose(u.members, alone, atol=1e-6)
    np.testing.assert_allclose(u.std, alone.std(0), atol=1e-6)
    np.testing.assert_allclose(u.aggregate, alone.mean(0) - 0.5 * alone.std(0), atol=1e-6)


def test_zscore_fitted_on_calibration_only_and_round_trips(members, tmp_path):
    cal, test = make_synthetic_preferences(30, seed=1), make_synthetic_preferences(10, seed=2)
    ens = EnsembleRM(members, aggregation="median", normalize="zscore")
    with pytest.raises(Exception, match="needs statistics"):
        ens.score(test.prompts, [p.chosen for p in test])
    cal_p, cal_r = cal.prompts * 2, [p.chosen for p in cal] + [p.rejected for p in cal]
    stats = ens.fit_normalization(cal_p, cal_r)
    raw = np.stack([m.score(cal_p, cal_r) for m in members]).astype(np.float64)
    np.testing.assert_allclose(stats["mean"], raw.mean(1))
    np.testing.assert_allclose(stats["std"], raw.std(1))
    z = ens.score_with_uncertainty(cal_p, cal_r).members
    np.testing.assert_allclose(z.mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(1), 1, atol=1e-5)
    before = ens.score(test.prompts, [p.chosen for p in test])
    ens.save(tmp_path / "ens")
    loaded = load_reward_model(tmp_path / "ens")
    assert isinstance(loaded, EnsembleRM) and loaded.stats == stats and loaded.aggregation == "median"
    np.testing.assert_array_equal(loaded.score(test.prompts, [p.chosen for p in test]), before)


def test_ensemble_cli_and_score_writes_members(members, tmp_path, capsys, batch_shapes):
    for i, m in enumerate(members):
        m.save(tmp_path / f"m{i}")
    data = tmp_path / "d.jsonl"
    make_synthetic_preferences(12, seed=4).save_jsonl(data)
    main(
        [
            "ensemble",
            *[str(tmp_path / f"m{i}") for i in range(3)],
            "-o",
            str(tmp_path / "ens"),
            "--aggregation",
            "mean_minus_var",
            "--uncertainty-penalty",
            "2",
            "--normalize",
            "zscore",
            "--calibration",
            str(data),
        ]
    )
    main(["score", "--rm", str(tmp_path / "ens"), "--data", str(data), "--out", str(tmp_path / "s.jsonl")])
    capsys.readouterr()
    rows = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    for r in rows:
        c = np.array(r["chosen_members"])
        assert len(c) == 3 and abs(r["chosen_std"] - c.std()) < 1e-5
        assert abs(r["chosen"] - (c.mean() - 2 * c.var())) < 1e-4

    # engine settings reach every member: at most 2 sequences and 64 padded tokens per batch, same scores
    batch_shapes.clear()  # only the batches of the run below
    argv = ["score", "--rm", str(tmp_path / "ens"), "--data", str(data), "--out", str(tmp_path / "s2.jsonl")]
    main([*argv, "--max-batch-size", "2", "--max-tokens", "64", "--no-progress"])
    assert len(batch_shapes) >= 3 * 24 / 2 and all(
        b <= 2 and (b * t <= 64 or b == 1) for b, t in batch_shapes
    )
    small = [json.loads(x) for x in (tmp_path / "s2.jsonl").read_text().splitlines()]
    assert max(abs(a["chosen"] - b["chosen"]) for a, b in zip(rows, small)) < 1e-4


def test_lora_members_share_one_base_and_score_exactly_as_alone(tiny_lm, tmp_path):
    import torch

    ds = make_synthetic_preferences(10, seed=6)
    paths, alone = [], []
    for s in range(3):
        rm = BradleyTerryRM.from_pretrained(tiny_lm, head_seed=s, lora_r=4)
        with torch.no_grad():
            for n, p in rm.model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.3, generator=torch.Generator().manual_seed(s))
        rm.save(tmp_path / f"lora{s}")
        paths.append(tmp_path / f"lora{s}")
        alone.append(load_reward_model(paths[-1]).score(ds.prompts, [p.chosen for p in ds]))
    ens = load_ensemble(paths, aggregation="mean")
    assert len(ens.members) == 1 and ens.num_members == 3  # one base in memory, three adapters + heads
    u = ens.score_with_uncertainty(ds.prompts, [p.chosen for p in ds])
    np.testing.assert_array_equal(u.members, np.stack(alone))
    assert np.abs(np.diff(u.members, axis=0)).max() > 1e-3  # the members really differ
    ens.save(tmp_path / "ens")
    again = load_reward_model(tmp_path / "ens")
    np.testing.assert_array_equal(
        again.score_with_uncertainty(ds.prompts, [p.chosen for p in ds]).members, u.members
    )


def test_multi_head_ensemble_trains_each_head(tiny_lm, synthetic_split):
    from rewardkit import train_reward_model

    train, test = synthetic_split
    rm = train_reward_model(
        tiny_lm, train, num_heads=4, lp_epochs=2, lp_lr=3e-2, epochs=1, lr=1e-3, batch_size=16, progress=False
    ).model
    heads = rm.member_scores(test.prompts * 2, [p.chosen for p in test] + [p.rejected for p in test])
    assert heads.shape == (4, 400) and np.abs(heads[0] - heads[1]).max() > 1e-3
    accs = [((h[:200] - h[200:]) > 0).mean() for h in heads]
    assert min(accs) >= 0.85
    ens = EnsembleRM([rm], aggregation="median")
    np.testing.assert_allclose(
        ens.score(test.prompts, [p.chosen for p in test]), np.median(heads[:, :200], 0), atol=1e-6
    )


def test_mixed_kinds_tokenised_once_per_tokenizer(tiny_lm, members, tmp_path):
    from rewardkit import DPOImplicitRM
    from rewardkit.tiny import build_tiny_model

    other = build_tiny_model(tmp_path / "ref", seed=3)  # same words -> identical tokenizer
    dporm = DPOImplicitRM.from_pretrained(tiny_lm, other, beta=0.5)
    ens = EnsembleRM([*members, dporm], aggregation="mean")
    ds = make_synthetic_preferences(6, seed=8)
    prompts, responses = ds.prompts, [p.chosen for p in ds]
    u = ens.score_with_uncertainty(prompts, responses)
    assert ens.last_tokenizations == 1  # 3 explicit + 1 implicit member, one tokenizer: encoded once
    expected = np.stack([m.score(prompts, responses) for m in [*members, dporm]])
    np.testing.assert_allclose(u.members, expected, atol=1e-6)
    members[0].formatter.max_length = 5  # a different encoding: tokenised separately
    try:
        ens.score(prompts, responses)
        assert ens.last_tokenizations == 2
    finally:
        members[0].formatter.max_length = None


def _lora_member(tiny_lm, folder, seed, **kw):
    import torch

    rm = BradleyTerryRM.from_pretrained(tiny_lm, head_seed=seed, lora_r=4, **kw)
    with torch.no_grad():
        for n, p in rm.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.3, generator=torch.Generator().manual_seed(seed))
    rm.save(folder)
    return folder


def test_weighted_and_zscore_follow_the_given_member_order_across_shared_bases(tiny_lm, tmp_path):
    """LoRA members sharing a base load as one model, but rows, weights and statistics keep the order the
    user gave (LoRA, full, LoRA): each one-hot weighting returns exactly that member's rewards."""
    ds = make_synthetic_preferences(8, seed=6)
    prompts, responses = ds.prompts, [p.chosen for p in ds]
    a = _lora_member(tiny_lm, tmp_path / "a", 1)
    BradleyTerryRM.from_pretrained(tiny_lm, head_seed=5).save(tmp_path / "full")
    c = _lora_member(tiny_lm, tmp_path / "c", 2)
    order = [a, tmp_path / "full", c]
    alone = np.stack([load_reward_model(p).score(prompts, responses) for p in order])
    for i in range(3):
        w = [0.0, 0.0, 0.0]
        w[i] = 1.0
        ens = load_ensemble(order, aggregation="weighted", weights=w)
        assert len(ens.members) == 2 and ens.num_members == 3  # a and c share one base
        np.testing.assert_array_equal(ens.score(prompts, responses), alone[i])
    with pytest.raises(ValueError, match="3 finite non-negative"):
        load_ensemble(order, aggregation="weighted", weights=[1.0, 1.0])
    ens = load_ensemble(order, aggregation="weighted", weights=[0.0, 0.0, 1.0], normalize="zscore")
    stats = ens.fit_normalization(prompts, responses)
    np.testing.assert_allclose(stats["mean"], alone.mean(1), rtol=1e-6)
    ens.save(tmp_path / "ens")
    again = load_reward_model(tmp_path / "ens")
    assert again.weights == [0.0, 0.0, 1.0]
    np.testing.assert_allclose(
        again.score(prompts, responses), (alone[2] - alone[2].mean()) / alone[2].std(), atol=1e-5
    )


def test_weighted_multi_head_member_counts_rows(tiny_lm):
    multi = BradleyTerryRM.from_pretrained(tiny_lm, head_seed=1, num_heads=2)
    single = BradleyTerryRM.from_pretrained(tiny_lm, head_seed=2)
    ds = make_synthetic_preferences(6, seed=3)
    prompts, responses = ds.prompts, [p.chosen for p in ds]
    heads = multi.member_scores(prompts, responses)
    ens = EnsembleRM([multi, single], aggregation="weighted", weights=[0.0, 1.0, 0.0])
    np.testing.assert_allclose(ens.score(prompts, responses), heads[1], atol=1e-6)
    with pytest.raises(ValueError, match="3 finite non-negative"):
        EnsembleRM([multi, single], aggregation="weighted", weights=[1.0, 1.0])


def test_lora_members_with_another_max_length_are_not_grouped(tiny_lm, tmp_path):
    a = _lora_member(tiny_lm, tmp_path / "a", 1, max_length=512)
    b = _lora_member(tiny_lm, tmp_path / "b", 2, max_length=6)  # truncates: another encoding
    ds = make_synthetic_preferences(6, seed=3)
    prompts, responses = ds.prompts, [p.chosen for p in ds]
    ens = load_ensemble([a, b])
    assert len(ens.members) == 2 and [m.formatter.max_length for m in ens.members] == [512, 6]
    expected = np.stack([load_reward_model(p).score(prompts, responses) for p in (a, b)])
    np.testing.assert_array_equal(ens.score_with_uncertainty(prompts, responses).members, expected)


def test_non_finite_member_rewards_are_refused_when_fitting(members):
    import torch

    head = members[2].model.score
    saved = head.weight.detach().clone()
    try:
        with torch.no_grad():
            head.weight.fill_(float("nan"))
        ens = EnsembleRM(members, normalize="zscore")
        with pytest.raises(Exception, match=r"ensemble member #2: .*3 of 3 rewards are NaN or infinite"):
            ens.fit_normalization(["tell me"] * 3, [" good", " bad", " clear"])
    finally:
        with torch.no_grad():
            head.weight.copy_(saved)


def test_saved_ensembles_copy_model_files_not_checkpoints(members, tmp_path):
    for i, m in enumerate(members[:2]):
        m.save(tmp_path / f"m{i}")
    (tmp_path / "m0" / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    (tmp_path / "m0" / "checkpoints" / "checkpoint-1" / "optimizer.pt").write_bytes(b"x" * 100)
    ens = load_ensemble([tmp_path / "m0", tmp_path / "m1"])
    ens.save(tmp_path / "ens")
    assert (tmp_path / "ens" / "member_0" / "model.safetensors").is_file()
    assert not (tmp_path / "ens" / "member_0" / "checkpoints").exists()


def test_nested_ensembles_and_unrecorded_head_counts_give_their_rows(members, tmp_path):
    """Rows come from the loaded members (a nested ensemble has 2, a manifest with num_heads null 1),
    not from the manifests' num_heads (which refused these mixes)."""
    ds = make_synthetic_preferences(6, seed=7)
    prompts, responses = ds.prompts, [p.chosen for p in ds]
    for i, m in enumerate(members):
        m.save(tmp_path / f"m{i}")
    load_ensemble([tmp_path / "m0", tmp_path / "m1"]).save(tmp_path / "inner")
    man = json.loads((tmp_path / "m2" / "rewardkit.json").read_text())
    man["num_heads"] = None
    (tmp_path / "m2" / "rewardkit.json").write_text(json.dumps(man))
    outer = load_ensemble([tmp_path / "m2", tmp_path / "inner"], aggregation="weighted", weights=[2, 1, 1])
    alone = np.stack([m.score(prompts, responses) for m in (members[2], members[0], members[1])])
    u = outer.score_with_uncertainty(prompts, responses)
    assert outer.num_members == 3 and u.members.shape == (3, len(ds))
    np.testing.assert_allclose(u.members, alone, atol=1e-6)
    np.testing.assert_allclose(u.aggregate, (2 * alone[0] + alone[1] + alone[2]) / 4, atol=1e-6)
