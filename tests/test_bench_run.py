"""bench/run.py: what a benchmark report records about the machine that produced its times."""

from __future__ import annotations

from rewardkit.bench.run import cpu_model


def test_cpu_model_names_the_cpu_and_its_bf16_features(tmp_path):
    intel = tmp_path / "intel"
    intel.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu avx512f amx_bf16 avx512_bf16\n"
        "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu avx512f amx_bf16 avx512_bf16\n"
    )
    amd = tmp_path / "amd"
    amd.write_text("model name\t: AMD EPYC 9R14\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    old = tmp_path / "old"
    old.write_text("model name\t: Intel(R) Xeon(R) CPU E5-2686 v4\nflags\t\t: fpu avx2\n")
    assert cpu_model(str(intel)) == "Intel(R) Xeon(R) Platinum 8480+ (amx_bf16, avx512_bf16)"
    assert cpu_model(str(amd)) == "AMD EPYC 9R14 (avx512_bf16)"
    assert cpu_model(str(old)) == "Intel(R) Xeon(R) CPU E5-2686 v4 (no hardware bf16)"
    assert cpu_model(str(tmp_path / "absent")).endswith("(no hardware bf16)")
