"""``rewardkit ensemble`` with bad members, weights or calibration (rewardkit.models.ensemble): one ``error:``
line, nothing written."""

from __future__ import annotations

import pytest

from tests.hostile import check_case, out_of

# name -> (argv(env), inputs(env), output(env), error regex); env: tests.hostile.build_env
CASES = {
    "ensemble weight nan": (
        lambda e: [
            "ensemble",
            e.d / "rm0",
            e.d / "rm1",
            "-o",
            out_of(e),
            "--aggregation",
            "weighted",
            "--weights",
            "nan,1",
        ],
        lambda e: [e.d / "rm0"],
        out_of,
        r"--weights.*'nan' is not a finite",
    ),
    "z-score fitted on a NaN member": (
        lambda e: [
            "ensemble",
            e.d / "rm0",
            e.d / "nan_rm",
            "-o",
            out_of(e),
            "--normalize",
            "zscore",
            "--calibration",
            e.data,
        ],
        lambda e: [e.d / "rm0", e.d / "nan_rm", e.data],
        out_of,
        r"ensemble member #1: reward model .*nan_rm: \d+ of \d+ rewards are NaN",
    ),
    "ensemble of one": (
        lambda e: ["ensemble", e.d / "rm0", "-o", out_of(e)],
        lambda e: [e.d / "rm0"],
        out_of,
        r"an ensemble needs at least 2 members",
    ),
    "weighted without weights": (
        lambda e: ["ensemble", e.d / "rm0", e.d / "rm1", "-o", out_of(e), "--aggregation", "weighted"],
        lambda e: [e.d / "rm0"],
        out_of,
        r"--aggregation weighted needs --weights",
    ),
    "weighted with the wrong count": (
        lambda e: [
            "ensemble",
            e.d / "rm0",
            e.d / "rm1",
            "-o",
            out_of(e),
            "--aggregation",
            "weighted",
            "--weights",
            "1,2,3",
        ],
        lambda e: [e.d / "rm0"],
        out_of,
        r"weights must be 2 finite non-negative numbers",
    ),
    "uncertainty_penalty -5": (
        lambda e: ["ensemble", e.d / "rm0", e.d / "rm1", "-o", out_of(e), "--uncertainty-penalty", "-5"],
        lambda e: [e.d / "rm0"],
        out_of,
        r"--uncertainty-penalty.*'-5' must be >= 0",
    ),
    "ensemble the same model twice": (
        lambda e: ["ensemble", e.d / "rm1", e.d / "rm1", "-o", out_of(e)],
        lambda e: [e.d / "rm1"],
        out_of,
        r"ensemble member .*rm1 is given twice",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_error_line_and_touches_nothing(hostile_env, name, capsys):
    check_case(CASES[name], hostile_env, capsys)
