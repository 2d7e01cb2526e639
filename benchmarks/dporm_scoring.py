"""DPORM scoring: rewardkit vs the naive approach, same pairs, same run.

Policy: SmolLM2-135M-Instruct (the demo model). Reference: the same weights with Gaussian noise
(std 1e-3 relative to each tensor's std), so the implicit reward is non-trivial. Pairs: N sampled with a
fixed seed from ../shared/data/alpaca_eval_gpt4.jsonl.gz. Each method runs in its own subprocess so peak
RSS growth (above the loaded models) is measured cleanly.

naive: policy and reference in separate passes, pairs in input order, batches of 8 padded to the longest,
full [B, T, V] log-softmax, gather, mask, sum.

    python benchmarks/dporm_scoring.py [--pairs 32] [--max-length 384] [--out benchmarks/results/dporm_scoring.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import DATA, proc_status, reset_peak_rss, sample_pairs, save_results


def _setup(args):
    import torch

    from rewardkit import DPOImplicitRM, demo_model_path
    from rewardkit.checkpoints import load_tokenizer
    from rewardkit.models.implicit import load_causal_lm

    torch.manual_seed(0)
    path = demo_model_path()
    device = torch.device("cpu")
    policy = load_causal_lm(path, device)
    reference = load_causal_lm(path, device)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * p.std() * 1e-3)
    pairs = sample_pairs(args.pairs)
    rm = DPOImplicitRM(
        policy,
        reference,
        load_tokenizer(path),
        beta=0.1,
        max_length=args.max_length,
        device=device,
        progress=False,
    )
    return rm, pairs


def _naive(rm, pairs, batch_size=8):
    import torch

    from rewardkit.scoring import collate

    items = [rm.formatter.encode(p.prompt, r, i) for i, p in enumerate(pairs) for r in (p.chosen, p.rejected)]
    out = []
    with torch.inference_mode():
        for lo in range(0, len(items), batch_size):
            b = collate(
                items,
                list(range(lo, min(lo + batch_size, len(items)))),
                rm.tokenizer.pad_token_id,
                pad_multiple=1,
            )
            t = torch.arange(1, b.input_ids.shape[1])
            m = (t[None] >= b.response_start[:, None]) & b.attention_mask[:, 1:].bool()
            sums = []
            for model in (rm.policy, rm.ref_model):  # separate passes
                logp = torch.log_softmax(
                    model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits.float(), -1
                )
                sums.append((logp[:, :-1].gather(-1, b.input_ids[:, 1:, None]).squeeze(-1) * m).sum(-1))
            out.extend((rm.beta * (sums[0] - sums[1])).tolist())
    return out, sum(len(x) for x in items)


def child(args) -> None:
    rm, pairs = _setup(args)
    base = reset_peak_rss()  # loading does not count
    t0 = time.perf_counter()
    if args.child == "naive":
        rewards, tokens = _naive(rm, pairs)
    else:
        s = rm.score_pairs(pairs)
        rewards = [x for c, r in zip(s.chosen, s.rejected) for x in (float(c), float(r))]
        tokens = sum(len(rm.formatter.encode(p.prompt, r)) for p in pairs for r in (p.chosen, p.rejected))
    seconds = time.perf_counter() - t0
    peak = proc_status("VmHWM:") - base
    print(
        json.dumps({"seconds": seconds, "peak_rss_growth_bytes": peak, "tokens": tokens, "rewards": rewards})
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=384)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "dporm_scoring.json"))
    ap.add_argument("--child", choices=["naive", "rewardkit"], default=None)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if not DATA.exists():
        sys.exit(f"error: {DATA} not found")
    runs = {}
    for mode in ("naive", "rewardkit"):
        cmd = [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--pairs",
            str(args.pairs),
            "--max-length",
            str(args.max_length),
        ]
        r = subprocess.run(cmd, capture_output=True, text=True, check=True)
        runs[mode] = json.loads(r.stdout.strip().splitlines()[-1])
    n, k = runs["naive"], runs["rewardkit"]
    max_diff = max(abs(a - b) for a, b in zip(n["rewards"], k["rewards"]))
    result = {
        "pairs": args.pairs,
        "max_length": args.max_length,
        "sequences": 2 * args.pairs,
        "tokens": k["tokens"],
        "naive_seconds": n["seconds"],
        "rewardkit_seconds": k["seconds"],
        "speedup": n["seconds"] / k["seconds"],
        "naive_peak_rss_growth_mb": n["peak_rss_growth_bytes"] / 2**20,
        "rewardkit_peak_rss_growth_mb": k["peak_rss_growth_bytes"] / 2**20,
        "peak_memory_ratio": k["peak_rss_growth_bytes"] / n["peak_rss_growth_bytes"],
        "max_abs_reward_diff": max_diff,
        "threads": __import__("torch").get_num_threads(),
        "targets": {"speedup": ">= 1.5", "peak_memory_ratio": "<= 0.5"},
    }
    save_results(args.out, result)


if __name__ == "__main__":
    main()
