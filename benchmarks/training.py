"""Training throughput: rewardkit's Bradley-Terry and DPO trainers against TRL's RewardTrainer and
DPOTrainer, on the same model, data, LoRA settings, batch size and sequence lengths, in one run.

    python3 benchmarks/training.py [--pairs 128] [--held-out 128] [--max-length 256] [--batch-size 4]

The demo model (SmolLM2-135M-Instruct, fp32 on CPU) with LoRA r=8 on every linear layer; AlpacaEval
pairs (recipe ``alpaca_eval``: the instruction as a user message, templated) that fit ``--max-length``
tokens, so neither tool truncates or drops anything. Both tools train one epoch in fp32 (TRL's configs
default to bf16 autocast, turned off here) with the same learning rate and seed.

TRL runs twice: with its defaults (gradient checkpointing on, random batches, DPO's reference forward
every step) and at its best settings here (``TRL_BEST``: no gradient checkpointing, length-grouped
batches, DPO's reference log-probs precomputed once, as rewardkit does).

Timed: the wall clock of each complete training call, tokenisation, the reference pass and model
loading included; steps/s = optimizer steps / that time. Equivalence: held-out pairwise accuracy
of each trained model, both scored by rewardkit (whose scores equal TRL's and HF's, tests/test_parity.py),
with the paired bootstrap 95% CI of the difference. Writes ``--out`` (default
benchmarks/results/training.json, over the committed file).
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


def _trl_rows(pairs, lengths=None):
    """TRL's conversational rows; with ``lengths``, a ``length`` column its length-grouped sampler reads."""
    rows = [
        {
            "prompt": p.prompt,
            "chosen": [{"role": "assistant", "content": p.chosen}],
            "rejected": [{"role": "assistant", "content": p.rejected}],
        }
        for p in pairs
    ]
    for row, n in zip(rows, lengths or []):
        row["length"] = n
    return rows


def _lengths(pairs, tokenizer):
    """Per pair, the token count of its longer templated sequence (what both samplers group by)."""
    from rewardkit.templating import Formatter

    f = Formatter(tokenizer)
    return [max(len(f.encode(p.prompt, r)) for r in (p.chosen, p.rejected)) for p in pairs]


#: TRL at its best settings here: no gradient checkpointing (its configs turn it on by default),
#: length-grouped batches, and for DPO the reference log-probs computed once before training.
#: ``padding_free`` is not among them: TRL 1.16's DPOTrainer warns that it is temporarily unavailable
#: and falls back to padding, and it needs FlashAttention (a GPU) where it works.
TRL_BEST = {"gradient_checkpointing": False, "train_sampling_strategy": "group_by_length"}
TRL_BEST_DPO = {**TRL_BEST, "precompute_ref_log_probs": True}


def _trl_args(config_cls, folder, lr: float, args, **extra):
    """The TRL config both benchmarks use: one epoch, fp32 (TRL defaults to bf16 autocast), no saving,
    the same batch size, seed, schedule and maximum length as rewardkit's run; ``extra``: the best
    settings (``TRL_BEST``), else TRL's defaults."""
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
    from rewardkit.accuracy import correctness
    from rewardkit.eval.metrics import bootstrap_ci, paired_bootstrap_test

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


def _timed(steps_of, fn):
    t = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t
    steps = steps_of(out)
    return out, {"seconds": seconds, "steps": steps, "steps_per_s": steps / seconds}


def _trl_runs(make_trainer, wrap, rk_rm, rk, held_out) -> dict:
    """TRL with its defaults and at its best settings: timings, speedups of rewardkit over each, and
    held-out accuracy against rewardkit's model."""
    out = {}
    for name, best in (("trl", False), ("trl_best", True)):
        trainer, timing = _timed(lambda t: t.state.global_step, lambda b=best: _train(_with_lengths(make_trainer(b)) if b else make_trainer(b)))
        out[name] = timing
        out[f"speedup_vs_{name}"] = rk["steps_per_s"] / timing["steps_per_s"]
        out[f"held_out_vs_{name}"] = _compare(rk_rm, wrap(trainer.model.eval()), held_out)
    return out


def _train(trainer):
    trainer.train()
    return trainer


def _with_lengths(trainer):
    """Give TRL's tokenised training set the ``length`` column its length-grouped sampler reads (TRL
    drops the raw rows' columns when it tokenises): the longer of each row's token sequences."""
    ds = trainer.train_dataset
    if "length" not in ds.column_names:
        cols = [c for c in ds.column_names if c.endswith("_ids")]
        trainer.train_dataset = ds.add_column("length", [max(len(row[c]) for c in cols) for row in ds])
    # the Trainer drops columns outside the model's signature before it builds the sampler (transformers
    # 5): keep ``length`` for it (TRL's collators read their own keys only)
    trainer._set_signature_columns_if_needed()
    trainer._signature_columns = [*trainer._signature_columns, "length"]
    return trainer


def bench_bt(model, train, held_out, args):
    import datasets
    from trl import RewardConfig, RewardTrainer

    from rewardkit import BradleyTerryRM, train_reward_model
    from rewardkit.checkpoints import load_tokenizer

    tok = load_tokenizer(model)
    rk_rm, rk = _timed(
        lambda trained: trained.record.optimizer_steps,
        lambda: train_reward_model(
            model, train, lora_r=8, lr=args.lr, batch_size=args.batch_size, epochs=1,
            max_length=args.max_length, seed=args.seed, head_seed=args.seed, data_seed=args.seed,
            progress=False, logging_steps=10**6,
        ),
    )
    rk_rm = rk_rm.model

    def make_trainer(best: bool):
        return RewardTrainer(
            model=str(model),
            args=_trl_args(RewardConfig, args.scratch / "trl_rm", args.lr, args, **(TRL_BEST if best else {})),
            train_dataset=datasets.Dataset.from_list(_trl_rows(train, _lengths(train, tok) if best else None)),
            peft_config=_lora("SEQ_CLS"),
        )

    return {"rewardkit": rk, **_trl_runs(make_trainer, lambda m: BradleyTerryRM(m, tok), rk_rm, rk, held_out)}


def bench_dpo(model, train, held_out, args):
    import datasets
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from rewardkit import DPOImplicitRM, train_dpo
    from rewardkit.checkpoints import load_tokenizer

    tok = load_tokenizer(model)
    rk_rm, rk = _timed(
        lambda trained: trained.record.optimizer_steps,
        lambda: train_dpo(
            model, train, lora_r=8, lr=args.dpo_lr, beta=0.1, batch_size=args.batch_size, epochs=1,
            max_length=args.max_length, seed=args.seed, data_seed=args.seed, progress=False,
            logging_steps=10**6,
        ),
    )
    rk_rm = rk_rm.model

    def make_trainer(best: bool):
        extra = {"beta": 0.1, **(TRL_BEST_DPO if best else {})}
        return DPOTrainer(
            model=AutoModelForCausalLM.from_pretrained(model),  # loading timed, as rewardkit's is
            args=_trl_args(DPOConfig, args.scratch / "trl_dpo", args.dpo_lr, args, **extra),
            processing_class=tok,
            train_dataset=datasets.Dataset.from_list(_trl_rows(train, _lengths(train, tok) if best else None)),
            peft_config=_lora("CAUSAL_LM"),
        )

    wrap = lambda m: DPOImplicitRM(m, None, tok, beta=0.1)  # noqa: E731
    return {"rewardkit": rk, **_trl_runs(make_trainer, wrap, rk_rm, rk, held_out)}


def main(argv=None):
    import tempfile

    import torch

    from rewardkit.bench.run import cpu_model
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
    ap.add_argument("--out", default=str(RESULTS / "training.json"))
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
        "versions": versions(trl=__import__("trl").__version__, cpu=cpu_model()),
    }
    with tempfile.TemporaryDirectory() as scratch:
        args.scratch = Path(scratch)
        for name, fn in (("bradley_terry", bench_bt), ("dpo", bench_dpo)):
            if args.only in (None, "bt" if name == "bradley_terry" else "dpo"):
                r = fn(model, train, held_out, args)
                results[name] = r
                for trl in ("trl", "trl_best"):
                    h = r[f"held_out_vs_{trl}"]
                    print(
                        f"{name}: rewardkit {r['rewardkit']['steps_per_s']:.3f} steps/s, {trl} "
                        f"{r[trl]['steps_per_s']:.3f} steps/s: {r[f'speedup_vs_{trl}']:.2f}x; held-out accuracy "
                        f"{h['rewardkit_accuracy']:.3f} vs {h['trl_accuracy']:.3f} (diff CI {h['difference_ci95']})",
                        flush=True,
                    )
    save_results(args.out, results, show=False)


if __name__ == "__main__":
    main()
