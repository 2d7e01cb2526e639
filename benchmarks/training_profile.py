"""Where a training step's time goes, per precision: the ``cpu`` preset's explicit RM and DPO policy
(the demo model SmolLM2-135M-Instruct with LoRA r=8 on every linear layer, the preset's 144 training
pairs of <= 112 tokens, batches of 4, one epoch), all in one run.

For each kind and precision, two passes over the same epoch (the same seeded length-bucketed batches):

- a **stage loop** doing what a Trainer step does, with the trainer's own modules, loss, collator,
  sampler, AdamW and schedule, each stage timed: ``collate`` (the data loader's next batch),
  ``forward`` (the loss included), ``backward``, ``optimizer`` (gradient clipping, AdamW step,
  schedule step, zero_grad);
- the **real training call** (``train_reward_model`` / ``train_dpo``) with the same settings, timed
  whole. Its wall time minus (model loading + tokenisation + DPO's reference pass + the stage loop's
  step times) is the Trainer's own overhead (callbacks, logging, state, its data loader set-up).

Variants (``VARIANTS``): ``float32``; ``bf16-autocast`` (``torch.autocast("cpu", bfloat16)`` over fp32
weights with SDPA's flash kernel: rewardkit 0.3.0's bf16 training); ``+eager`` / ``+math`` (eager
attention, or SDPA's math backend); ``bf16`` (what a bf16 run on CPU does now: the frozen weights
stored in bf16, LoRA and head fp32, eager attention, autocast; ``rewardkit/train/precision.py``). The
real training call runs for ``float32`` and ``bf16`` (``bf16=False / True``), and each trained model's
held-out accuracy (the preset's ``id`` split, scored in float32) is compared (paired bootstrap).

    python3 benchmarks/training_profile.py [--kinds bt,dpo] [--precisions float32,bf16] [--recipe alpaca_eval]

Writes benchmarks/results/training_profile.json. The machine is shared: read ratios within one run.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, save_results  # noqa: E402

RESULTS = Path(__file__).parent / "results"
STAGES = ("collate", "forward", "backward", "optimizer")


def preset_data(n_train: int, n_eval: int, max_length: int, recipe: str | None = None):
    """The ``cpu`` preset's training pairs (its synthetic task, or ``recipe`` on the shared AlpacaEval
    file; its sampling, pairs that fit ``max_length``) and its backbone."""
    from rewardkit.bench.run import base_model
    from rewardkit.bench.shift import load_bench_data, prepare_splits
    from rewardkit.bench.shift_config import resolve_config
    from rewardkit.checkpoints import load_tokenizer

    data = {"recipe": recipe, "data": str(DATA)} if recipe else {}
    config = resolve_config("cpu", overrides={"n_train": n_train, "n_eval": n_eval, "max_length": max_length, **data})
    base = base_model(config, Path("."), tiny=config.preset == "ci")
    train, evals, _ = prepare_splits(config, load_bench_data(config), load_tokenizer(base))
    return base, train, evals["id"]


#: precision variants: (bf16 autocast, frozen weights stored in bf16, attention backend)
VARIANTS = {
    "float32": (False, False, None),
    "bf16-autocast": (True, False, None),  # rewardkit 0.3.0's bf16 training: autocast alone
    "bf16-autocast+eager": (True, False, "eager"),
    "bf16+math": (True, True, "math"),
    "bf16": (True, True, "eager"),  # a bf16 run on CPU now, sequences <= 512 (rewardkit/train/precision.py)
}


def _attention(module: torch.nn.Module, backend: str | None):
    """A variant's attention, as one context around its whole run: eager (the library's switch, for
    any length), SDPA's math backend (it holds for the backward pass too: the graph records the ops), or
    SDPA as loaded."""
    from rewardkit.train.precision import attention_for

    if backend == "eager":
        return attention_for(module, 0)
    if backend == "math":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel(SDPBackend.MATH)
    return nullcontext()


def stage_loop(kind: str, base: str, train, args, variant: str) -> dict:
    """One epoch through the trainer's modules with each stage timed; returns per-stage seconds."""
    import tempfile

    from rewardkit.train.config import DPOTrainingConfig, RewardTrainingConfig
    from rewardkit.train.pairs import PairCollator, PairDataset, training_arguments
    from rewardkit.train.precision import frozen_weights_in

    bf16, base_bf16, backend = VARIANTS[variant]
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)  # noqa: E731
    t = time.perf_counter()
    if kind == "bt":
        from rewardkit import BradleyTerryRM
        from rewardkit.train.bradley_terry import RewardTrainer

        cfg = RewardTrainingConfig(lr=args.lr, batch_size=args.batch_size, lora_r=8, max_length=args.max_length)
        rm = BradleyTerryRM.from_pretrained(base, lora_r=8, max_length=args.max_length, head_seed=0)
        module, tok, formatter = rm.module.train(), rm.tokenizer, rm.formatter
        trainer_cls, extra = RewardTrainer, {}
    else:
        from rewardkit.adapters import add_lora
        from rewardkit.checkpoints import load_tokenizer, model_context
        from rewardkit.models.implicit import load_causal_lm
        from rewardkit.templating import Formatter
        from rewardkit.train.dpo import DPOTrainer, PolicyModule

        cfg = DPOTrainingConfig(lr=args.dpo_lr, batch_size=args.batch_size, lora_r=8, max_length=args.max_length)
        tok = load_tokenizer(base)
        policy = add_lora(load_causal_lm(base, "cpu", torch.float32), 8, None, 0.0, task="CAUSAL_LM", seed=0)
        formatter = Formatter(tok, args.max_length, "auto", context=model_context(policy))
        module = PolicyModule(policy).train()
        trainer_cls, extra = DPOTrainer, {"beta": 0.1, "loss_type": "sigmoid", "label_smoothing": 0.0}
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    ds = PairDataset(train, formatter, boundary=kind == "dpo")
    tokenise_s, reference_s = time.perf_counter() - t, 0.0
    with frozen_weights_in(module, torch.bfloat16, base_bf16), _attention(module, backend):
        if kind == "dpo":
            from rewardkit.train.dpo import _add_reference_logprobs

            t = time.perf_counter()
            _add_reference_logprobs(ds, policy, tok.pad_token_id, "cpu", bf16)  # autocast as bf16 says
            reference_s = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as scratch:
            targs = training_arguments(cfg, scratch, epochs=1, lr=cfg.lr, has_eval=False)
            trainer = trainer_cls(
                model=module, args=targs, train_dataset=ds, data_collator=PairCollator(tok.pad_token_id), **extra
            )
            loader = trainer.get_train_dataloader()
            trainer.create_optimizer_and_scheduler(num_training_steps=len(loader))
        opt, sched = trainer.optimizer, trainer.lr_scheduler
        params = [p for p in module.parameters() if p.requires_grad]
        times: dict[str, list[float]] = {s: [] for s in STAGES}
        tokens = []
        it = iter(loader)
        while True:
            t = time.perf_counter()
            batch = next(it, None)
            if batch is None:
                break
            times["collate"].append(time.perf_counter() - t)
            tokens.append(int(batch["input_ids"].numel()))
            t = time.perf_counter()
            with autocast():
                loss = trainer.compute_loss(module, batch)
            times["forward"].append(time.perf_counter() - t)
            t = time.perf_counter()
            loss.backward()
            times["backward"].append(time.perf_counter() - t)
            t = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(params, targs.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            times["optimizer"].append(time.perf_counter() - t)
    per_step = [sum(times[s][i] for s in STAGES) for i in range(len(times["forward"]))]
    return {
        "load_s": load_s,
        "tokenise_s": tokenise_s,
        "reference_pass_s": reference_s,
        "steps": len(per_step),
        "padded_tokens_per_step": float(np.mean(tokens)),
        "stage_s": {s: float(np.sum(v)) for s, v in times.items()},
        "steps_s": float(np.sum(per_step)),
        "first_step_s": per_step[0],
        "median_step_s": float(np.median(per_step)),
    }


def real_run(kind: str, base: str, train, held_out, args, bf16: bool):
    """The library's training call (loading, tokenisation, reference pass included), timed whole;
    returns (seconds, float32 margins of the trained model on the held-out pairs)."""
    from rewardkit import train_dpo, train_reward_model

    common = {
        "lora_r": 8,
        "batch_size": args.batch_size,
        "epochs": 1,
        "max_length": args.max_length,
        "progress": False,
        "logging_steps": 10**6,
        "bf16": bf16,
    }
    t = time.perf_counter()
    if kind == "bt":
        rm = train_reward_model(base, train, lr=args.lr, head_seed=0, data_seed=0, **common).model
    else:
        rm = train_dpo(base, train, lr=args.dpo_lr, beta=0.1, seed=0, data_seed=0, dtype="float32", **common).model
    seconds = time.perf_counter() - t
    return seconds, rm.score_pairs(held_out).margins


def main(argv=None):
    from rewardkit.accuracy import correctness
    from rewardkit.dtypes import cpu_has_fast_bf16
    from rewardkit.eval.metrics import bootstrap_ci, paired_bootstrap_test
    from rewardkit.util import versions

    ap = argparse.ArgumentParser()
    ap.add_argument("--kinds", default="bt,dpo")
    ap.add_argument("--precisions", default=",".join(VARIANTS))
    ap.add_argument("--n-train", type=int, default=144)
    ap.add_argument("--n-eval", type=int, default=128, help="held-out pairs (the preset's id split)")
    ap.add_argument("--max-length", type=int, default=112)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--dpo-lr", type=float, default=5e-4)
    ap.add_argument("--recipe", default=None, help="alpaca_eval: AlpacaEval pairs instead of the synthetic task")
    ap.add_argument("--no-real", action="store_true", help="stage loops only")
    ap.add_argument("--out", default=str(RESULTS / "training_profile.json"))
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    base, train, held_out = preset_data(args.n_train, args.n_eval, args.max_length, args.recipe)
    result = {
        "what": "cpu preset settings: demo model, LoRA r=8 all-linear, batches of 4, one epoch",
        "data": args.recipe or "the cpu preset's synthetic task",
        "settings": vars(args),
        "train_pairs": len(train),
        "held_out_pairs": len(held_out),
        "machine": f"{torch.get_num_threads()} CPU threads, fast bf16: {cpu_has_fast_bf16()}",
        "versions": versions(),
        "runs": {},
        "real": {},
    }
    for kind in args.kinds.split(","):
        for variant in args.precisions.split(","):
            torch.manual_seed(0)
            r = stage_loop(kind, base, train, args, variant)
            result["runs"][f"{kind}/{variant}"] = r
            st = r["stage_s"]
            print(
                f"{kind:3s} {variant:18s} load {r['load_s']:.1f}s tokenise {r['tokenise_s']:.2f}s "
                f"reference {r['reference_pass_s']:.1f}s | {r['steps']} steps {r['steps_s']:.1f}s = "
                + " + ".join(f"{s} {st[s]:.1f}" for s in STAGES),
                flush=True,
            )
        if args.no_real:
            continue
        real = {}
        for variant, bf16 in (("float32", False), ("bf16", True)):
            seconds, margins = real_run(kind, base, train, held_out, args, bf16)
            loop = result["runs"].get(f"{kind}/{variant}")
            overhead = None
            if loop is not None:
                overhead = seconds - (loop["load_s"] + loop["tokenise_s"] + loop["reference_pass_s"] + loop["steps_s"])
            acc = correctness(margins)
            real[variant] = {
                "seconds": seconds,
                "trainer_overhead_s": overhead,
                "held_out_accuracy": float(acc.mean()),
                "held_out_accuracy_ci95": list(bootstrap_ci(acc)),
                "_margins": margins,
            }
            print(f"{kind:3s} {variant:18s} training call {seconds:.1f}s, held-out accuracy {acc.mean():.3f}", flush=True)
        a, b = (correctness(real[v].pop("_margins")) for v in ("bf16", "float32"))
        diff, p = paired_bootstrap_test(a, b)
        real["bf16_minus_float32"] = {
            "speedup": real["float32"]["seconds"] / real["bf16"]["seconds"],
            "accuracy_difference": diff,
            "accuracy_difference_ci95": list(bootstrap_ci(a - b)),
            "p_value": p,
        }
        result["real"][kind] = real
    save_results(args.out, result, show=False)


if __name__ == "__main__":
    main()
