"""``rewardkit merge`` with bad weights, members or sizes (rewardkit.merge): one ``error:`` line, nothing written."""

from __future__ import annotations

import json

import pytest

from rewardkit.synthetic import make_synthetic_preferences
from tests.hostile import check_case, leftovers, out_of, run

# name -> (argv(env), inputs(env), output(env), error regex); env: tests.hostile.build_env
CASES = {
    "merge weight nan": (
        lambda e: ["merge", e.d / "rm0", e.d / "rm1", "-o", out_of(e), "--weights", "nan,1"],
        lambda e: [e.d / "rm0"],
        out_of,
        r"--weights.*'nan' is not a finite non-negative number",
    ),
    "merge member with a NaN head": (
        lambda e: ["merge", e.d / "rm0", e.d / "nan_rm", "-o", out_of(e)],
        lambda e: [e.d / "rm0", e.d / "nan_rm"],
        out_of,
        r"merged tensor 'score.weight': 32 of 32 values are NaN or infinite",
    ),
    "weights that are not numbers": (
        lambda e: ["merge", e.d / "rm0", e.d / "rm1", "-o", out_of(e), "--weights", "a,b"],
        lambda e: [e.d / "rm0"],
        out_of,
        r"--weights.*'a' is not a number",
    ),
    "shard size lots": (
        lambda e: ["merge", e.d / "rm0", e.d / "rm1", "-o", out_of(e), "--shard-size", "lots"],
        lambda e: [e.d / "rm0"],
        out_of,
        r"--shard-size.*'lots' is not a size",
    ),
    "shard size 0": (
        lambda e: ["merge", e.d / "rm0", e.d / "rm1", "-o", out_of(e), "--shard-size", "0"],
        lambda e: [e.d / "rm0"],
        out_of,
        r"--shard-size.*must be positive",
    ),
    "shard size -5MB": (
        lambda e: ["merge", e.d / "rm0", e.d / "rm1", "-o", out_of(e), "--shard-size", "-5MB"],
        lambda e: [e.d / "rm0"],
        out_of,
        r"--shard-size.*must be positive",
    ),
    "merge the same model twice": (
        lambda e: ["merge", e.d / "rm0", e.d / "rm0", "-o", out_of(e)],
        lambda e: [e.d / "rm0"],
        out_of,
        r"merge source .*rm0 is given twice",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_error_line_and_touches_nothing(hostile_env, name, capsys):
    check_case(CASES[name], hostile_env, capsys)


def test_merge_copies_only_model_files_and_force_onto_a_file_leaves_nothing(hostile_env, tmp_path, capsys):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(hostile_env.d / "rm0", src)
    (src / "training_args.bin").write_bytes(b"pickle")
    (src / "notes.txt").write_text("stray")
    (src / "pytorch_model.bin").write_bytes(b"stale")
    target = tmp_path / "target"
    target.write_text("a file in the way")
    code, _, _ = run(["merge", src, hostile_env.d / "rm1", "-o", target, "--force"], capsys)
    assert code == 0 and target.is_dir()
    names = {p.name for p in target.iterdir()}
    assert not names & {"training_args.bin", "notes.txt", "pytorch_model.bin"}
    copied = json.loads((target / "merge.json").read_text())["copied_files"]
    assert "config.json" in copied and "tokenizer.json" in copied and "notes.txt" not in copied
    assert leftovers(target) == []


def test_huge_and_tiny_weights_mean_what_1_1_means(hostile_named, tmp_path, capsys):
    import numpy as np
    from safetensors.numpy import load_file

    from rewardkit import EnsembleRM, load_reward_model

    ds = make_synthetic_preferences(6, seed=5)
    members = [load_reward_model(hostile_named.d / "rm"), load_reward_model(hostile_named.d / "victim")]
    plain = EnsembleRM(members, aggregation="weighted", weights=[1, 1]).score_pairs(ds).margins
    for w in ([1e308, 1e308], [1e-50, 1e-50], [5e-324, 5e-324]):
        got = EnsembleRM(members, aggregation="weighted", weights=w).score_pairs(ds).margins
        np.testing.assert_array_equal(got, plain)
    assert np.abs(plain).max() > 0
    merged = {}
    for name, w in (("one", "1,1"), ("huge", "1e308,1e308"), ("tiny", "1e-50,1e-50")):
        code, _, err = run(
            [
                "merge",
                hostile_named.d / "lora0",
                hostile_named.d / "lora1",
                "-o",
                tmp_path / name,
                "--weights",
                w,
            ],
            capsys,
        )
        assert code == 0, err
        merged[name] = load_file(tmp_path / name / "model.safetensors")
    for name in ("huge", "tiny"):
        assert merged[name].keys() == merged["one"].keys()
        for k in merged["one"]:
            np.testing.assert_array_equal(merged[name][k], merged["one"][k], err_msg=f"{name}: {k}")
    for name, w in (("full_one", "1,1"), ("full_huge", "1e308,1e308")):
        code, _, err = run(
            [
                "merge",
                hostile_named.d / "rm",
                hostile_named.d / "victim",
                "-o",
                tmp_path / name,
                "--weights",
                w,
            ],
            capsys,
        )
        assert code == 0, err
    a, b = (load_file(tmp_path / n / "model.safetensors") for n in ("full_one", "full_huge"))
    assert all(np.array_equal(a[k], b[k]) for k in a)
