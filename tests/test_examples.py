"""Every example runs on tiny models and gives numbers that could fail."""

import importlib.util
import re
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart(tmp_path):
    report = _load("quickstart").main(["--out", str(tmp_path), "--pairs", "400"])
    assert (tmp_path / "report.json").is_file()
    assert report["id"] >= 0.9 and report["prompt_shift"] >= 0.8
    assert report["response_shift"] < report["id"]  # unseen generators are harder


def test_load_data():
    summary = _load("load_data").main([])
    assert summary == {
        "hh.jsonl": {"pairs": 2, "skipped": 0, "id": 1, "ood": 1},
        "conversational.json": {"pairs": 1, "skipped": 0, "id": 1, "ood": 0},
    }


def test_trl_reward_func(tiny_lm, tmp_path):
    """The example's rewards are what GRPOTrainer computes for the same checkpoint as an nn.Module: TRL's
    apply_chat_template on prompt + completion, tokenised without special tokens, HF's forward."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl.data_utils import apply_chat_template

    from rewardkit import BradleyTerryRM

    BradleyTerryRM.from_pretrained(tiny_lm, head_seed=5).save(tmp_path / "rm")
    rewards = _load("trl_reward_func").main(["--rm", str(tmp_path / "rm")])
    module = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "rm")
    prompt = [{"role": "user", "content": "tell me about pasta"}]
    want = []
    for reply in ("great helpful recipe", "wrong rude"):  # the example's two completions
        text = apply_chat_template({"messages": [*prompt, {"role": "assistant", "content": reply}]}, tok)["text"]
        with torch.inference_mode():
            want.append(float(module(**tok(text, return_tensors="pt", add_special_tokens=False)).logits[0, 0]))
    assert len(rewards) == 2 and abs(rewards[0] - rewards[1]) > 1e-4
    assert max(abs(a - b) for a, b in zip(rewards, want)) <= 1e-5, (rewards, want)


def test_dporm_example():
    result = _load("dporm").main([])
    assert result["untrained_accuracy"] == 0.5  # all ties
    assert result["dpo_accuracy"] >= 0.9 and result["mean_margin"] > 0


def test_evaluate_example(tmp_path):
    report, curve = _load("evaluate").main(["--out", str(tmp_path)])
    assert (tmp_path / "report.json").is_file() and (tmp_path / "report.png").stat().st_size > 1000
    assert report.models["exrm"]["id"] >= 0.9 and report.models["dporm"]["id"] >= 0.85
    assert curve["gold"][-1] > curve["gold"][0]  # a good proxy's best-of-8 beats a random pick


def test_ensemble_example():
    result = _load("ensemble").main([])
    assert len(result["members"]) == 3 and min(result["members"]) > 0.6
    assert result["ensemble"] >= min(result["members"])
    assert result["ensemble_at_50pct_coverage"] >= result["ensemble"]  # abstaining on disagreement helps


def test_warm_example():
    r = _load("warm").main([])
    assert min(r["members_ood"]) > 0.6 and r["warm_ood"] >= min(r["members_ood"]) - 0.02
    assert r["lmc"]["wa"][0] == r["lmc"]["diag"][0] and r["lmc"]["wa"][-1] == r["lmc"]["diag"][-1]


def test_bench_shift_example(tmp_path):
    report = _load("bench_shift").main(["--out", str(tmp_path), "--members", "2", "--n-train", "256"])
    assert list(report.models) == ["EXRM", "DPORM", "WARM", "ENS-mean", "ENS-median", "ENS-mean_minus_std"]
    assert report.models["EXRM"]["id"] >= 0.8  # learnable synthetic task
    # with two members the median is the mean: identical per-pair decisions
    assert report.models["ENS-median"]["splits"] == report.models["ENS-mean"]["splits"]
    md_rows = (tmp_path / "report.md").read_text().splitlines()
    assert (
        sum(re.match(r"\| EXRM \| \d", row) is not None for row in md_rows) == 1
    )  # one accuracy row per model


def test_bench_hacking_example(tmp_path, capsys):
    args = ["--out", str(tmp_path), "--members", "2", "--k", "8", "--no-dporm"]
    report = _load("bench_hacking").main(args)
    s = report["setups"]["corrupt"]
    names = ["EXRM-1", "EXRM-2", "WARM-2", "ENS-mean", "ENS-median", "ENS-mean_minus_std", "ENS-pretrain"]
    assert s["n"] == [1, 2, 4, 8] and list(s["models"]) == names
    for m in s["models"].values():  # N = 1 is a random candidate: the mean gold, win rate 1/2
        assert abs(m["gold"][0] - s["gold_candidates_mean"]) < 1e-9 and abs(m["win_rate"][0] - 0.5) < 1e-9
    assert "corrupt: best gold at N=8:" in capsys.readouterr().out


def test_bench_hacking_rl_example(tmp_path, capsys):
    """Two GRPO runs per setup from one initial policy: the same step-0 measurement (KL 0), the policy
    moves (KL > 0 at the end), and the proxy it is trained on rises on held-out prompts."""
    report = _load("bench_hacking_rl").main(["--out", str(tmp_path), "--steps", "12"])
    assert "setups" not in report and set(report["rl"]) == {"clean", "corrupt"}
    for models in report["rl"].values():
        assert list(models) == ["EXRM-1", "EXRM-1+ER"]
        a, b = models.values()
        assert a["step"] == b["step"] == [0, 6, 12]
        assert a["kl"][0] == b["kl"][0] == 0.0 and a["gold"][0] == b["gold"][0]
        assert a["kl"][-1] > 0.1 and a["proxy"][-1] > a["proxy"][0]
    assert "corrupt EXRM-1+ER: gold" in capsys.readouterr().out


def test_scoring_example():
    r = _load("scoring").main(["--max-tokens", "512"])
    assert r["sequences"] == 400 and 1 < r["batches"] < 400  # the budget groups sequences
    # length-sorted batches pad no further than rounding each sequence alone up to a multiple of 8
    assert r["padded_per_real_token"] <= r["rounded_per_real_token"] + 0.01
    assert r["max_abs_diff"] <= 1e-4  # rewards do not depend on the batch composition


def test_prefix_and_dtype_example():
    r = _load("prefix_and_dtype").main(["--responses", "6"])
    assert r["sequences"] == 6 and r["shared_groups"] == 1  # one prompt, six responses: one group
    prompt = r["prompt_tokens_not_recomputed"] // 5  # the prompt runs once instead of six times
    assert prompt >= 100 and r["prompt_tokens_not_recomputed"] == 5 * prompt
    assert r["max_abs_diff_shared_vs_unshared"] <= 1e-4
    assert r["auto_dtype"] in ("float32", "bfloat16")
    # float32 is exact; bf16 moves rewards by about its precision (8 bits of mantissa), no more
    assert (
        r["max_abs_diff_auto_vs_float32"] == 0.0
        if r["auto_dtype"] == "float32"
        else r["max_abs_diff_auto_vs_float32"] < 0.1
    )


def test_length_penalty_example():
    result = _load("length_penalty").main([])
    assert result["RM"] >= 0.9  # the RM learned to prefer length
    assert result["RM+LP"] < result["RM"] - 0.3  # the penalty removes most of that preference


def test_mechanism_example():
    result = _load("mechanism").main([])
    assert len(result["best_candidates"]) == 2 and all(p >= 0 for p in result["payments"])
    assert all(u >= 0 for u in result["utilities"])  # IR
    assert result["polarising_gain_with_payments"] <= 1e-12  # DSIC
    assert result["polarising_gain_without_payments"] > 0  # without payments, misreporting pays


def test_elastic_reset_example():
    result = _load("elastic_reset").main([])
    assert result["resets"] == 8  # 32 steps, a reset every 4
    assert result["elastic_reset"]["accuracy"] >= 0.75 and result["plain"]["accuracy"] >= 0.75
    assert result["elastic_reset"]["mean_abs_implicit_reward"] < result["plain"]["mean_abs_implicit_reward"]


def test_serve_example():
    result = _load("serve").main([])
    assert result["kind"] == "explicit" and result["max_difference_from_local"] <= 1e-5
    assert len(result["openrlhf_rewards"]) == 1 and result["sequences_served"] == 33.0  # 32 + 1 sequences


def test_rewardbench_example(tmp_path):
    r = _load("rewardbench").main(["--out", str(tmp_path)])
    assert r["v1"]["exrm"] >= 0.9 and min(r["v1_sections"].values()) >= 0.85  # gold-labelled pairs
    assert r["v1"]["untrained-dporm"] == 0.0  # every reward 0: RewardBench counts a tie wrong
    untrained = r["v2_subsets"]["untrained-dporm"]  # best-of-4, four-way tie: 1/4 per prompt
    assert [untrained[s] for s in ("Factuality", "Precise IF", "Math", "Safety", "Focus")] == [0.25] * 5
    assert untrained["Ties"] == 0.0 and r["v2"]["exrm"] >= 0.8
    assert {p.name for p in tmp_path.iterdir()} >= {
        "rewardbench.json",
        "rewardbench2.jsonl",
        "rewardbench.md",
    }


def test_train_bf16_example():
    r = _load("train_bf16").main([])
    assert isinstance(r["auto_trains_in_bf16_here"], bool)
    # both precisions learn the synthetic task, to the same held-out accuracy within a few pairs
    assert r["float32_held_out_accuracy"] > 0.8 and r["bf16_held_out_accuracy"] > 0.8
    assert abs(r["bf16_held_out_accuracy"] - r["float32_held_out_accuracy"]) <= 0.05


def test_report_card_example(tmp_path):
    r = _load("report_card").main(["--out", str(tmp_path)])
    exrm, untrained = r["scores"]["exrm"], r["scores"]["untrained-dporm"]
    assert set(exrm) == {"rewardbench", "rm-bench", "judgebench", "ppe-preference", "ppe-correctness", "rmb"}
    assert min(exrm.values()) >= 0.9 and r["rm_bench_hard"]["exrm"] >= 0.9  # gold-labelled data, filler-proof
    # every reward 0: a tie is wrong everywhere except JudgeBench, where it decides B>A (half the labels)
    assert untrained == {
        "rewardbench": 0.0,
        "rm-bench": 0.0,
        "judgebench": 0.5,
        "ppe-preference": 0.0,
        "ppe-correctness": 0.0,
        "rmb": 0.0,
    }
    rmb = r["rmb"]["exrm"]  # every set-and-goal group is present
    assert min(rmb[g] for g in ("Pairwise_set/Helpfulness", "BoN_set/Harmlessness")) >= 0.8
    # a uniform pick among K tied responses is best-of-1; the trained RM's pick improves with n
    assert abs(r["best_of_k"]["untrained-dporm"] - r["bon"][1]) < 1e-12
    assert r["bon"][1] < r["bon"][2] < r["bon"][3] < r["bon"][4] == r["best_of_k"]["exrm"]
    assert "HF_HUB_OFFLINE" in r["skipped"]["rewardbench2"]
    assert {p.name for p in tmp_path.iterdir()} >= {
        "card.json",
        "card.md",
        "card.jsonl",
        "card.png",
        "RMB_dataset",
    }
    png = (tmp_path / "card.png").read_bytes()  # one panel per suite that ran (6), one row per model (2)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == 6 * 240
