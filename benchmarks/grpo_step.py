"""Seconds per GRPO step (TRL's GRPOTrainer) of the demo policy with LoRA, float32 and bf16, against the
step's FLOP count at this machine's matmul rates measured in the same run.

    python3 benchmarks/grpo_step.py [--steps 3] [--completions 16] [--tokens 32] [--lora-r 8]

The demo model (SmolLM2-135M-Instruct) as the policy, LoRA on every linear layer, conversational
prompts of the built-in task, ``--completions`` completions of exactly ``--tokens`` new tokens per step
(EOS suppressed, so every step does the same work), one prompt group per ``num_generations=8``; the
reward is the task's gold reward (a Python function: the reward column then measures TRL's reward
plumbing only; a demo-sized reward model adds its own forward, see docs/benchmark-hacking.md).

Where the time goes: wall-clock timers around GRPOTrainer's generation (``_generate``), reward
(``_calculate_rewards``), the other parts of ``_generate_and_score_completions`` (tokenising, the
advantage maths, the old-log-prob forward when one is needed) and the optimizer step (forward +
backward + AdamW: the rest of the step). FLOPs: generation 2 N per token (prompt once, KV cache),
training forward 2 N and backward 2 N per token (LoRA: no weight gradients of the frozen weights,
but the input gradients through every layer), N = the policy's parameters (embeddings tied to the LM
head are counted once, as the head's matmul). The bound is FLOPs / the measured matmul rate of the
same dtype on [tokens, 576] x [576, 1536] (the model's MLP shape). The first step is a warm-up and is
not timed. Writes benchmarks/results/grpo_step.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import save_results  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def matmul_gflops(
    dtype: torch.dtype, m: int = 512, k: int = 576, n: int = 1536, seconds: float = 1.5
) -> float:
    """Measured GFLOP/s of an [m, k] x [k, n] matmul in ``dtype``."""
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(3):
        a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2 * m * k * n * reps / (time.perf_counter() - t0) / 1e9


def _timed(store: dict[str, float], name: str, fn):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            store[name] += time.perf_counter() - t

    return wrapper


def run(dtype: str, steps: int, completions: int, tokens: int, lora_r: int) -> dict:
    """Time ``steps`` GRPO steps (after one warm-up step) in ``dtype``; per-part seconds per step."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rewardkit.demo import demo_model_path
    from rewardkit.synthetic import gold_reward, make_hacking_candidates

    path = str(demo_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    n_params = sum(p.numel() for p in model.parameters())
    prompts, _ = make_hacking_candidates(64, 1, seed=0)

    def gold(prompts, completions, **kwargs):
        return [float(gold_reward(c[0]["content"] if isinstance(c, list) else c)) for c in completions]

    args = GRPOConfig(
        output_dir="/tmp/rewardkit-grpo-step",
        max_steps=steps + 1,
        learning_rate=1e-5,
        per_device_train_batch_size=completions,
        num_generations=8,
        max_completion_length=tokens,
        generation_kwargs={"min_new_tokens": tokens},
        use_cpu=True,
        bf16=False,
        report_to=[],
        save_strategy="no",
        logging_steps=10**6,
        disable_tqdm=True,
        seed=0,
    )
    times: dict[str, float] = defaultdict(float)
    step_times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.t = time.perf_counter()
            if state.global_step == 1:  # the warm-up step is over: reset the part timers
                times.clear()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step > 1:
                step_times.append(time.perf_counter() - self.t)

    data = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in prompts]})
    lora = LoraConfig(r=lora_r, lora_alpha=2 * lora_r, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[gold],
        args=args,
        train_dataset=data,
        processing_class=tok,
        peft_config=lora,
        callbacks=[Clock()],
    )
    trainer._generate = _timed(times, "generation", trainer._generate)
    trainer._calculate_rewards = _timed(times, "reward", trainer._calculate_rewards)
    trainer._generate_and_score_completions = _timed(
        times, "sample_and_score", trainer._generate_and_score_completions
    )
    trainer.train()
    step = sum(step_times) / len(step_times)
    per = {k: v / len(step_times) for k, v in times.items()}
    parts = {
        "generation_s": per["generation"],
        "reward_s": per["reward"],
        "other_scoring_s": per["sample_and_score"] - per["generation"] - per["reward"],
        "train_fwd_bwd_optim_s": step - per["sample_and_score"],
    }
    prompt_tokens = sum(
        len(tok(tok.apply_chat_template(r, add_generation_prompt=True, tokenize=False))["input_ids"])
        for r in data["prompt"]
    )
    prompt_tokens = prompt_tokens / len(data)
    seq_tokens = completions * (prompt_tokens + tokens)
    flops = {
        "generation": 2 * n_params * seq_tokens,
        "training": 4 * n_params * seq_tokens,
    }
    return {
        "step_s": step,
        "steps_timed": len(step_times),
        **parts,
        "parameters": n_params,
        "mean_prompt_tokens": prompt_tokens,
        "gflop": {k: v / 1e9 for k, v in flops.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--completions", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--lora-r", type=int, default=8)
    a = ap.parse_args()
    rates = {"float32": matmul_gflops(torch.float32), "bfloat16": matmul_gflops(torch.bfloat16)}
    runs = {}
    for dtype in ("float32", "bfloat16"):
        r = run(dtype, a.steps, a.completions, a.tokens, a.lora_r)
        rate = rates[dtype]
        r["bound_s"] = {k: v / rate for k, v in r["gflop"].items()}
        r["bound_total_s"] = sum(r["bound_s"].values())
        r["step_over_bound"] = r["step_s"] / r["bound_total_s"]
        runs[dtype] = r
        print(
            f"{dtype}: {r['step_s']:.2f} s/step (generation {r['generation_s']:.2f}, reward {r['reward_s']:.3f}, "
            f"other scoring {r['other_scoring_s']:.2f}, train {r['train_fwd_bwd_optim_s']:.2f}); FLOP bound "
            f"{r['bound_total_s']:.2f} s at {rate:.0f} GFLOP/s ({r['step_over_bound']:.1f}x)",
            flush=True,
        )
    result = {
        "benchmark": "grpo_step",
        "command": "python3 benchmarks/grpo_step.py " + " ".join(sys.argv[1:]),
        "settings": vars(a),
        "matmul_gflops": rates,
        "torch_threads": torch.get_num_threads(),
        "runs": runs,
        "bf16_over_fp32_step": runs["bfloat16"]["step_s"] / runs["float32"]["step_s"],
    }
    save_results(RESULTS / "grpo_step.json", result)


if __name__ == "__main__":
    main()
