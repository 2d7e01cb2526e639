"""Scoring throughput on the demo model (SmolLM2-135M-Instruct), 128 AlpacaEval pairs (fixed seed,
max length 512), all in one run:

- explicit: naive HF ``AutoModelForSequenceClassification`` (pairs in input order, batches of 8 padded
  to the longest) vs ``BradleyTerryRM.score_pairs``;
- implicit: naive (policy and reference in separate passes, batches of 8, full log-softmax) vs
  ``DPOImplicitRM.score_pairs`` (reference = policy weights + noise);
- the machine's fp32 matmul GFLOP/s, and rewardkit's useful GFLOP/s
  (2 x non-embedding parameters x real tokens / time) as a fraction of it;
- bf16 matmul GFLOP/s beside fp32 (why rewardkit runs fp32 on CPU);
- padded tokens per real token, rewardkit's length-sorted token-budget batches vs the naive batches (the
  bound on what padding-free packing can gain);
- the share of tokens a prompt cache could save (each pair's prompt is run twice, once per response):
  the bound on what prefix sharing can gain for pairs.

    python benchmarks/scoring_throughput.py [--pairs 128] [--out benchmarks/results/scoring_throughput.json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import sample_pairs, save_results


def matmul_gflops(n: int = 2048, reps: int = 10, dtype=torch.float32) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return reps * 2 * n**3 / (time.perf_counter() - t) / 1e9


def naive_explicit(model, items, pad_id, batch_size=8):
    from rewardkit.scoring import collate

    out = []
    with torch.inference_mode():
        for lo in range(0, len(items), batch_size):
            b = collate(items, list(range(lo, min(lo + batch_size, len(items)))), pad_id, pad_multiple=1)
            out.extend(model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits[:, 0].tolist())
    return out


def naive_implicit(policy, reference, items, pad_id, beta, batch_size=8):
    from rewardkit.scoring import collate

    out = []
    with torch.inference_mode():
        for lo in range(0, len(items), batch_size):
            b = collate(items, list(range(lo, min(lo + batch_size, len(items)))), pad_id, pad_multiple=1)
            t = torch.arange(1, b.input_ids.shape[1])
            m = (t[None] >= b.response_start[:, None]) & b.attention_mask[:, 1:].bool()
            sums = []
            for model in (policy, reference):
                logp = torch.log_softmax(
                    model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits.float(), -1
                )
                sums.append((logp[:, :-1].gather(-1, b.input_ids[:, 1:, None]).squeeze(-1) * m).sum(-1))
            out.extend((beta * (sums[0] - sums[1])).tolist())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=128)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "scoring_throughput.json"))
    args = ap.parse_args()
    from rewardkit import BradleyTerryRM, DPOImplicitRM, demo_model_path
    from rewardkit.checkpoints import load_tokenizer
    from rewardkit.models.implicit import load_causal_lm
    from rewardkit.scoring import CPU_MAX_TOKENS, padded_tokens, plan_batches

    torch.manual_seed(0)
    path = demo_model_path()
    pairs = sample_pairs(args.pairs)
    rm = BradleyTerryRM.from_pretrained(path, head_seed=0, max_length=args.max_length)
    rm.progress = False
    items = [rm.formatter.encode(p.prompt, r, i) for i, p in enumerate(pairs) for r in (p.chosen, p.rejected)]
    tokens = sum(len(x) for x in items)
    hf = rm.model  # the same HF AutoModelForSequenceClassification, called the way a user would
    non_embedding = sum(p.numel() for n, p in hf.named_parameters() if "embed_tokens" not in n)

    res: dict = {
        "pairs": args.pairs,
        "sequences": len(items),
        "real_tokens": tokens,
        "threads": torch.get_num_threads(),
    }
    res["matmul_gflops"] = matmul_gflops()
    res["bf16_matmul_gflops"] = matmul_gflops(1024, reps=3, dtype=torch.bfloat16)
    res["fp32_over_bf16_matmul_1024"] = matmul_gflops(1024, reps=20) / res["bf16_matmul_gflops"]
    # padding-free packing can only remove the padding the engine still computes
    lengths = [len(x) for x in items]
    plan = plan_batches(lengths, CPU_MAX_TOKENS)
    res["rewardkit_padded_per_real_token"] = padded_tokens(lengths, plan) / tokens
    naive_batches = [range(lo, min(lo + 8, len(lengths))) for lo in range(0, len(lengths), 8)]
    res["naive_padded_per_real_token"] = padded_tokens(lengths, naive_batches, pad_multiple=1) / tokens
    # prefix sharing: the second copy of each prompt is the only work a prompt cache removes
    prompt_tokens = sum(x.response_start for x in items[1::2])
    res["prompt_cache_saved_token_fraction"] = prompt_tokens / tokens
    res["prompt_cache_speedup_bound"] = tokens / (tokens - prompt_tokens)
    t = time.perf_counter()
    naive = naive_explicit(hf, items, rm.tokenizer.pad_token_id)
    res["explicit_naive_seconds"] = time.perf_counter() - t
    t = time.perf_counter()
    s = rm.score_pairs(pairs)
    res["explicit_rewardkit_seconds"] = time.perf_counter() - t
    ours = [x for c, r in zip(s.chosen, s.rejected) for x in (c, r)]
    # HF reads the last non-pad token; with pad == eos == <|im_end|> that is not the last real token, so
    # the values differ by design: report the agreement of the pair orderings instead
    res["explicit_speedup"] = res["explicit_naive_seconds"] / res["explicit_rewardkit_seconds"]
    res["explicit_useful_gflops"] = 2 * non_embedding * tokens / res["explicit_rewardkit_seconds"] / 1e9
    res["explicit_fraction_of_matmul"] = res["explicit_useful_gflops"] / res["matmul_gflops"]
    res["hf_vs_rewardkit_same_sign_margins"] = float(
        sum((naive[2 * i] > naive[2 * i + 1]) == (ours[2 * i] > ours[2 * i + 1]) for i in range(args.pairs))
        / args.pairs
    )

    policy = load_causal_lm(path, torch.device("cpu"))
    reference = load_causal_lm(path, torch.device("cpu"))
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * p.std() * 1e-3)
    dporm = DPOImplicitRM(
        policy, reference, load_tokenizer(path), beta=0.1, max_length=args.max_length, progress=False
    )
    t = time.perf_counter()
    naive_i = naive_implicit(policy, reference, items, rm.tokenizer.pad_token_id, 0.1)
    res["implicit_naive_seconds"] = time.perf_counter() - t
    t = time.perf_counter()
    si = dporm.score_pairs(pairs)
    res["implicit_rewardkit_seconds"] = time.perf_counter() - t
    ours_i = [x for c, r in zip(si.chosen, si.rejected) for x in (c, r)]
    res["implicit_max_abs_diff"] = float(max(abs(a - b) for a, b in zip(naive_i, ours_i)))
    res["implicit_speedup"] = res["implicit_naive_seconds"] / res["implicit_rewardkit_seconds"]
    res["targets"] = {
        "explicit_speedup": ">= 2.0",
        "implicit_speedup": ">= 2.0",
        "explicit_fraction_of_matmul": ">= 0.6",
    }
    save_results(args.out, res)


if __name__ == "__main__":
    main()
