"""The docs' small explanatory figures, each a short probe on the demo model (SmolLM2-135M-Instruct), CPU.

    python3 benchmarks/probes.py [--sections rm16,lm_head,sdpa_backward,profile_scoring,profile_training,
                                            suite_overhead]
                                 [--out benchmarks/results/probes.json]

- ``rm16`` (benchmark-hacking.md, why the RL half of the ``cpu`` preset uses tiny proxies): seconds for
  one ``score_texts`` call on 16 prompts and responses of the hacking task, by a demo-model explicit RM
  (fp32, random head) and by the ``ci`` preset's tiny word-level RM (hidden 64, 2 layers), median of 5
  calls after one warm-up call.
- ``lm_head`` (scoring.md, implicit rewards in bf16): the LM head of a 1,024-token batch, [1024, 576] x
  [576, 49152], in bf16 against float32 (inputs and weight cast to float32 first, as a float32 head
  would), median of 5.
- ``sdpa_backward`` (training.md, eager attention in bf16 training): torch's CPU SDPA with the flash
  backend, causal, q/k/v [4, 9, 128, 64] (a batch of 4 pairs' sequences, SmolLM2's 9 heads), forward +
  backward in bf16 against float32, 50 repetitions after 2 warm-ups; eager attention (matmul, masked
  softmax, matmul) in bf16 beside it.
- ``profile_scoring`` (scoring.md, where scoring time goes): ``torch.profiler`` over one fp32
  ``score_pairs`` call of 8 AlpacaEval pairs by a demo-model explicit RM; shares of self CPU time in
  matrix multiplies (``aten::mm``, ``addmm``, ``bmm``), SDPA attention, and everything else.
- ``profile_training`` (training.md, where training time goes): ``torch.profiler`` over 4 fp32 training
  steps (forward, backward, AdamW) of a LoRA r=8 demo-model RM on batches of 4 pairs of short synthetic
  texts, after one warm-up step: the matmul share and matmuls per step.
- ``suite_overhead`` (evaluation.md, RewardBench at full size): rewardkit's own work beside the model in
  ``run_suite`` (reading and checking the rows, the scoring rules, 2,000-resample CIs per subset) on
  files of the official sizes and layouts (2,985 RewardBench pairs over its 23 subsets; 1,865
  RewardBench 2 prompts, Ties with a ``ref`` and a ``tied`` sample), synthetic text of 20-200 words, a
  word-count reward model (no forward pass), median of 3 after a first call (imports included).

Every time depends on the host and its load; the JSON records the CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rewardkit.base import RewardModel

sys.path.insert(0, str(Path(__file__).parent))
from common import save_results  # noqa: E402

RESULTS = Path(__file__).parent / "results"
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def median_seconds(fn, reps: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def demo_rm(**kwargs):
    from rewardkit import BradleyTerryRM
    from rewardkit.demo import demo_model_path

    return BradleyTerryRM.from_pretrained(str(demo_model_path()), head_seed=0, **kwargs)


def rm16() -> dict:
    from rewardkit import BradleyTerryRM
    from rewardkit.synthetic import make_hacking_candidates, vocabulary
    from rewardkit.templating import Texts
    from rewardkit.tiny import build_tiny_model

    prompts, candidates = make_hacking_candidates(16, 1, seed=0)
    texts = Texts.of(prompts, [c[0] for c in candidates])
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_model(tmp, vocabulary(spurious=True), hidden=64, layers=2, heads=4, seed=0)
        tiny = BradleyTerryRM.from_pretrained(tmp, head_seed=0)
        tiny_s = median_seconds(lambda: tiny.score_texts(texts))
    demo = demo_rm(dtype=torch.float32)
    demo_s = median_seconds(lambda: demo.score_texts(texts))
    return {"texts": 16, "demo_rm_s": demo_s, "tiny_rm_s": tiny_s, "demo_over_tiny": demo_s / tiny_s}


def lm_head(tokens: int = 1024, hidden: int = 576, vocab: int = 49152) -> dict:
    g = torch.Generator().manual_seed(0)
    h = torch.randn(tokens, hidden, generator=g).bfloat16()
    w = torch.randn(vocab, hidden, generator=g).bfloat16() * 0.02
    bf16 = median_seconds(lambda: h @ w.T)
    fp32 = median_seconds(lambda: h.float() @ w.float().T)
    return {
        "shape": [tokens, hidden, vocab],
        "bf16_s": bf16,
        "float32_s": fp32,
        "float32_over_bf16": fp32 / bf16,
    }


def _attention_step(q, k, v, eager: bool) -> None:
    if eager:
        L = q.shape[-2]
        mask = torch.ones(L, L, dtype=torch.bool).tril()
        w = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
        out = w.masked_fill(~mask, float("-inf")).softmax(-1) @ v
    else:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    out.float().sum().backward()


def sdpa_backward(shape=(4, 9, 128, 64), reps: int = 50) -> dict:
    out = {}
    for name, dtype, eager in (
        ("flash_float32", torch.float32, False),
        ("flash_bf16", torch.bfloat16, False),
        ("eager_bf16", torch.bfloat16, True),
    ):
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(shape, generator=g).to(dtype).requires_grad_() for _ in range(3))
        for _ in range(2):
            _attention_step(q, k, v, eager)
        t = time.perf_counter()
        for _ in range(reps):
            _attention_step(q, k, v, eager)
        out[f"{name}_s"] = time.perf_counter() - t
    out["flash_bf16_over_float32"] = out["flash_bf16_s"] / out["flash_float32_s"]
    out["eager_bf16_over_flash_float32"] = out["eager_bf16_s"] / out["flash_float32_s"]
    out.update(shape=list(shape), reps=reps)
    return out


def op_shares(prof) -> dict:
    """Shares of self CPU time: matmuls, SDPA, the rest; and the number of matmul calls."""
    rows = prof.key_averages()
    total = sum(r.self_cpu_time_total for r in rows)
    mm = sum(r.self_cpu_time_total for r in rows if r.key in MATMUL_OPS)
    sdpa = sum(r.self_cpu_time_total for r in rows if "scaled_dot_product" in r.key)
    calls = sum(r.count for r in rows if r.key in MATMUL_OPS)
    top = sorted(rows, key=lambda r: -r.self_cpu_time_total)[:8]
    return {
        "matmul_share": mm / total,
        "sdpa_share": sdpa / total,
        "other_share": 1 - (mm + sdpa) / total,
        "matmul_calls": calls,
        "top_ops": {r.key: round(r.self_cpu_time_total / total, 4) for r in top},
    }


def profile_scoring() -> dict:
    from common import sample_pairs

    rm = demo_rm(dtype=torch.float32)
    pairs = sample_pairs(8)
    rm.score_pairs(sample_pairs(2, seed=1))  # warm-up
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        rm.score_pairs(pairs)
    return {"pairs": 8, **op_shares(prof)}


def profile_training(steps: int = 4) -> dict:
    from rewardkit.synthetic import make_hacking_candidates

    rm = demo_rm(dtype=torch.float32, lora_r=8)
    module = rm.module.train()
    prompts, candidates = make_hacking_candidates(8, 1, seed=0)
    enc = rm.tokenizer(
        [p + " " + c[0] for p, c in zip(prompts, candidates)], return_tensors="pt", padding=True
    )
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)

    def step():
        r = module(enc["input_ids"], enc["attention_mask"])
        loss = -torch.nn.functional.logsigmoid(r[:4] - r[4:]).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()

    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    shares = op_shares(prof)
    shares["matmul_calls_per_step"] = shares["matmul_calls"] / steps
    return {"steps": steps, "tokens_per_step": int(enc["input_ids"].numel()), **shares}


class WordCountRM(RewardModel):
    """reward = the response's word count: a model that costs nothing, so the suite's own work is timed."""

    kind = "word-count-probe"

    def score_texts(self, texts):
        return np.array([len(str(r).split()) for r in texts.responses], dtype=np.float32)

    def named_inputs(self):
        return []

    def save(self, path, *, force=False):
        raise NotImplementedError

    @classmethod
    def _load(cls, path, manifest, **kwargs):
        raise NotImplementedError


def _suite_files(folder: Path) -> tuple[Path, Path]:
    """RewardBench (2,985 pairs) and RewardBench 2 (1,865 prompts) files in their official layouts."""
    import json
    import random

    from rewardkit.eval.rewardbench import V1_SUBSETS, V2_SUBSETS

    rng = random.Random(0)
    words = "the a reward model answer is correct because each step follows from the last one".split()

    def text() -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(20, 200)))

    v1 = [
        {"id": i, "prompt": text(), "chosen": text(), "chosen_model": "a", "rejected": text(),
         "rejected_model": "b", "subset": V1_SUBSETS[i % len(V1_SUBSETS)]}
        for i in range(2985)
    ]  # fmt: skip
    v2, pid = [], 0
    while pid < 1865:
        subset = V2_SUBSETS[pid % len(V2_SUBSETS)]
        samples = [("ref", 1, 2), ("tied", 2, 2)] if subset == "Ties" else [(None, 1, 3)]
        prompt = text()
        for tag, n_correct, n_rejected in samples:
            v2.append(
                {"id": f"{tag}:{pid}" if tag else str(pid), "prompt": prompt,
                 "chosen": [text() for _ in range(n_correct)], "rejected": [text() for _ in range(n_rejected)],
                 "num_correct": n_correct, "num_rejected": n_rejected,
                 "total_completions": n_correct + n_rejected, "models": [], "subset": subset}
            )  # fmt: skip
        pid += 1
    paths = folder / "rewardbench.jsonl", folder / "rewardbench2.jsonl"
    for path, rows in zip(paths, (v1, v2)):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return paths


def suite_overhead() -> dict:
    from rewardkit.eval import run_suite

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        v1, v2 = _suite_files(Path(tmp))
        rm = {"words": WordCountRM()}
        for name, path in (("rewardbench", v1), ("rewardbench2", v2)):
            t = time.perf_counter()
            report = run_suite(rm, name, path, n_boot=2000)
            first = time.perf_counter() - t
            out[f"{name}_s"] = median_seconds(
                lambda n=name, p=path: run_suite(rm, n, p, n_boot=2000), reps=3, warmup=0
            )
            out[f"{name}_examples"] = len(report.rewards["words"])
            out[f"{name}_first_call_s"] = first
    return out


SECTIONS = {
    "rm16": rm16,
    "lm_head": lm_head,
    "sdpa_backward": sdpa_backward,
    "profile_scoring": profile_scoring,
    "profile_training": profile_training,
    "suite_overhead": suite_overhead,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--out", default=str(RESULTS / "probes.json"))
    a = ap.parse_args()
    names = [s for s in a.sections.split(",") if s]
    unknown = [s for s in names if s not in SECTIONS]
    if unknown:
        sys.exit(f"probes.py: unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    from rewardkit.bench.run import run_versions

    result = {"benchmark": "probes", "command": "python3 benchmarks/probes.py " + " ".join(sys.argv[1:])}
    result["versions"] = run_versions()
    result["torch_threads"] = torch.get_num_threads()
    for name in names:
        t = time.perf_counter()
        result[name] = SECTIONS[name]()
        print(name, result[name], f"({time.perf_counter() - t:.1f} s)", flush=True)
    save_results(a.out, result, show=False)


if __name__ == "__main__":
    main()
