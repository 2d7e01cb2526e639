"""Training throughput: rewardkit's Bradley-Terry and DPO trainers against TRL's RewardTrainer and
DPOTrainer, on the same model, data, LoRA settings, batch size and sequence lengths, in one run.

    python3 benchmarks/training.py [--pairs 128] [--held-out 128] [--max-length 256] [--batch-size 4]

The demo model (SmolLM2-135M-Instruct, fp32 on CPU) with LoRA r=8 on every linear layer; AlpacaEval
pairs (recipe ``alpaca_eval``: the instruction as a user message, templated) that fit ``--max-length``
tokens, so neither tool truncates or drops anything. Both tools train one epoch in fp32 (TRL's configs
default to bf16 autocast, turned off here) with the same learning rate and seed.

Timed: the wall clock of each complete training call, tokenisation, the reference pass (rewardkit
computes reference log-probs once before training; TRL runs the reference forward every step) and
model loading included; steps/s = optimizer steps / that time. Equivalence: held-out pairwise accuracy
of each trained model, both scored by rewardkit (whose scores equal TRL's and HF's, tests/test_parity.py),
with the paired bootstrap 95% CI of the difference. Writes benchmarks/results/training.json.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, save_results  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def _pairs(n_train: int, n_eval: int, max_length: int, tokenizer, seed: int = 0):
    """AlpacaEval pairs whose templated sequences fit ``max_length`` tokens: train and held-out."""
    from rewardkit.bench.recipes import load_recipe
    from rewardkit.templating import Formatter

    pool = load_recipe("alpaca_eval", DATA, on_error="skip")
    f = Formatter(tokenizer)
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    kept = []
    for i in order:
        p = pool[i]
        if max(len(f.encode(p.prompt, r)) for r in (p.chosen, p.rejected)) <= max_length:
            kept.append(p)
        if len(kept) == n_train + n_eval:
            break
    return kept[:n_train], kept[n_train:]


def _trl_rows(pairs):
    return [
        {
            "prompt": p.prompt,
            "chosen": [{"role": "assistant", "content": p.chosen}],
            "rejected": [{"role": "assistant", "content": p.rejected}],
        }
        for p in pairs
    ]


def _trl_args(config_cls, folder, lr: float, args, **extra):
    """The TRL config both benchmarks use: one epoch, fp32 (TRL defaults to bf16 autocast), no saving,
    the same batch size, seed, schedule and maximum length as rewardkit's run."""
    return config_cls(
        output_dir=str(folder),
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=1,
        learning_rate=lr,
        max_length=args.max_length,
        seed=args.seed,
        bf16=False,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=10**6,
        disable_tqdm=True,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        **extra,
    )


def _lora(task: str):
    from peft import LoraConfig

    return LoraConfig(task_type=task, r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear")


def _compare(rk_rm, trl_rm, held_out, n_boot: int = 2000):
    from rewardkit.eval.metrics import bootstrap_ci, correctness, paired_bootstrap_test

    a = correctness(rk_rm.score_pairs(held_out).margins)
    b = correctness(trl_rm.score_pairs(held_out).margins)
    diff, p = paired_bootstrap_test(a, b, n_boot=n_boot)
    lo, hi = bootstrap_ci(a - b, n_boot=n_boot)
    ci_a, ci_b = bootstrap_ci(a, n_boot=n_boot), bootstrap_ci(b, n_boot=n_boot)
    return {
        "rewardkit_accuracy": float(a.mean()),
        "rewardkit_accuracy_ci95": list(ci_a),
        "trl_accuracy": float(b.mean()),
        "trl_accuracy_ci95": list(ci_b),
        "difference": diff,
        "difference_ci95": [lo, hi],
        "p_value": p,
        # the criterion: each tool's held-out accuracy inside the other's 95% CI
        "within_each_others_ci": ci_b[0] <= a.mean() <= ci_b[1] and ci_a[0] <= b.mean() <= ci_a[1],
        "paired_difference_ci_contains_0": lo <= 0.0 <= hi,
    }


def bench_bt(model, train, held_out, args):
    import datasets
    from trl import RewardConfig, RewardTrainer

    from rewardkit import BradleyTerryRM, train_reward_model
    from rewardkit.checkpoints import load_tokenizer

    t = time.perf_counter()
    rk = train_reward_model(
        model,
        train,
        lora_r=8,
        lr=args.lr,
        batch_size=args.batch_size,
        epochs=1,
        max_length=args.max_length,
        seed=args.seed,
        head_seed=args.seed,
        data_seed=args.seed,
        progress=False,
        logging_steps=10**6,
    )
    rk_s, rk_steps = time.perf_counter() - t, rk.training_info["optimizer_steps"]

    t = time.perf_counter()
    cfg = _trl_args(RewardConfig, args.scratch / "trl_rm", args.lr, args)
    trl = RewardTrainer(
        model=str(model),
        args=cfg,
        train_dataset=datasets.Dataset.from_list(_trl_rows(train)),
        peft_config=_lora("SEQ_CLS"),
    )
    trl.train()
    trl_s, trl_steps = time.perf_counter() - t, trl.state.global_step
    trl_rm = BradleyTerryRM(trl.model.eval(), load_tokenizer(model))
    return {
        "rewardkit": {"seconds": rk_s, "steps": rk_steps, "steps_per_s": rk_steps / rk_s},
        "trl": {"seconds": trl_s, "steps": trl_steps, "steps_per_s": trl_steps / trl_s},
        "speedup": (rk_steps / rk_s) / (trl_steps / trl_s),
        "held_out": _compare(rk, trl_rm, held_out),
    }


def bench_dpo(model, train, held_out, args):
    import datasets
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from rewardkit import DPOImplicitRM, train_dpo
    from rewardkit.checkpoints import load_tokenizer

    t = time.perf_counter()
    rk = train_dpo(
        model,
        train,
        lora_r=8,
        lr=args.dpo_lr,
        beta=0.1,
        batch_size=args.batch_size,
        epochs=1,
        max_length=args.max_length,
        seed=args.seed,
        data_seed=args.seed,
        progress=False,
        logging_steps=10**6,
    )
    rk_s, rk_steps = time.perf_counter() - t, rk.training_info["optimizer_steps"]

    t = time.perf_counter()
    cfg = _trl_args(DPOConfig, args.scratch / "trl_dpo", args.dpo_lr, args, beta=0.1)
    policy = AutoModelForCausalLM.from_pretrained(model)
    trl = DPOTrainer(
        model=policy,
        args=cfg,
        processing_class=load_tokenizer(model),
        train_dataset=datasets.Dataset.from_list(_trl_rows(train)),
        peft_config=_lora("CAUSAL_LM"),
    )
    trl.train()
    trl_s, trl_steps = time.perf_counter() - t, trl.state.global_step
    trl_rm = DPOImplicitRM(trl.model.eval(), None, load_tokenizer(model), beta=0.1)
    return {
        "rewardkit": {"seconds": rk_s, "steps": rk_steps, "steps_per_s": rk_steps / rk_s},
        "trl": {"seconds": trl_s, "steps": trl_steps, "steps_per_s": trl_steps / trl_s},
        "speedup": (rk_steps / rk_s) / (trl_steps / trl_s),
        "held_out": _compare(rk, trl_rm, held_out),
    }


def main(argv=None):
    import tempfile

    import torch

    from rewardkit.checkpoints import load_tokenizer
    from rewardkit.demo import demo_model_path
    from rewardkit.util import versions

    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=128)
    ap.add_argument("--held-out", type=int, default=128)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--dpo-lr", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=["bt", "dpo"], default=None)
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    import datasets

    datasets.disable_progress_bars()
    model = demo_model_path()
    train, held_out = _pairs(args.pairs, args.held_out, args.max_length, load_tokenizer(model), args.seed)
    results = {
        "model": "SmolLM2-135M-Instruct (demo model), fp32, LoRA r=8 alpha=16 on all linear layers",
        "data": f"AlpacaEval GPT-4 pairs, alpaca_eval recipe, {len(train)} train / {len(held_out)} held-out, "
        f"templated sequences <= {args.max_length} tokens",
        "settings": {k: v for k, v in vars(args).items() if k != "only"},
        "machine": f"{torch.get_num_threads()} CPU threads, no GPU",
        "versions": versions(trl=__import__("trl").__version__),
    }
    with tempfile.TemporaryDirectory() as scratch:
        args.scratch = Path(scratch)
        for name, fn in (("bradley_terry", bench_bt), ("dpo", bench_dpo)):
            if args.only in (None, "bt" if name == "bradley_terry" else "dpo"):
                r = fn(model, train, held_out, args)
                results[name] = r
                print(
                    f"{name}: rewardkit {r['rewardkit']['steps_per_s']:.3f} steps/s, TRL {r['trl']['steps_per_s']:.3f}"
                    f" steps/s: {r['speedup']:.2f}x; held-out accuracy {r['held_out']['rewardkit_accuracy']:.3f} vs "
                    f"{r['held_out']['trl_accuracy']:.3f} (diff CI {r['held_out']['difference_ci95']})",
                    flush=True,
                )
    save_results(RESULTS / "training.json", results, show=False)


if __name__ == "__main__":
    main()
