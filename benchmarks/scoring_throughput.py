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
  the bound on what prefix sharing can gain for pairs;
- prefix sharing (``prefix``): a long-prompt, many-responses workload built from AlpacaEval's own text
  (``--long-prompts`` prompts of ~``--prompt-tokens`` tokens, each with ``--responses`` responses of
  ~``--response-tokens`` tokens) scored by the explicit and the implicit RM with prefix sharing on and
  off (seconds, ratio, max |delta r|), and the AlpacaEval pairs with it on and off (where its rule must
  not trigger: the ratio should be ~1).

    python benchmarks/scoring_throughput.py [--pairs 128] [--sections engine,prefix]
        [--out benchmarks/results/scoring_throughput.json]
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


def long_prompt_texts(tokenizer, pairs, n_prompts: int, prompt_tokens: int, n_resp: int, resp_tokens: int):
    """``n_prompts`` prompts of about ``prompt_tokens`` tokens, each with ``n_resp`` responses of about
    ``resp_tokens`` tokens, cut from the pairs' own text (instructions and answers, in file order)."""
    from rewardkit.templating import Texts

    ids = tokenizer(" ".join(t for p in pairs for t in (str(p.prompt), p.chosen, p.rejected)))["input_ids"]
    need = n_prompts * (prompt_tokens + n_resp * resp_tokens)
    ids = (ids * (need // max(1, len(ids)) + 1))[:need]
    prompts, responses, at = [], [], 0
    for _ in range(n_prompts):
        prompt = tokenizer.decode(ids[at : at + prompt_tokens]).rstrip() + "\n"  # no token across the boundary
        at += prompt_tokens
        for _ in range(n_resp):
            prompts.append(prompt)
            responses.append(tokenizer.decode(ids[at : at + resp_tokens]))
            at += resp_tokens
    return Texts.of(prompts, responses)


def shared_vs_unshared(rm, texts, repeats: int = 1) -> dict:
    """Seconds with prefix sharing on and off (best of ``repeats``), their ratio and max |delta r|."""
    out, rewards = {}, {}
    for on in (False, True):
        rm.configure(prefix_sharing=on)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            rewards[on] = rm.score_texts(texts)
            times.append(time.perf_counter() - t)
        out["shared_seconds" if on else "unshared_seconds"] = min(times)
    out["speedup"] = out["unshared_seconds"] / out["shared_seconds"]
    out["max_abs_diff"] = float(abs(rewards[True] - rewards[False]).max())
    return out


def prefix_section(args, rm, dporm, pairs) -> dict:
    from rewardkit.scoring import share_groups
    from rewardkit.templating import Texts

    texts = long_prompt_texts(
        rm.tokenizer, pairs, args.long_prompts, args.prompt_tokens, args.responses, args.response_tokens
    )
    items = texts.encode(rm.formatter)
    groups, _ = share_groups(items)
    res = {
        "long_prompt_workload": {
            "prompts": args.long_prompts,
            "responses_per_prompt": args.responses,
            "mean_prompt_tokens": sum(x.response_start for x in items) / len(items),
            "mean_response_tokens": sum(len(x) - x.response_start for x in items) / len(items),
            "shared_groups": len(groups),
        }
    }
    warm = long_prompt_texts(rm.tokenizer, pairs, 1, 64, 2, 8)
    for name, model in (("explicit", rm), ("implicit", dporm)):
        model.score_texts(warm)
        res[f"long_prompt_{name}"] = shared_vs_unshared(model, texts)
        print(name, "long prompts", res[f"long_prompt_{name}"], flush=True)
    pair_texts = Texts.from_pairs(pairs)
    res["alpaca_eval_shared_groups"] = len(share_groups(pair_texts.encode(rm.formatter))[0])
    for name, model in (("explicit", rm), ("implicit", dporm)):
        res[f"alpaca_eval_{name}"] = shared_vs_unshared(model, pair_texts)
        print(name, "alpaca_eval pairs", res[f"alpaca_eval_{name}"], flush=True)
    res["prefix_targets"] = {
        "long_prompt_*.speedup": ">= 2.0",
        "alpaca_eval_*.speedup": ">= 0.95 (no slowdown)",
    }
    return res


def demo_models(path, max_length: int):
    """The demo model as an explicit RM (seeded random head) and as a DPORM against a perturbed copy."""
    from rewardkit import BradleyTerryRM, DPOImplicitRM
    from rewardkit.checkpoints import load_tokenizer
    from rewardkit.models.implicit import load_causal_lm

    torch.manual_seed(0)
    rm = BradleyTerryRM.from_pretrained(path, head_seed=0, max_length=max_length)
    rm.configure(progress=False)
    policy = load_causal_lm(path, torch.device("cpu"))
    reference = load_causal_lm(path, torch.device("cpu"))
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * p.std() * 1e-3)
    dporm = DPOImplicitRM(
        policy, reference, load_tokenizer(path), beta=0.1, max_length=max_length, progress=False
    )
    return rm, dporm


def engine_section(args, path, pairs) -> dict:
    """Naive HF loops against rewardkit's engine (prefix sharing off: it does not trigger on these pairs
    anyway), padding and matmul rates."""
    from rewardkit.scoring import CPU_MAX_TOKENS, padded_tokens, plan_batches

    rm, dporm = demo_models(path, args.max_length)
    policy, reference = dporm.policy, dporm.ref_model
    items = [rm.formatter.encode(p.prompt, r, i) for i, p in enumerate(pairs) for r in (p.chosen, p.rejected)]
    tokens = sum(len(x) for x in items)
    hf = rm.model  # the same HF AutoModelForSequenceClassification, called the way a user would
    non_embedding = sum(p.numel() for n, p in hf.named_parameters() if "embed_tokens" not in n)

    res: dict = {
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

    t = time.perf_counter()
    naive_i = naive_implicit(policy, reference, items, rm.tokenizer.pad_token_id, 0.1)
    res["implicit_naive_seconds"] = time.perf_counter() - t
    t = time.perf_counter()
    si = dporm.score_pairs(pairs)
    res["implicit_rewardkit_seconds"] = time.perf_counter() - t
    ours_i = [x for c, r in zip(si.chosen, si.rejected) for x in (c, r)]
    res["implicit_max_abs_diff"] = float(max(abs(a - b) for a, b in zip(naive_i, ours_i)))
    res["implicit_speedup"] = res["implicit_naive_seconds"] / res["implicit_rewardkit_seconds"]
    res["engine_targets"] = {
        "explicit_speedup": ">= 2.0",
        "implicit_speedup": ">= 2.0",
        "explicit_fraction_of_matmul": ">= 0.6",
    }
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=128)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--sections", default="engine,prefix", help="engine (naive vs rewardkit), prefix")
    ap.add_argument("--long-prompts", type=int, default=4)
    ap.add_argument("--prompt-tokens", type=int, default=1000)
    ap.add_argument("--responses", type=int, default=8)
    ap.add_argument("--response-tokens", type=int, default=100)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "scoring_throughput.json"))
    args = ap.parse_args()
    sections = {s.strip() for s in args.sections.split(",")}
    from rewardkit import demo_model_path

    path, pairs = demo_model_path(), sample_pairs(args.pairs)
    res: dict = {"pairs": args.pairs, "threads": torch.get_num_threads()}
    if "engine" in sections:
        res.update(engine_section(args, path, pairs))
    if "prefix" in sections:
        res.update(prefix_section(args, *demo_models(path, max(2048, args.max_length)), pairs))
    save_results(args.out, res)


if __name__ == "__main__":
    main()
