"""``rewardkit merge`` of members saved in different dtypes (rewardkit.merge.average): with ``--dtype`` each
member is widened exactly and accumulated in float32; without it, a one-line refusal."""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from rewardkit import BradleyTerryRM
from tests.hostile import digest, leftovers, run

TORCH = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "F64": torch.float64}


@pytest.fixture(scope="module")
def fp32_members(tiny_lm, tmp_path_factory):
    """Three perturbed float32 reward models (float32 values, so any dtype can be made from them)."""
    d = tmp_path_factory.mktemp("dtypes")
    for s in range(3):
        rm = BradleyTerryRM.from_pretrained(tiny_lm, head_seed=s)
        g = torch.Generator().manual_seed(300 + s)
        with torch.no_grad():
            for p in rm.model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
        rm.save(d / f"m{s}")
    return [d / f"m{s}" for s in range(3)]


def _as_dtype(src, dst, dtype: str, extra: dict | None = None):
    """A copy of the model folder ``src`` whose floating tensors are stored as ``dtype`` (plus ``extra``)."""
    shutil.copytree(src, dst)
    state = load_file(src / "model.safetensors")
    state = {k: v.to(TORCH[dtype]) if v.is_floating_point() else v for k, v in state.items()}
    save_file({**state, **(extra or {})}, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def _mergekit(sources, weights, out, dtype):
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    cfg = {
        "merge_method": "linear",
        "dtype": dtype,
        "models": [{"model": str(s), "parameters": {"weight": w}} for s, w in zip(sources, weights)],
    }
    run_merge(MergeConfiguration.model_validate(cfg), str(out), options=MergeOptions(copy_tokenizer=True))
    return load_file(out / "model.safetensors")


@pytest.mark.parametrize("weights", [None, [0.3, 0.7]])
def test_bf16_and_fp32_members_merge_in_float32_exactly(fp32_members, tmp_path, monkeypatch, capsys, weights):
    """bf16 + fp32 with ``--dtype float32``: the float32 weighted mean of the members upcast by torch
    (bit for bit where every product is exact: weights 1), equal to the merge of the bf16 member's exact
    float32 copy, and to mergekit's linear merge of the same two folders."""
    monkeypatch.setattr("rewardkit.merge.average.BLOCK_BYTES", 3000)  # several blocks per tensor
    a = _as_dtype(fp32_members[0], tmp_path / "a_bf16", "BF16")
    b = fp32_members[1]
    a32 = _as_dtype(a, tmp_path / "a_up", "F32")  # the bf16 values, stored as float32
    flags = ["--weights", ",".join(map(str, weights))] if weights else []
    code, _, err = run(["merge", a, b, "-o", tmp_path / "mix", "--dtype", "float32", *flags], capsys)
    assert code == 0, err
    code, _, err = run(["merge", a32, b, "-o", tmp_path / "same", *flags], capsys)
    assert code == 0, err
    ours, same = (
        load_file(tmp_path / "mix" / "model.safetensors"),
        load_file(tmp_path / "same" / "model.safetensors"),
    )
    ta, tb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert {v.dtype for v in ta.values()} == {torch.bfloat16} and {v.dtype for v in tb.values()} == {
        torch.float32
    }
    w = weights or [1.0, 1.0]
    assert set(ours) == set(ta)
    for k, v in ours.items():
        assert v.dtype == torch.float32 and torch.equal(v, same[k]), k
        reference = (w[0] * ta[k].float() + w[1] * tb[k].float()) / (w[0] + w[1])
        if weights is None:  # 0 + a + b (exact), / 2: the same bits
            assert torch.equal(v, reference), k
        torch.testing.assert_close(v, reference, rtol=0, atol=1e-6)
        assert (v - ta[k].float()).abs().max() > 1e-4  # the fp32 member moved every tensor
    if importlib.util.find_spec("mergekit") is not None:
        ref = _mergekit([a, b], w, tmp_path / "mk", "float32")
        assert set(ref) == set(ours)
        for k in ref:
            assert ref[k].dtype == torch.float32 and torch.equal(ours[k], ref[k]), k


def test_three_dtypes_narrowed_once_and_float64_member(fp32_members, tmp_path, capsys):
    """fp16 + bf16 + fp32 to bfloat16: the float32 mean of the exact values, rounded once (torch's
    ``.to``); a float64 member mixed in (fused weights) lands on the exact float64 mean to float32."""
    srcs = [_as_dtype(m, tmp_path / d, d) for m, d in zip(fp32_members, ("F16", "BF16", "F32"))]
    code, _, err = run(["merge", *srcs, "-o", tmp_path / "bf", "--dtype", "bfloat16"], capsys)
    assert code == 0, err
    ours, inputs = (
        load_file(tmp_path / "bf" / "model.safetensors"),
        [load_file(s / "model.safetensors") for s in srcs],
    )
    for k, v in ours.items():
        mean = (inputs[0][k].float() + inputs[1][k].float() + inputs[2][k].float()) / 3
        assert v.dtype == torch.bfloat16 and torch.equal(v, mean.to(torch.bfloat16)), k
    srcs = [srcs[1], _as_dtype(fp32_members[2], tmp_path / "F64", "F64")]
    code, _, err = run(
        ["merge", *srcs, "-o", tmp_path / "f64", "--dtype", "float32", "--weights", "0.2,0.8"], capsys
    )
    assert code == 0, err
    ours, inputs = (
        load_file(tmp_path / "f64" / "model.safetensors"),
        [load_file(s / "model.safetensors") for s in srcs],
    )
    for k, v in ours.items():
        exact = 0.2 * inputs[0][k].double() + 0.8 * inputs[1][k].double()
        assert v.dtype == torch.float32
        assert (v.double() - exact).abs().max() <= 1e-6 * max(1.0, exact.abs().max().item()), k


def test_mixed_dtypes_without_dtype_and_mixed_integers_are_refused(fp32_members, tmp_path, capsys):
    """Without ``--dtype`` a bf16 + fp32 pair is one line naming a tensor, both files and the flag; integer
    buffers must keep one dtype even with ``--dtype``. Nothing is written, no input changes."""
    a = _as_dtype(fp32_members[0], tmp_path / "a", "BF16")
    b = fp32_members[1]
    before = digest([a, b])
    code, _, err = run(["merge", a, b, "-o", tmp_path / "out"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    first = min(load_file(a / "model.safetensors"))
    assert f"tensor {first!r} is BF16 in {a} but F32 in {b}" in err and "more tensors" in err
    assert "pass --dtype float32" in err
    ints = {"step": torch.tensor([3, 4], dtype=torch.int64)}
    c = _as_dtype(fp32_members[2], tmp_path / "c", "F32", {"step": ints["step"].int()})
    d = _as_dtype(fp32_members[1], tmp_path / "d", "BF16", ints)
    code, _, err = run(["merge", c, d, "-o", tmp_path / "out", "--dtype", "float32"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{d} differs in shape or dtype from {c}: step" in err
    assert not (tmp_path / "out").exists() and leftovers(tmp_path / "out") == [] and digest([a, b]) == before
    # integer buffers that agree in dtype and value pass through unchanged beside the mixed floats
    e = _as_dtype(fp32_members[2], tmp_path / "e", "F32", ints)
    code, _, err = run(["merge", d, e, "-o", tmp_path / "ok", "--dtype", "float32"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(load_file(tmp_path / "ok" / "model.safetensors")["step"].numpy(), [3, 4])
    assert json.loads((tmp_path / "ok" / "merge.json").read_text())["dtype"] == "float32"
