"""dtype="auto" and --dtype: the decision per device and hardware, loading in it, and what outputs record."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rewardkit import dtypes
from rewardkit.dtypes import auto_dtype_name, cpu_flags, resolve_dtype


@pytest.mark.parametrize(
    "device, cuda_bf16, cpu_bf16, want",
    [
        ("cuda", True, False, "bfloat16"),
        ("cuda", False, True, "float32"),  # a GPU without native bf16 (V100, T4): not fp16, fp32
        ("cpu", False, True, "bfloat16"),
        ("cpu", True, False, "float32"),
        ("mps", True, True, "float32"),
    ],
)
def test_auto_dtype_rule(device, cuda_bf16, cpu_bf16, want):
    assert auto_dtype_name(device, cuda_bf16, cpu_bf16) == want


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f amx_bf16 amx_tile\n\nprocessor\t: 1\n")
    assert {"amx_bf16", "avx512f", "fpu"} <= cpu_flags(info) and "avx512_bf16" not in cpu_flags(info)
    assert cpu_flags(tmp_path / "missing") == set()


def test_cpu_fast_bf16_from_flags_or_torch(monkeypatch):
    monkeypatch.setattr(dtypes, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert dtypes.cpu_has_fast_bf16()
    monkeypatch.setattr(dtypes, "cpu_flags", lambda: {"avx2"})
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert not dtypes.cpu_has_fast_bf16()
    monkeypatch.setattr(dtypes, "cpu_flags", lambda: set())  # no /proc/cpuinfo: torch's probes
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert dtypes.cpu_has_fast_bf16()


def test_resolve_dtype(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_dtype(None, cpu) == torch.float32  # the Python default stays fp32 on CPU
    assert (
        resolve_dtype("bfloat16", cpu) == torch.bfloat16
        and resolve_dtype(torch.float16, cpu) == torch.float16
    )
    with pytest.raises(ValueError, match="unknown dtype 'bf16'; use auto, float32, bfloat16, float16"):
        resolve_dtype("bf16", cpu)  # one spelling per dtype: torch's names
    monkeypatch.setattr(dtypes, "cpu_has_fast_bf16", lambda: True)
    assert resolve_dtype("auto", cpu) == torch.bfloat16
    monkeypatch.setattr(dtypes, "cpu_has_fast_bf16", lambda: False)
    assert resolve_dtype("auto", cpu) == torch.float32
    monkeypatch.setattr(
        torch.cuda, "is_bf16_supported", lambda including_emulation=True: not including_emulation
    )
    assert resolve_dtype("auto", torch.device("cuda", 0)) == torch.bfloat16
    for bad in ("float8", "int8", torch.int64):
        with pytest.raises(ValueError, match="dtype"):
            resolve_dtype(bad, cpu)


def test_auto_loads_in_the_decided_dtype(tiny_lm, monkeypatch):
    """An explicit and an implicit RM loaded with dtype="auto" hold bf16 weights on a fast-bf16 CPU and
    fp32 ones elsewhere; the implicit reward's log-softmax and sum stay float32."""
    from rewardkit import BradleyTerryRM, DPOImplicitRM

    for fast, want in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(dtypes, "cpu_has_fast_bf16", lambda fast=fast: fast)
        rm = BradleyTerryRM.from_pretrained(tiny_lm, dtype="auto")
        assert next(rm.model.base_model.parameters()).dtype == want
        dporm = DPOImplicitRM.from_pretrained(tiny_lm, reference_free=True, beta=1.0, dtype="auto")
        assert next(dporm.policy.parameters()).dtype == want
        dporm.configure(progress=False)
        r = dporm.score(["a question"], ["an answer"])
        assert r.dtype == np.float32 and np.isfinite(r).all()


def test_bf16_rewards_close_to_fp32(tiny_lm):
    """Implicit rewards in bf16 (weights) with fp32 log-softmax and sums: within bf16's rounding of the
    fp32 ones over ~100-token sequences (an fp16/bf16 sum would drift further)."""
    from rewardkit import DPOImplicitRM

    prompts = ["the quick brown fox " * 5] * 4
    responses = [("jumps over the lazy dog " * k).strip() for k in (1, 3, 6, 10)]
    rs = {}
    for dt in ("float32", "bfloat16"):
        rm = DPOImplicitRM.from_pretrained(tiny_lm, reference_free=True, beta=1.0, dtype=dt)
        rm.configure(progress=False)
        rs[dt] = rm.score(prompts, responses)
    fp32, bf16 = rs["float32"], rs["bfloat16"]
    assert np.abs(fp32).max() > 10  # sums of many log-probs
    assert np.abs(bf16 - fp32).max() <= 0.02 * np.abs(fp32).max()
    assert (np.argsort(bf16) == np.argsort(fp32)).all()


def _pairs_file(path, n=6):
    rows = [{"prompt": f"question {i} " * 3, "chosen": "yes " * (i + 1), "rejected": "no"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _run(argv, capsys) -> tuple[int, str]:
    from rewardkit.cli import main

    code = 0
    try:
        main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out + out.err


def test_score_cli_dtype_recorded(trained_rm, synthetic_split, tmp_path, monkeypatch, capsys):
    _, folder = trained_rm
    data = tmp_path / "pairs.jsonl"
    synthetic_split[1][:32].save_jsonl(data)
    base = ["score", "--rm", str(folder), "--data", str(data), "--no-progress", "--out"]
    margins = {}
    for dt in ("float32", "bfloat16"):
        out = tmp_path / f"{dt}.jsonl"
        code, printed = _run([*base, str(out), "--dtype", dt], capsys)
        assert code == 0 and f"process(es), {dt} ->" in printed, printed
        margins[dt] = np.array([json.loads(line)["margin"] for line in out.read_text().splitlines()])
    fp32, bf16 = margins["float32"], margins["bfloat16"]
    assert 0 < np.abs(fp32 - bf16).max() < 0.2 * fp32.std()  # bf16 did run, and close
    assert np.corrcoef(fp32, bf16)[0, 1] > 0.99 and ((fp32 > 0) == (bf16 > 0)).mean() >= 0.9
    monkeypatch.setattr(dtypes, "cpu_has_fast_bf16", lambda: False)
    code, printed = _run([*base, str(tmp_path / "auto.jsonl")], capsys)
    assert code == 0 and "process(es), float32 ->" in printed, printed
    code, printed = _run([*base, str(tmp_path / "x.jsonl"), "--dtype", "float8"], capsys)
    assert code == 2 and "float8" in printed


def test_train_cli_dtype(tiny_lm, tmp_path, capsys):
    data = _pairs_file(tmp_path / "pairs.jsonl", 8)
    base = ["train", "explicit", "--model", str(tiny_lm), "--data", str(data), "--batch-size", "4", "--out"]
    for dt, said in (("bfloat16", "in bfloat16 autocast"), ("float32", "in float32")):
        code, printed = _run([*base, str(tmp_path / dt), "--dtype", dt], capsys)
        assert code == 0 and said in printed, printed
    code, printed = _run([*base, str(tmp_path / "fp16"), "--dtype", "float16"], capsys)
    assert code == 2 and "float16 is not offered" in printed


PROMPTS3, RESPONSES3 = ["the quick brown fox"] * 3, ["jumps", "over the lazy dog", "sleeps"]


def test_lora_adapters_follow_a_16_bit_base(tiny_lm, tmp_path):
    """Loaded for scoring in bf16, a LoRA RM's adapters are bf16 too (not peft's fp32) and its rewards
    stay within bf16 rounding of the fp32 load; in fp32 nothing changes."""
    from rewardkit import BradleyTerryRM, load_reward_model

    rm = BradleyTerryRM.from_pretrained(tiny_lm, lora_r=4)
    with torch.no_grad():
        for name, p in rm.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
    rm.save(tmp_path / "lora")
    got = {}
    for dt in (torch.float32, torch.bfloat16):
        loaded = load_reward_model(tmp_path / "lora", dtype=dt)
        lora = {p.dtype for n, p in loaded.model.named_parameters() if "lora_" in n}
        assert lora == {dt}
        # the reward head stays float32 (rewards are not rounded to bf16) and HF's own forward still runs
        assert {p.dtype for n, p in loaded.model.named_parameters() if ".score." in n} == {torch.float32}
        assert loaded.model(input_ids=torch.tensor([[5, 6, 7]])).logits.dtype == torch.float32
        loaded.configure(progress=False)
        got[dt] = loaded.score(PROMPTS3, RESPONSES3)
    fp32, bf16 = got[torch.float32], got[torch.bfloat16]
    rm.configure(progress=False)
    assert np.abs(fp32 - rm.score(PROMPTS3, RESPONSES3)).max() < 1e-5
    assert 0 < np.abs(bf16 - fp32).max() < 0.05 * max(1.0, np.abs(fp32).max())
    assert (torch.tensor(bf16).bfloat16().float().numpy() != bf16).any()  # float32 head output
    # the model in memory (e.g. just trained) cast for scoring scores as the bf16 load does
    assert np.array_equal(rm.to_dtype("bfloat16").score(PROMPTS3, RESPONSES3), bf16)


def test_dtype_is_part_of_the_contract(tiny_lm, tmp_path):
    """Every kind reports the dtype it scores in (describe() too); to_dtype casts in place as loading in
    that dtype does, through wrappers and ensembles; a served model has none."""
    from rewardkit import (
        BradleyTerryRM,
        DPOImplicitRM,
        EnsembleRM,
        LengthPenalizedRM,
        RemoteRewardModel,
        load_reward_model,
    )

    bt = BradleyTerryRM.from_pretrained(tiny_lm, head_seed=1)
    dpo = DPOImplicitRM.from_pretrained(tiny_lm, tiny_lm, beta=0.1)
    ens = EnsembleRM([bt, dpo], aggregation="mean")
    wrapped = LengthPenalizedRM(ens, length_penalty=0.5, reference=4.0, unit="words")
    assert [m.dtype for m in (bt, dpo, ens, wrapped)] == ["float32"] * 4
    assert wrapped.describe()["dtype"] == "float32" and wrapped.describe()["wrapped"]["dtype"] == "float32"
    bt.save(tmp_path / "bt")
    want = load_reward_model(tmp_path / "bt", dtype="bfloat16").score(PROMPTS3, RESPONSES3)
    assert wrapped.to_dtype("bfloat16") is wrapped
    assert [m.dtype for m in (bt, dpo, ens, wrapped)] == ["bfloat16"] * 4
    assert {p.dtype for p in dpo.ref_model.parameters() if p.is_floating_point()} == {torch.bfloat16}
    assert np.array_equal(bt.score(PROMPTS3, RESPONSES3), want)  # as the bf16 load scores
    bt.to_dtype("float32")  # the members disagree: the ensemble has no one dtype
    assert (ens.dtype, dpo.dtype) == (None, "bfloat16")
    assert RemoteRewardModel("http://127.0.0.1:9").describe()["dtype"] is None
