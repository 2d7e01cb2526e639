"""rewardkit bench hacking: the exact best-of-N estimator against brute force, the spurious synthetic
task, report statistics, the ci preset end to end, and one-line errors."""

import itertools
import math

import numpy as np
import pytest

from rewardkit.eval.bon import (
    bon_expectations,
    bon_kl_bound,
    bon_rank_weights,
    default_ns,
    top1_agreement_at_n,
    win_indicator,
)


def _brute(proxy, gold, n):
    """Mean over every n-subset of the gold (and proxy) of the proxy's pick, ties averaged."""
    gs, ps = [], []
    for sub in itertools.combinations(range(len(proxy)), n):
        top = max(proxy[i] for i in sub)
        tied = [i for i in sub if proxy[i] == top]
        gs.append(np.mean([gold[i] for i in tied]))
        ps.append(top)
    return np.mean(gs), np.mean(ps)


@pytest.mark.parametrize("ties", [False, True])
def test_exact_estimator_equals_brute_force_enumeration(ties):
    rng = np.random.default_rng(1 + ties)
    k = 7
    proxy = rng.integers(0, 3, (5, k)).astype(float) if ties else rng.normal(size=(5, k))
    gold = rng.normal(size=(5, k))
    ns = list(range(1, k + 1))
    g, p = bon_expectations(proxy, gold, ns)
    assert g.shape == p.shape == (5, k)
    for row in range(5):
        for i, n in enumerate(ns):
            bg, bp = _brute(proxy[row], gold[row], n)
            assert g[row, i] == pytest.approx(bg, abs=1e-12)
            assert p[row, i] == pytest.approx(bp, abs=1e-12)
    assert np.allclose(g[:, 0], gold.mean(axis=1))  # N = 1: a uniformly random candidate
    assert np.all(np.diff(p, axis=1) >= -1e-12)  # expected proxy reward never decreases in N
    if ties:  # N = k: the mean gold of the top proxy group
        for row in range(5):
            top = proxy[row] == proxy[row].max()
            assert g[row, -1] == pytest.approx(gold[row][top].mean())


def test_rank_weights_and_kl_bound():
    w = bon_rank_weights(5, 2)
    assert w.tolist() == [0.0, 0.1, 0.2, 0.3, 0.4]  # C(j, 1) / C(5, 2)
    assert bon_rank_weights(1000, 500).sum() == pytest.approx(1.0)  # no overflow at large k
    assert bon_kl_bound(1) == 0.0 and bon_kl_bound(4) == pytest.approx(math.log(4) - 0.75)
    assert default_ns(16) == [1, 2, 4, 8, 16] and default_ns(12) == [1, 2, 4, 8, 12]
    with pytest.raises(ValueError):
        bon_rank_weights(3, 4)


def test_planted_proxy_over_optimises_as_computed_by_hand():
    # gold 0..3 and one candidate the feature (not rewarded by gold) pushes to the top of the proxy
    gold = np.array([[0.0, 1.0, 2.0, 3.0, 0.0]])
    feature = np.array([[0.0, 0.0, 0.0, 0.0, 1.0]])
    g, p = bon_expectations(gold + 10 * feature, gold, [1, 2, 3, 4, 5])
    # ascending proxy ranks hold gold [0, 1, 2, 3, 0]; weights C(j, n-1) / C(5, n):
    # n=2: [0, .1, .2, .3, .4] -> 1.4; n=3: [0, 0, .1, .3, .6] -> 1.1; n=4: [0, 0, 0, .2, .8] -> 0.6
    assert g[0].tolist() == pytest.approx([1.2, 1.4, 1.1, 0.6, 0.0])
    assert p[0].tolist() == pytest.approx([3.2, 5.4, 7.1, 8.6, 10.0])
    honest, _ = bon_expectations(gold, gold, [1, 2, 3, 4, 5])
    assert honest[0].tolist() == pytest.approx([1.2, 2.0, 2.5, 2.8, 3.0])  # E[max of n of 0,0,1,2,3]


def test_win_rate_and_top1_agreement_by_hand():
    gold = np.array([[0.0, 1.0, 1.0, 2.0]])
    q = win_indicator(gold)
    assert q[0].tolist() == [0.125, 0.5, 0.5, 0.875]  # (#below + #equal / 2) / 4
    wr, _ = bon_expectations(gold, q, [1, 4])
    assert wr[0].tolist() == pytest.approx([0.5, 0.875])
    a = np.array([[0.0, 1.0, 2.0, 3.0]])
    b = np.array([[3.0, 2.0, 1.0, 0.0]])
    agree = top1_agreement_at_n(a, b, [1, 2, 4])
    assert agree[0].tolist() == pytest.approx([1.0, 0.0, 0.0])  # opposite orders agree only at N=1
    assert top1_agreement_at_n(a, a, [1, 2, 4])[0].tolist() == pytest.approx([1.0, 1.0, 1.0])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    brute = [
        np.mean(
            [
                np.argmax(x[r, list(s)]) == np.argmax(y[r, list(s)])
                for s in itertools.combinations(range(6), 3)
            ]
        )
        for r in range(3)
    ]
    assert top1_agreement_at_n(x, y, [3])[:, 0] == pytest.approx(brute)


def test_spurious_task_leaves_existing_callers_unchanged_and_plants_the_feature():
    from rewardkit.synthetic import (
        SPURIOUS,
        gold_reward,
        make_hacking_candidates,
        make_hacking_preferences,
        make_synthetic_preferences,
        vocabulary,
    )

    assert SPURIOUS not in vocabulary() and SPURIOUS in vocabulary(spurious=True)
    base, hack = make_synthetic_preferences(300, 4), make_hacking_preferences(300, 4, 0.9, 0.1)
    strip = lambda t: " ".join(w for w in t.split() if w != SPURIOUS)  # noqa: E731
    for b, h in zip(base, hack):  # the same pairs, labels by gold; only the spurious word added
        assert (b.prompt, b.chosen.split(), b.rejected.split()) == (
            h.prompt,
            strip(h.chosen).split(),
            strip(h.rejected).split(),
        )
        assert gold_reward(h.chosen) == b.metadata["gold_chosen"] > gold_reward(h.rejected)
        assert h.chosen.split().count(SPURIOUS) == h.metadata["spurious_chosen"] <= 2
    share_c = np.mean([p.metadata["spurious_chosen"] > 0 for p in hack])
    share_r = np.mean([p.metadata["spurious_rejected"] > 0 for p in hack])
    assert 0.85 < share_c < 0.95 and 0.05 < share_r < 0.15  # p_chosen 0.9, p_rejected 0.1
    prompts, cands = make_hacking_candidates(40, 16, 0, p_spurious=0.3, max_count=6)
    assert len(prompts) == 40 and {len(c) for c in cands} == {16}
    counts = np.array([[c.split().count(SPURIOUS) for c in row] for row in cands])
    gold = np.array([[gold_reward(c) for c in row] for row in cands])
    assert 0.25 < (counts > 0).mean() < 0.35 and counts.max() == 6
    assert gold[counts > 0].mean() < gold[counts == 0].mean() - 1  # padding replaces good words


def test_curve_stats_peak_drop_and_paired_test_by_hand():
    from rewardkit.bench.hacking_report import ci95, setup_report

    gold = np.tile([0.0, 1.0, 2.0, 3.0], (30, 1))
    planted = gold + 10 * np.tile([0.0, 0.0, 0.0, 1.0], (30, 1))[:, ::-1]  # the gold-0 candidate on top
    rep = setup_report(
        {"EXRM-1": gold.copy(), "EXRM-2": planted, "ENS-mean": gold + 0.1},
        gold,
        ["EXRM-1", "EXRM-2"],
        ["ENS-mean"],
        n_boot=200,
    )
    assert rep["n"] == [1, 2, 4] and rep["kl"][0] == 0.0
    honest, hacked = rep["models"]["EXRM-1"], rep["models"]["EXRM-2"]
    assert (
        honest["gold"] == pytest.approx([1.5, 14 / 6, 3.0]) and honest["peak_n"] == 4 and honest["drop"] == 0
    )
    # weights C(j, n-1) / C(4, n): n=2 [0, 1, 2, 3] / 6; planted ascending ranks hold gold [1, 2, 3, 0]
    assert hacked["gold"] == pytest.approx([1.5, (1 * 2 + 2 * 3 + 3 * 0) / 6, 0.0])
    assert hacked["peak_n"] == 1 and hacked["drop"] == pytest.approx(1.5) and hacked["over_optimised"]
    assert hacked["gold_ci95"][0] == pytest.approx([1.5, 1.5])  # every prompt alike: no spread
    assert honest["win_rate"] == pytest.approx([0.5, 4.25 / 6, 0.875])  # q = (j + 1/2) / 4
    test = rep["paired_tests"][0]
    assert (test["model"], test["baseline"], test["n"]) == ("ENS-mean", "EXRM-1", 4)
    assert test["gold_diff"] == 0.0 and test["p_value"] == 1.0
    assert rep["top1_agreement"]["EXRM-1|EXRM-2"] == pytest.approx([1.0, 0.5, 0.0])
    lo, hi = ci95(np.arange(100.0)[:, None], 500, 0)[0]
    assert lo < 49.5 < hi and hi - lo < 25


def test_ci_preset_end_to_end_through_the_cli(tmp_path):
    """The real CLI in a subprocess; every curve in report.json is recomputed from candidates.jsonl."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "hack"
    script = Path(sys.executable).parent / "rewardkit"
    result = subprocess.run(
        [str(script), "bench", "hacking", "--preset", "ci", "--out", str(out)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    stages = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert "clean: explicit RM 1/3" in stages[0] and "ETA" in stages[-1]
    for f in ["report.json", "report.md", "report.png", "candidates.jsonl", "config.yaml"]:
        assert (out / f).stat().st_size > 0, f
    assert not (out / "models").exists()
    rep = json.loads((out / "report.json").read_text())
    names = ["EXRM-1", "EXRM-2", "EXRM-3", "WARM-2", "WARM-3", "ENS-mean", "ENS-median"]
    names += ["ENS-mean_minus_std", "ENS-pretrain", "DPORM"]
    lines = [json.loads(x) for x in (out / "candidates.jsonl").read_text().splitlines()]
    assert len(lines) == 2 * 48 * 16
    for setup in ("clean", "corrupt"):
        s = rep["setups"][setup]
        assert s["n"] == [1, 2, 4, 8, 16] and s["kl"] == pytest.approx([bon_kl_bound(n) for n in s["n"]])
        assert list(s["models"]) == names and s["corruption"] == (0.25 if setup == "corrupt" else 0.0)
        rows = sorted(
            (x for x in lines if x["setup"] == setup), key=lambda x: (x["prompt_index"], x["candidate_index"])
        )
        gold = np.array([x["gold"] for x in rows]).reshape(48, 16)
        for name, m in s["models"].items():
            assert m["gold"][0] == pytest.approx(gold.mean())  # N = 1: the mean candidate
            assert m["win_rate"][0] == pytest.approx(0.5)
            proxy = np.array([x["rewards"][name] for x in rows]).reshape(48, 16)
            g, p = bon_expectations(proxy, gold, s["n"])
            assert m["gold"] == pytest.approx(g.mean(axis=0).tolist()) and m["proxy"] == pytest.approx(
                p.mean(axis=0).tolist()
            )
            assert all(lo <= x <= hi for x, (lo, hi) in zip(m["gold"], m["gold_ci95"]))
            assert m["peak_n"] == s["n"][int(np.argmax(m["gold"]))]
            assert m["drop"] == pytest.approx(max(m["gold"]) - m["gold"][-1])
            assert 0.5 <= m["heldout_accuracy"] <= 1.0  # the task is learnable
        assert {t["model"] for t in s["paired_tests"]} == set(names[3:9])
        assert len(s["top1_agreement"]) == 4 and s["top1_agreement"]["mean"][0] == pytest.approx(1.0)
    md = (out / "report.md").read_text()
    assert sum(line.startswith("| EXRM-1 |") for line in md.splitlines()) == 2  # one row per setup
    assert "| EXRM-1 |" in result.stdout


def _write_pairs(path, n=80):
    import json

    from rewardkit.synthetic import make_synthetic_preferences

    rows = [
        {"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}
        for p in make_synthetic_preferences(n, 7)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_real_data_mode_with_a_gold_rm_and_a_candidates_file(tmp_path):
    import json

    from rewardkit import BradleyTerryRM
    from rewardkit.bench.hacking import run_hacking_benchmark
    from rewardkit.bench.hacking_config import resolve_hacking_config
    from rewardkit.synthetic import make_hacking_candidates, vocabulary
    from rewardkit.tiny import build_tiny_model

    build_tiny_model(tmp_path / "lm", vocabulary(spurious=True), hidden=32, layers=1, heads=2, seed=3)
    gold_rm = BradleyTerryRM.from_pretrained(str(tmp_path / "lm"), head_seed=11)
    gold_rm.save(tmp_path / "gold")
    prompts, cands = make_hacking_candidates(6, 4, seed=2)
    cand_file = tmp_path / "cands.jsonl"
    cand_file.write_text(
        "".join(json.dumps({"prompt": p, "candidates": c + ["extra"]}) + "\n" for p, c in zip(prompts, cands))
    )
    over = {"data": str(_write_pairs(tmp_path / "pairs.jsonl")), "gold": str(tmp_path / "gold")}
    over |= {"candidates": str(cand_file), "k": 4, "members": 2, "n_train": 32, "n_val": 8, "dporm": False}
    over |= {"model": str(tmp_path / "lm"), "pretrain_seeds": [], "progress": False}
    config = resolve_hacking_config("ci", None, over)
    rep = run_hacking_benchmark(config, tmp_path / "out", log=lambda m: None)
    expected = gold_rm.score([p for p in prompts for _ in range(4)], [c for row in cands for c in row])
    lines = [json.loads(x) for x in (tmp_path / "out" / "candidates.jsonl").read_text().splitlines()]
    got = [x["gold"] for x in lines if x["setup"] == "clean"]
    assert got == pytest.approx(expected.tolist(), abs=1e-5)  # the gold RM scored the first k candidates
    s = rep["setups"]["clean"]
    assert list(s["models"]) == ["EXRM-1", "EXRM-2", "WARM-2", "ENS-mean", "ENS-median", "ENS-mean_minus_std"]
    assert s["n"] == [1, 2, 4] and s["models"]["EXRM-1"]["gold"][0] == pytest.approx(
        float(np.mean(expected)), abs=1e-5
    )
    assert rep["data"]["train"] + rep["data"]["val"] + rep["data"]["gold_ties_left_out"] <= 40


def test_bad_flags_and_files_are_one_line_errors(tmp_path, capsys):
    import json

    from rewardkit.bench.hacking_data import read_candidates
    from rewardkit.cli import main
    from rewardkit.errors import DataError

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "candidates": ["a", "b"]}) + "\n{oops\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: invalid JSON"):
        read_candidates(bad, 2)
    short = tmp_path / "short.jsonl"
    short.write_text(json.dumps({"prompt": "p", "candidates": ["a"]}) + "\n")
    with pytest.raises(DataError, match=r"short.jsonl:1: field 'candidates' has 1 responses; --k is 2"):
        read_candidates(short, 2)
    yml = tmp_path / "h.yaml"
    yml.write_text("n_trian: 5\n")
    pairs = _write_pairs(tmp_path / "pairs.jsonl", 10)
    (tmp_path / "gold").mkdir()
    real = ["--data", str(pairs), "--gold", str(tmp_path / "gold")]
    for args, expect in [
        (["--k", "1"], "'--k': 1 is not in the range 2<=x<=4096"),
        (["--corruption", "1"], "'--corruption': '1' must be < 1"),
        (
            ["--config", str(yml)],
            "error: bench hacking config field 'n_trian': Extra inputs are not permitted",
        ),
        (["--data", str(pairs)], "error: bench hacking config: real data needs --gold"),
        ([*real], "real data needs --policy or --candidates"),
        ([*real, "--policy", "a", "--candidates", "b"], "give --policy or --candidates, not both"),
        (["--gold", str(tmp_path / "gold")], "--gold needs --data or --recipe"),
        ([*real, "--policy", str(tmp_path / "nope")], f"error: --policy {tmp_path / 'nope'}: no such file"),
        ([*real, "--candidates", str(bad), "--k", "2"], f"error: {bad}:2: invalid JSON"),
        ([*real, "--candidates", str(bad), "--out", str(tmp_path)], "contains the input"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(["bench", "hacking", "--preset", "ci", "--out", str(tmp_path / "o"), *args])
        assert e.value.code == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expect in err, err


def test_torchrun_two_processes_shard_scoring_in_order(tmp_path):
    """Under torchrun, candidates.jsonl holds each candidate's own reward: a kept WARM model rescored in
    one process gives the same numbers (sharded scoring gathered in input order)."""
    import json
    import os
    import subprocess
    import sys

    from rewardkit.models.registry import load_reward_model

    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    small = ["--members", "2", "--no-dporm", "--n-prompts", "6", "--k", "4", "--n-train", "64"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "rewardkit.cli", "bench", "hacking", "--preset", "ci", "--out", str(out), "--keep-models"]
    result = subprocess.run(
        [*cmd, *small, "--no-progress"], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sum(line.startswith("| EXRM-1 |") for line in result.stdout.splitlines()) == 2  # rank 0 prints
    lines = [json.loads(x) for x in (out / "candidates.jsonl").read_text().splitlines()]
    rows = [x for x in lines if x["setup"] == "corrupt"]
    warm = load_reward_model(out / "models" / "corrupt" / "warm2")
    local = warm.score([x["prompt"] for x in rows], [x["response"] for x in rows])
    assert [x["rewards"]["WARM-2"] for x in rows] == pytest.approx(local.tolist(), abs=1e-4)
    rep = json.loads((out / "report.json").read_text())
    assert rep["setups"]["corrupt"]["models"]["WARM-2"]["gold"][0] == pytest.approx(
        np.mean([x["gold"] for x in rows])
    )
