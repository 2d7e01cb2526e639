"""rewardkit bench shift: splits, recipes, config validation, and the ci preset end to end."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from rewardkit.bench import make_shift_splits, resolve_config
from rewardkit.bench.recipes import load_recipe
from rewardkit.bench.shift_config import BenchConfig, ShiftSpec
from rewardkit.bench.splits import _prompt_key
from rewardkit.cli import main
from rewardkit.data import PreferenceDataset
from rewardkit.errors import DataError, RewardkitError
from rewardkit.records import PreferencePair

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval_gpt4.jsonl.gz"


def _pool() -> PreferenceDataset:
    """Prompts shared across generators (like AlpacaEval): every prompt appears with 3 generators."""
    pairs = []
    for src in ["a", "b", "c"]:
        for k in range(10):
            for gen in ["g1", "g2", "g3"]:
                meta = {"subset": src, "chosen_generator": gen, "rejected_generator": "ref"}
                pairs.append(PreferencePair(f"{src} prompt {k}", f"{gen} answer", "ref answer", meta))
    pairs.append(
        PreferencePair("x", "y", "z", {"subset": "a", "chosen_generator": "g1", "rejected_generator": "g3"})
    )
    pairs.append(
        PreferencePair(
            "w", "y", "z", {"subset": "zzz", "chosen_generator": "g1", "rejected_generator": "ref"}
        )
    )
    return PreferenceDataset(pairs, source="toy")


def test_shift_splits_never_leak_training_prompts_and_account_for_every_pair():
    spec = ShiftSpec(
        id_prompts=["a", "b"], ood_prompts=["c"], id_responses=["g1", "g2"], shared_responses=["ref"]
    )
    pool = _pool()
    cut = make_shift_splits(pool, spec, val_fraction=0.3, seed=0)
    train_keys = {_prompt_key(p) for p in cut.train}
    assert len(train_keys) == 14  # 20 ID prompts, 30% (6) held out
    for name, split in cut.splits.items():
        assert not train_keys & {_prompt_key(p) for p in split}, name
    subsets = {k: {p.metadata["subset"] for p in v} for k, v in cut.splits.items()}
    gens = {k: {p.metadata["chosen_generator"] for p in v} for k, v in cut.splits.items()}
    assert subsets == {
        "id": {"a", "b"},
        "prompt_shift": {"c"},
        "response_shift": {"a", "b"},
        "mixture": {"c"},
    }
    assert gens == {
        "id": {"g1", "g2"},
        "prompt_shift": {"g1", "g2"},
        "response_shift": {"g3"},
        "mixture": {"g3"},
    }
    assert {p.metadata["chosen_generator"] for p in cut.train} == {"g1", "g2"}
    # 6 held-out prompts x 2 ID generators; x 1 OOD generator; 10 OOD prompts x 2 / x 1
    assert {k: len(v) for k, v in cut.splits.items()} == {
        "id": 12,
        "prompt_shift": 20,
        "response_shift": 6,
        "mixture": 10,
    }
    assert cut.excluded == {
        "responses mix ID and OOD sources": 1,
        "prompt source unlisted": 1,
        "response shift on a training prompt": 14,
    }
    assert len(cut.train) + sum(map(len, cut.splits.values())) + sum(cut.excluded.values()) == len(pool)


def test_shift_splits_errors():
    with pytest.raises(DataError, match="no pair has an ID prompt source"):
        make_shift_splits(_pool(), ShiftSpec(id_prompts=["nope"]))
    with pytest.raises(DataError, match="metadata has no field 'source'"):
        make_shift_splits(_pool(), ShiftSpec(prompt_field="source", id_prompts=["a"]))
    with pytest.raises(ValueError, match=r"prompt sources \['a'\] are listed as both ID and OOD"):
        ShiftSpec(id_prompts=["a"], ood_prompts=["a", "c"])


def test_config_precedence_and_validation_errors(tmp_path):
    cfg = resolve_config("ci", overrides={"n_train": 10})
    assert cfg.n_train == 10 and cfg.max_length == 64 and cfg.exrm.lr == 3e-3
    assert cfg.shift.id_prompts == ["cooking", "travel"]  # the synthetic recipe's shifts
    alp = resolve_config("cpu", overrides={"recipe": "alpaca_eval", "data": "x.jsonl"})
    assert alp.shift.ood_prompts == ["koala", "vicuna"] and alp.shift.shared_responses == ["text_davinci_003"]
    yml = tmp_path / "bench.yaml"
    yml.write_text("preset: ci\nn_eval: 7\nexrm:\n  lr: 0.5\n")
    cfg = resolve_config("cpu", yml, {"n_eval": 9})
    assert (cfg.preset, cfg.n_eval, cfg.exrm.lr, cfg.exrm.epochs) == ("ci", 9, 0.5, 3)
    yml.write_text("members: one\n")
    with pytest.raises(RewardkitError, match=rf"field 'members'.*\(config file {yml}\)"):
        resolve_config("ci", yml)
    with pytest.raises(RewardkitError, match="field 'warm_grid'|warm_grid has 1 entries but members is 3"):
        resolve_config("ci", overrides={"warm_grid": [{"lr": 1.0}]})
    with pytest.raises(RewardkitError, match="unknown aggregations"):
        resolve_config("ci", overrides={"aggregations": ["mode"]})
    with pytest.raises(RewardkitError, match=r"unknown aggregations \['weighted'\].*needs weights"):
        resolve_config("ci", overrides={"aggregations": ["weighted"]})  # refused before any training
    assert resolve_config("ci", overrides={"ties": "correct"}).ties == "correct"  # WARM's r+ >= r-
    with pytest.raises(RewardkitError, match="field 'ties'"):
        resolve_config("ci", overrides={"ties": "right"})
    with pytest.raises(RewardkitError, match="field 'exrm.lr'"):
        resolve_config("ci", overrides={"exrm": {"lr": float("inf")}})
    with pytest.raises(RewardkitError, match="unknown preset"):
        resolve_config("tpu")
    with pytest.raises(DataError, match="unknown data recipe 'hh'"):
        resolve_config("ci", overrides={"recipe": "hh"})
    assert [g["lr"] for g in BenchConfig(exrm={"lr": 1.0}).grid()] == [1.0, 0.5, 2.0]


def test_ensemble_members_are_z_scored_on_the_calibration_pairs():
    """Bench ensembles standardise each member with its own calibration statistics before aggregating:
    a member with a large offset and scale no longer dominates the median."""
    from rewardkit.bench.shift import CALIBRATION, _zscored
    from rewardkit.models.ensemble import AGGREGATIONS

    a = {CALIBRATION: (np.array([0.0, 2.0]), np.array([1.0, 1.0])), "id": (np.array([2.0]), np.array([0.0]))}
    # b = 100 + 10 * a's scale, and ranks the pair the other way round
    b = {
        CALIBRATION: (np.array([100.0, 120.0]), np.array([110.0, 110.0])),
        "id": (np.array([100.0]), np.array([120.0])),
    }
    zc, zr = _zscored([a, b], "id")
    # a: calibration mean 1, std sqrt(0.5); b: mean 110, std sqrt(50)
    np.testing.assert_allclose(zc[:, 0], [(2 - 1) / 0.5**0.5, (100 - 110) / 50**0.5])
    np.testing.assert_allclose(zr[:, 0], [(0 - 1) / 0.5**0.5, (120 - 110) / 50**0.5])
    assert AGGREGATIONS["mean"](zc)[0] == pytest.approx(AGGREGATIONS["mean"](zr)[0] * -1)


def test_cli_bench_config_errors_are_one_line(tmp_path, capsys):
    yml = tmp_path / "b.yaml"
    yml.write_text("n_trian: 5\n")
    for args, expect in [
        (["--config", str(yml)], "error: bench config field 'n_trian': Extra inputs are not permitted"),
        (["--id-prompts", "a", "--ood-prompts", "a"], "listed as both ID and OOD"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(["bench", "shift", "--preset", "ci", "--out", str(tmp_path / "o"), *args])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expect in err, err
    assert not (tmp_path / "o").exists()


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_recipes_map_public_schemas(tmp_path):
    """Small records in each public set's schema -> the right chosen / rejected / metadata."""
    conv = lambda q, a: [{"role": "user", "content": q}, {"role": "assistant", "content": a}]  # noqa: E731
    cases = {
        "alpaca_eval": (
            [
                {
                    "instruction": "Q",
                    "output_1": "A1",
                    "generator_1": "m1",
                    "output_2": "A2",
                    "generator_2": "m2",
                    "preference": 2,
                    "dataset": "koala",
                },
                {
                    "instruction": "Q",
                    "output_1": "A1",
                    "generator_1": "m1",
                    "output_2": "A2",
                    "generator_2": "m2",
                    "preference": 1.5,
                    "dataset": "koala",
                },
            ],
            (
                [{"role": "user", "content": "Q"}],
                "A2",
                "A1",
                {"subset": "koala", "chosen_generator": "m2", "rejected_generator": "m1"},
            ),
        ),
        "ultrafeedback": (
            [
                {
                    "source": "flan",
                    "instruction": "Q",
                    "completions": [
                        {"model": "m1", "response": "A1", "overall_score": 3.0},
                        {"model": "m2", "response": "A2", "overall_score": 8.5},
                        {"model": "m3", "response": "A3", "overall_score": 1.0},
                    ],
                },
                {
                    "source": "flan",
                    "instruction": "Q",
                    "completions": [
                        {"model": "m1", "response": "A1", "overall_score": 5},
                        {"model": "m2", "response": "A2", "overall_score": 5},
                    ],
                },
            ],
            (
                [{"role": "user", "content": "Q"}],
                "A2",
                "A3",
                {"subset": "flan", "chosen_generator": "m2", "rejected_generator": "m3"},
            ),
        ),
        "tldr": (
            [
                {
                    "info": {"id": "1", "post": None, "title": "T", "article": "Body.", "site": "cnn"},
                    "summaries": [{"text": " S0", "policy": "p0"}, {"text": " S1", "policy": "p1"}],
                    "choice": 0,
                }
            ],
            ("Article: T\n\nBody.\n\nTL;DR:", " S0", " S1", {"subset": "cnndm", "chosen_generator": "p0"}),
        ),
        "chatbot_arena": (
            [
                {
                    "model_a": "ma",
                    "model_b": "mb",
                    "winner": "model_b",
                    "language": "English",
                    "conversation_a": conv("Q", "A"),
                    "conversation_b": conv("Q", "B"),
                },
                {
                    "model_a": "ma",
                    "model_b": "mb",
                    "winner": "tie",
                    "language": "English",
                    "conversation_a": conv("Q", "A"),
                    "conversation_b": conv("Q", "B"),
                },
            ],
            ([{"role": "user", "content": "Q"}], "B", "A", {"subset": "English", "chosen_generator": "mb"}),
        ),
        "nectar": (
            [
                {
                    "prompt": "\n\nHuman: Q\n\nAssistant:",
                    "source": ["sharegpt"],
                    "answers": [
                        {"answer": "A1", "model": "m1", "rank": 1},
                        {"answer": "A2", "model": "m2", "rank": 2},
                        {"answer": "A3", "model": "m3", "rank": 3},
                    ],
                }
            ],
            (
                [{"role": "user", "content": "Q"}],
                "A1",
                "A3",
                {"subset": "sharegpt", "rejected_generator": "m3"},
            ),
        ),
        "webgpt": (
            [
                {
                    "question": {"dataset": "eli5", "full_text": "Q"},
                    "answer_0": "A0",
                    "answer_1": "A1",
                    "score_0": -1.0,
                    "score_1": 1.0,
                },
                {
                    "question": {"dataset": "eli5", "full_text": "Q"},
                    "answer_0": "A0",
                    "answer_1": "A1",
                    "score_0": 0.0,
                    "score_1": 0.0,
                },
            ],
            ([{"role": "user", "content": "Q"}], "A1", "A0", {"subset": "eli5"}),
        ),
        "hh_rlhf": (
            [
                {
                    "chosen": "\n\nHuman: Q\n\nAssistant: good",
                    "rejected": "\n\nHuman: Q\n\nAssistant: bad",
                    "subset": "harmless-base",
                }
            ],
            ([{"role": "user", "content": "Q"}], "good", "bad", {"subset": "harmless-base"}),
        ),
    }
    for name, (rows, (prompt, chosen, rejected, meta)) in cases.items():
        ds = load_recipe(name, _write_jsonl(tmp_path / f"{name}.jsonl", rows))
        p = ds[0]
        assert (p.prompt, p.chosen, p.rejected) == (prompt, chosen, rejected), name
        assert {k: p.metadata[k] for k in meta} == meta, name
        assert len(ds) + len(ds.skipped) == len(rows), name  # ties are counted, not dropped silently
        assert all("excluded by recipe" in s.reason for s in ds.skipped), name
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "Q"}])
    with pytest.raises(DataError, match=r"bad.jsonl:1: record does not match the ultrafeedback schema"):
        load_recipe("ultrafeedback", bad)


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data/alpaca_eval_gpt4.jsonl.gz not present")
def test_alpaca_eval_recipe_splits_on_real_data():
    pool = load_recipe("alpaca_eval", SHARED, limit=6000)
    cfg = resolve_config("cpu", overrides={"recipe": "alpaca_eval", "data": str(SHARED)})
    cut = make_shift_splits(pool, cfg.shift, val_fraction=0.2)
    ood_gens = set(cfg.shift.ood_responses)
    assert {p.metadata["subset"] for p in cut.train} <= {"helpful_base", "oasst", "selfinstruct"}
    assert {p.metadata["subset"] for p in cut.splits["prompt_shift"]} <= {"koala", "vicuna"}
    for p in cut.splits["response_shift"]:
        assert {p.metadata["chosen_generator"], p.metadata["rejected_generator"]} - {
            "text_davinci_003"
        } <= ood_gens
    train_keys = {_prompt_key(p) for p in cut.train}
    assert all(not train_keys & {_prompt_key(p) for p in s} for s in cut.splits.values())


def test_bench_shift_ci_preset_end_to_end(tmp_path):
    """The README's main job on the ci preset, through the installed console script in a fresh process
    with stderr redirected: every dependency of the job is installed, stage lines arrive as they happen,
    and transformers' own output stays out."""
    import subprocess
    import sys

    out = tmp_path / "bench"
    script = Path(sys.executable).parent / "rewardkit"
    result = subprocess.run(
        [str(script), "bench", "shift", "--preset", "ci", "--out", str(out)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    stages = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert len(stages) >= 5 and "explicit RM 1/3" in stages[0] and "elapsed" in stages[1]
    assert "ETA" in stages[-1]
    for noise in ("LOAD REPORT", "Writing model shards", "Loading weights", "{'loss'", "{'train_runtime'"):
        assert noise not in result.stderr + result.stdout, noise
    assert "| EXRM |" in result.stdout
    for f in ["report.json", "report.md", "report.png", "config.yaml"]:
        assert (out / f).stat().st_size > 0, f
    assert not (out / "models").exists()  # removed unless --keep-models
    rep = json.loads((out / "report.json").read_text())
    models = ["EXRM", "DPORM", "WARM", "ENS-mean", "ENS-median", "ENS-mean_minus_std"]
    splits = ["id", "prompt_shift", "response_shift", "mixture"]
    assert list(rep["models"]) == models and rep["splits"] == splits
    for m in models:
        for s in splits:
            r = rep["models"][m]["splits"][s]
            assert 0 <= r["ci_low"] <= r["accuracy"] <= r["ci_high"] <= 1, (m, s)
            assert r["n"] == rep["data"]["sampled"][s] > 0
        assert rep["models"][m]["drop"] == pytest.approx(
            rep["models"][m]["id"] - rep["models"][m]["ood_mean"]
        )
    # the synthetic task is learnable: every model is far above chance in distribution
    assert rep["models"]["EXRM"]["id"] >= 0.8 and rep["models"]["DPORM"]["id"] >= 0.7
    assert {(t["a"], t["b"]) for t in rep["paired_tests"]} >= {("EXRM", "DPORM"), ("WARM", "EXRM")}
    assert all(0 < t["p_value"] <= 1 for t in rep["paired_tests"])
    table = (out / "report.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| model"))
    assert header.split(" | ")[1:5] == splits
    assert all(any(line.startswith(f"| {m} |") for line in table.splitlines()) for m in models)
    assert rep["versions"]["torch"] and rep["timings"]["total_s"] > 0
    with pytest.raises(SystemExit):  # never overwrites without --force
        main(["bench", "shift", "--preset", "ci", "--out", str(out)])
    assert os.path.exists(out / "report.json")


def test_the_proxies_scoring_dtype_comes_from_the_preset_or_the_flag(monkeypatch):
    """The cpu preset trains and scores in auto (bf16 on a CPU with hardware bf16), the ci preset in
    float32, and --dtype overrides either; the resolved precision follows the machine's rule."""
    import rewardkit.dtypes as ck
    from rewardkit.bench.hacking_config import resolve_hacking_config

    assert resolve_config("cpu").dtype == "auto" and resolve_config("ci").dtype == "float32"
    assert resolve_config("cpu", None, {"dtype": "float32"}).dtype == "float32"
    assert resolve_hacking_config("ci", None, {"dtype": "bfloat16"}).scoring_dtype() == "bfloat16"
    monkeypatch.setattr(ck, "cpu_has_fast_bf16", lambda: True)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert resolve_config("cpu").scoring_dtype() == "bfloat16" and resolve_config("cpu").training_bf16()
    assert resolve_config("cpu").dpo_training(0, False).dtype == "bfloat16"
    assert resolve_config("cpu").dpo_training(0, False).bf16 is True
    # otherwise the trainers' default (bf16 on a CUDA GPU, float32 on CPU); never fp16 training
    assert resolve_config("ci").training_bf16() is None and resolve_config("ci").dpo_training(0, False).bf16 is None
    assert resolve_config("cpu", None, {"dtype": "float16"}).training_bf16() is None
    monkeypatch.setattr(ck, "cpu_has_fast_bf16", lambda: False)
    assert resolve_config("cpu").scoring_dtype() == "float32" and resolve_config("cpu").training_bf16() is None
