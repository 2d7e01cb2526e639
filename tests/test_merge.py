import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rewardkit import BradleyTerryRM, ModelError, load_reward_model
from rewardkit.cli import main
from rewardkit.merge import corrupt_labels, interpolate, lmc_curve, weight_average
from rewardkit.synthetic import make_synthetic_preferences
from rewardkit.train import train_warm


def _perturbed(path, seed, lora=False, scale=0.05):
    rm = BradleyTerryRM.from_pretrained(path, head_seed=seed, lora_r=4 if lora else None)
    g = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():
        for n, p in rm.model.named_parameters():
            if not lora or "lora_B" in n:
                p.add_(torch.randn(p.shape, generator=g) * scale)
    return rm


@pytest.fixture(scope="module")
def full_members(tiny_lm, tmp_path_factory):
    d = tmp_path_factory.mktemp("full")
    for s in range(3):
        _perturbed(tiny_lm, s).save(d / f"m{s}")
    return [d / f"m{s}" for s in range(3)]


def _state(folder):
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(f))
    return out


@pytest.mark.parametrize("block_bytes", [None, 1000])
def test_full_average_is_the_weighted_mean_and_sharded(full_members, tmp_path, monkeypatch, block_bytes):
    if block_bytes:  # many row blocks per tensor: exercises the reused buffers and the background writes
        monkeypatch.setattr("rewardkit.merge.average.BLOCK_BYTES", block_bytes)
    out = weight_average(full_members, [1, 2, 1], out=tmp_path / "warm", shard_size="20KB", progress=False)
    merged, states = _state(out), [_state(m) for m in full_members]
    assert set(merged) == set(states[0]) and len(list(out.glob("model-*.safetensors"))) > 1
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(merged)
    for k, v in merged.items():
        torch.testing.assert_close(
            v, 0.25 * states[0][k] + 0.5 * states[1][k] + 0.25 * states[2][k], rtol=0, atol=1e-6
        )
    prov = json.loads((out / "merge.json").read_text())
    assert [i["weight"] for i in prov["inputs"]] == [0.25, 0.5, 0.25] and prov["weights_normalised_to_sum_1"]
    assert all(len(i["tensor_hash"]) == 32 for i in prov["inputs"])  # xxh3-128 hex
    assert len({i["tensor_hash"] for i in prov["inputs"]}) == 3
    ds = make_synthetic_preferences(8, seed=0)
    by_hand = load_reward_model(full_members[0])  # architecture + tokenizer, then the averaged weights
    by_hand.model.load_state_dict(merged, strict=True)
    np.testing.assert_allclose(
        load_reward_model(out).score(ds.prompts, [p.chosen for p in ds]),
        by_hand.score(ds.prompts, [p.chosen for p in ds]),
        atol=1e-6,
    )


def test_bf16_output_dtype(full_members, tmp_path):
    out = weight_average(full_members[:2], out=tmp_path / "bf16", dtype="bfloat16", progress=False)
    assert all(v.dtype == torch.bfloat16 for v in _state(out).values())


def test_lora_average_is_exact(tiny_lm, tmp_path):
    members = []
    for s in range(3):
        _perturbed(tiny_lm, s, lora=True, scale=0.3).save(tmp_path / f"l{s}")
        members.append(tmp_path / f"l{s}")
    out = weight_average(members, [0.5, 0.25, 0.25], out=tmp_path / "merged", progress=False)
    merged = load_reward_model(out)
    assert not merged.is_lora
    # by hand: base + sum_i w_i * (alpha / r) * B_i @ A_i, heads averaged
    ref = BradleyTerryRM.from_pretrained(tiny_lm)
    sd = ref.model.state_dict()
    adapters = [load_file(m / "adapter_model.safetensors") for m in members]
    w = [0.5, 0.25, 0.25]
    for k in adapters[0]:
        if ".lora_A." in k:
            target = k[len("base_model.model.") : k.index(".lora_A.")] + ".weight"
            kb = k.replace(".lora_A.", ".lora_B.")
            sd[target] = sd[target] + sum(
                wi * 2.0 * (a[kb] @ a[k]) for wi, a in zip(w, adapters)
            )  # alpha/r = 8/4
    sd["score.weight"] = sum(wi * a["base_model.model.score.weight"] for wi, a in zip(w, adapters))
    ref.model.load_state_dict(sd)
    for k, v in merged.model.state_dict().items():
        torch.testing.assert_close(v, sd[k], rtol=0, atol=1e-5)
    ds = make_synthetic_preferences(8, seed=1)
    np.testing.assert_allclose(
        merged.score(ds.prompts, [p.chosen for p in ds]),
        ref.score(ds.prompts, [p.chosen for p in ds]),
        atol=1e-5,
    )
    # the naive average of A and B separately differs (cross terms)
    a_mean = {k: sum(wi * a[k] for wi, a in zip(w, adapters)) for k in adapters[0]}
    k = next(k for k in a_mean if ".lora_A." in k)
    naive = a_mean[k.replace(".lora_A.", ".lora_B.")] @ a_mean[k]
    exact = sum(wi * (a[k.replace(".lora_A.", ".lora_B.")] @ a[k]) for wi, a in zip(w, adapters))
    assert (naive - exact).abs().max() > 1e-3


def test_unsupported_adapters_are_refused(tiny_lm, tmp_path):
    for s in range(2):
        _perturbed(tiny_lm, s, lora=True).save(tmp_path / f"l{s}")
    cfg = json.loads((tmp_path / "l1" / "adapter_config.json").read_text())
    (tmp_path / "l1" / "adapter_config.json").write_text(json.dumps({**cfg, "use_dora": True}))
    with pytest.raises(ModelError, match="DoRA"):
        weight_average([tmp_path / "l0", tmp_path / "l1"], out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_mismatches_name_tensors_and_write_nothing(full_members, tmp_path, capsys):
    from rewardkit.tiny import build_tiny_model

    other = BradleyTerryRM.from_pretrained(build_tiny_model(tmp_path / "big", hidden=48))
    other.save(tmp_path / "other")
    with pytest.raises(SystemExit) as e:
        main(["merge", str(full_members[0]), str(tmp_path / "other"), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "differs in shape or dtype" in err and "model.embed_tokens.weight" in err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_force_and_interrupted_merge(full_members, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    main(["merge", *map(str, full_members), "-o", str(out), "--weights", "1,1,2"])
    assert json.loads((out / "merge.json").read_text())["inputs"][2]["weight"] == 0.5
    assert "weights" in (out / "merge.yaml").read_text()
    with pytest.raises(SystemExit) as e:
        main(["merge", *map(str, full_members), "-o", str(out)])
    assert e.value.code == 2 and "already exists" in capsys.readouterr().err
    before = (out / "model.safetensors").read_bytes()

    from rewardkit import safetensors_io

    calls = {"n": 0}
    real_write = safetensors_io.StreamingShardWriter.write_parts

    def failing_write(self, name, parts):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_write(self, name, parts)

    monkeypatch.setattr(safetensors_io.StreamingShardWriter, "write_parts", failing_write)
    with pytest.raises(KeyboardInterrupt):
        weight_average(full_members, out=out, force=True, progress=False)
    assert (out / "model.safetensors").read_bytes() == before  # the old output is untouched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no half-written folder


def test_failed_write_stops_the_merge_and_leaves_nothing(full_members, tmp_path, monkeypatch):
    from rewardkit import safetensors_io

    class FullDisk:
        def __init__(self, f):
            self.f, self.left = f, 20_000

        def write(self, data):
            self.left -= len(data)
            if self.left < 0:
                raise OSError(28, "No space left on device")
            return self.f.write(data)

        def close(self):
            self.f.close()

    real_open = safetensors_io.StreamingShardWriter._open_shard

    def open_on_full_disk(self, i):
        real_open(self, i)
        self._file = FullDisk(self._file)

    monkeypatch.setattr(safetensors_io.StreamingShardWriter, "_open_shard", open_on_full_disk)
    monkeypatch.setattr("rewardkit.merge.average.BLOCK_BYTES", 1000)
    with pytest.raises(OSError, match="No space left"):
        weight_average(full_members, out=tmp_path / "out", progress=False)
    assert list(tmp_path.iterdir()) == []  # neither the output nor its temporary folder


def test_reader_reads_rows_and_reports_truncation(full_members, tmp_path):
    from rewardkit.safetensors_io import CheckpointReader, aligned_empty

    state = _state(full_members[0])
    key = max(state, key=lambda k: state[k].numel())
    with CheckpointReader(full_members[0]) as r:
        scratch = aligned_empty(1 << 16)
        rows = r.get_rows(key, 3, 7, scratch)
        assert rows.ctypes.data == scratch.ctypes.data and scratch.ctypes.data % 64 == 0  # read in place
        np.testing.assert_array_equal(rows, state[key][3:7].numpy())
        np.testing.assert_array_equal(r.get(key), state[key].numpy())
        assert torch.equal(r.get_tensor(key), state[key])
    cut = tmp_path / "cut"
    cut.mkdir()
    blob = (full_members[0] / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(blob[: len(blob) - 100])
    with pytest.raises(
        ModelError, match=r"cut/model.safetensors: truncated: tensor '.*' ends at byte \d+ of \d+"
    ):
        CheckpointReader(cut)  # found from the header, before any tensor is read


def test_merge_command_of_full_models_loads_no_torch(full_members, tmp_path):
    """`rewardkit merge` of full checkpoints is plain numpy: torch alone takes about as long to import as
    the merge of four small models takes to run (benchmarks/startup.py)."""
    code = (
        "import sys\nfrom rewardkit.cli import main\n"
        f"try:\n    main(['merge', *{[str(m) for m in full_members]!r}, '-o', {str(tmp_path / 'out')!r}])\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'datasets') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    merged, states = _state(tmp_path / "out"), [_state(m) for m in full_members]
    for k, v in merged.items():
        if v.is_floating_point():
            expected = (states[0][k] + states[1][k] + states[2][k]) / 3
            torch.testing.assert_close(v, expected, rtol=1e-6, atol=1e-7)


def test_float32_narrowing_rounds_as_torch_does():
    """The numpy merge narrows float32 averages exactly as torch's ``.to()`` does: bfloat16 by bits
    (round to nearest, ties to even), float16 by numpy; ties, negatives, subnormals and the largest
    finite values included; and it notices a rounding that overflows."""
    from rewardkit.merge.kernel import from_float32 as _from_float32
    from rewardkit.merge.kernel import overflowed as _overflowed

    rng = np.random.default_rng(0)
    base = rng.standard_normal(4096).astype(np.float32) * np.float32(10.0) ** rng.integers(-40, 38, 4096)
    ties = (np.arange(512, dtype=np.uint32) << 16 | 0x8000).view(np.float32)  # exactly half-way
    edge = np.array([0.0, -0.0, 1e-45, -1e-45, 3.389e38, -3.389e38, 65504.0, 65519.0], np.float32)
    x = np.concatenate([base, ties[np.isfinite(ties)], edge]).astype(np.float32)

    def narrow(values, dtype):
        out = np.empty(values.size, {"BF16": np.uint16, "F16": np.float16}[dtype])
        _from_float32(values, dtype, np.empty(values.size, np.uint32), out)
        return out

    bf16 = narrow(x.copy(), "BF16")
    assert np.array_equal(
        bf16, torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    )
    small = x[np.abs(x) < 6e4]
    np.testing.assert_array_equal(narrow(small.copy(), "F16"), torch.from_numpy(small).half().numpy())
    assert not _overflowed(bf16[np.isfinite(torch.from_numpy(x).to(torch.bfloat16).float().numpy())], "BF16")
    big = np.array([3.4e38], np.float32)  # finite in float32, infinite once rounded to bfloat16
    assert _overflowed(narrow(big.copy(), "BF16"), "BF16")
    assert _overflowed(narrow(np.array([7e4], np.float32), "F16"), "F16")


def test_fused_accumulation_equals_torch_addcmul():
    """mergekit accumulates with ``addcmul_`` (a fused multiply-add: one rounding); the numpy merge's
    emulation gives the same bits, on random terms of every scale, fp16 inputs, float32 subnormals, and
    sums that land within a float64 rounding of a float32 midpoint (where rounding twice is wrong)."""
    from rewardkit.merge.kernel import exact_product as _exact_product
    from rewardkit.merge.kernel import fused_add as _fused_add

    rng = np.random.default_rng(1)
    n = 100_000
    acc = (rng.standard_normal(n) * 10.0 ** rng.integers(-6, 4, n)).astype(np.float32)
    t = (rng.standard_normal(n) * 10.0 ** rng.integers(-9, 4, n)).astype(np.float32)
    acc[:100] = rng.standard_normal(100).astype(np.float32) * np.float32(1e-39)  # subnormal sums
    t[:100] = rng.standard_normal(100).astype(np.float32) * np.float32(1e-38)
    # acc = 1 + 2^-23 (odd); t * c = 2^-24 (1 - k^2 2^-46): just below the midpoint 1 + 2^-23 + 2^-24,
    # which the float64 sum rounds onto (then ties-to-even would pick 1 + 2^-22: wrong)
    k = np.arange(1, 200, dtype=np.float64)
    acc[100:299] = np.float32(1 + 2.0**-23)
    t[100:299] = ((2.0**23 + k) / 2.0**23 * 2.0**-12).astype(np.float32)
    c = np.float32((2.0**23 - 1) / 2.0**23 * 2.0**-12)  # k = 1 makes the product as described
    for coef, inputs in ((c, t), (np.float32(0.2), t), (np.float32(0.7), t.astype(np.float16))):
        want = torch.from_numpy(acc.copy()).addcmul_(torch.from_numpy(inputs).float(), torch.tensor(coef))
        got = acc.copy()
        _fused_add(got, inputs, coef)
        np.testing.assert_array_equal(got.view(np.uint32), want.numpy().view(np.uint32))
    plain = acc[100] + t[100] * c  # product rounded first: the case the fused path exists for
    assert plain != np.float32(1 + 2.0**-23)
    assert _exact_product(np.float32(1.0), "F32") and _exact_product(np.float32(3.0), "BF16")
    assert not _exact_product(np.float32(3.0), "F32") and not _exact_product(np.float32(0.5), "BF16")


def test_interpolation_endpoints_and_lmc(full_members, tmp_path):
    ds = make_synthetic_preferences(30, seed=2)
    for t, src in ((0.0, full_members[0]), (1.0, full_members[1])):
        m = interpolate(full_members[0], full_members[1], t, tmp_path / f"i{t}")
        np.testing.assert_array_equal(
            load_reward_model(m).score_pairs(ds).margins, load_reward_model(src).score_pairs(ds).margins
        )
    curve = lmc_curve(full_members[0], full_members[1], ds, ts=[0.0, 0.5, 1.0])
    assert curve["wa"][0] == curve["ens"][0] == curve["diag"][0]
    assert curve["wa"][2] == curve["ens"][2] == curve["diag"][2]
    assert curve["diag"][1] == pytest.approx((curve["diag"][0] + curve["diag"][2]) / 2)


def test_corrupt_labels():
    ds = make_synthetic_preferences(100, seed=0)
    bad, mask = corrupt_labels(ds, 0.25, seed=3)
    assert mask.sum() == 25 and [p.metadata["label_corrupted"] for p in bad] == mask.tolist()
    for p, q, m in zip(ds, bad, mask):
        assert (q.chosen, q.rejected) == ((p.rejected, p.chosen) if m else (p.chosen, p.rejected))
    assert (corrupt_labels(ds, 0.25, seed=3)[1] == mask).all()


def test_train_warm_merges_members(tiny_lm, synthetic_split, tmp_path):
    train, test = synthetic_split
    grid = [{"head_seed": 0, "data_seed": 0}, {"head_seed": 1, "data_seed": 1, "lr": 2e-3}]
    res = train_warm(
        tiny_lm, train, tmp_path / "warm", grid, epochs=2, lr=3e-3, batch_size=16, progress=False
    )
    warm = load_reward_model(res["warm"])
    accs = [load_reward_model(m).score_pairs(test).accuracy() for m in res["members"]]
    assert min(accs) >= 0.85 and warm.score_pairs(test).accuracy() >= 0.85


def _lora_policy(base, folder, seed, target_modules="all-linear"):
    """A LoRA DPO policy whose reference is its adapter-disabled base, saved as a DPORM."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM

    from rewardkit import DPOImplicitRM
    from rewardkit.checkpoints import load_tokenizer

    torch.manual_seed(seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(task_type=TaskType.CAUSAL_LM, r=4, lora_alpha=8, target_modules=target_modules),
    )
    g = torch.Generator().manual_seed(200 + seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
    rm = DPOImplicitRM(model, None, load_tokenizer(base), beta=0.5)
    rm.save(folder)
    return rm


def test_merged_lora_dpo_policies_load_and_score(tiny_lm, tmp_path):
    """Merging LoRA DPO policies (reference = adapter-disabled base) writes a DPORM that loads with the
    base as its reference; with weights (1, 0) it scores exactly as the first unmerged policy."""
    from rewardkit import DPOImplicitRM

    first = _lora_policy(tiny_lm, tmp_path / "p0", 0)
    _lora_policy(tiny_lm, tmp_path / "p1", 1)
    weight_average([tmp_path / "p0", tmp_path / "p1"], [1.0, 0.0], out=tmp_path / "m", progress=False)
    merged = load_reward_model(tmp_path / "m")
    assert isinstance(merged, DPOImplicitRM) and not merged.is_lora
    assert merged.ref_model_path == str(tiny_lm.resolve()) and merged.beta == 0.5
    ds = make_synthetic_preferences(6, seed=2)
    expected = first.score_pairs(ds)
    assert np.abs(expected.chosen).max() > 1e-2
    np.testing.assert_allclose(merged.score_pairs(ds).chosen, expected.chosen, atol=1e-5)


def test_lora_on_a_tied_lm_head_keeps_the_embedding(tiny_lm, tmp_path):
    first = _lora_policy(tiny_lm, tmp_path / "p0", 0, target_modules=["q_proj", "lm_head"])
    _lora_policy(tiny_lm, tmp_path / "p1", 1, target_modules=["q_proj", "lm_head"])
    weight_average([tmp_path / "p0", tmp_path / "p1"], [1.0, 0.0], out=tmp_path / "m", progress=False)
    merged = load_reward_model(tmp_path / "m")
    base = load_file(tiny_lm / "model.safetensors")
    ours = _state(tmp_path / "m")
    torch.testing.assert_close(
        ours["model.embed_tokens.weight"], base["model.embed_tokens.weight"], rtol=0, atol=0
    )
    assert (ours["lm_head.weight"] - base["model.embed_tokens.weight"]).abs().max() > 1e-3
    ds = make_synthetic_preferences(6, seed=3)
    np.testing.assert_allclose(merged.score_pairs(ds).chosen, first.score_pairs(ds).chosen, atol=1e-5)


def test_gpt2_conv1d_lora_merges_exactly(tmp_path):
    """GPT-2's Conv1D stores weights [in, out] (peft's fan_in_fan_out): the update is transposed, and the
    merge with weights (1, 0) scores exactly as the unmerged adapter."""
    from rewardkit.tiny import build_tiny_model

    base = build_tiny_model(tmp_path / "gpt2", arch="gpt2", hidden=32, heads=4)
    rms = []
    for s in range(2):
        rm = _perturbed(base, s, lora=True, scale=0.3)
        assert rm.model.peft_config["default"].fan_in_fan_out
        rm.save(tmp_path / f"l{s}")
        rms.append(rm)
    weight_average([tmp_path / "l0", tmp_path / "l1"], [1.0, 0.0], out=tmp_path / "m", progress=False)
    ds = make_synthetic_preferences(6, seed=4)
    expected = rms[0].score(ds.prompts, [p.chosen for p in ds])
    got = load_reward_model(tmp_path / "m").score(ds.prompts, [p.chosen for p in ds])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_bf16_inputs_merged_to_float32_accumulate_every_term_in_float32(tiny_lm, tmp_path):
    """Every term, the first included, is multiplied in float32: the result equals the float64 average
    of the bf16 values to float32 precision (the first term in bf16 was off by ~1e-3)."""
    srcs = []
    for s in range(3):
        rm = BradleyTerryRM.from_pretrained(tiny_lm, head_seed=s, dtype="bfloat16")
        g = torch.Generator().manual_seed(s)
        with torch.no_grad():
            for p in rm.model.parameters():
                p.add_((torch.randn(p.shape, generator=g) * 0.3).to(p.dtype))
        rm.save(tmp_path / f"b{s}")
        srcs.append(tmp_path / f"b{s}")
    w = [0.3, 0.3, 0.4]
    weight_average(srcs, w, out=tmp_path / "m", dtype="float32", progress=False)
    ours, inputs = _state(tmp_path / "m"), [_state(s) for s in srcs]
    for k, v in ours.items():
        exact = sum(wi * t[k].double() for wi, t in zip(w, inputs)) / sum(w)
        assert v.dtype == torch.float32
        assert (v.double() - exact).abs().max() <= 1e-6 * max(1.0, exact.abs().max().item()), k
