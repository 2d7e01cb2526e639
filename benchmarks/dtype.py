"""Scoring time and agreement with float32, per dtype, for explicit and implicit rewards: AlpacaEval pairs
(fixed seed, max length 512) and the demo model (SmolLM2-135M-Instruct), all in one run.

- explicit: a LoRA RM (r=8) on the demo model, saved in fp32 and loaded with ``load_reward_model(...,
  dtype=...)`` as ``rewardkit score --rm DIR --dtype ...`` loads it. Its head is freshly seeded, so its
  decisions are arbitrary: agreement then measures precision, not quality; pass ``--rm DIR`` for a
  trained one (LoRA or full);
- implicit: a DPO reward of the demo model with a LoRA policy (r=8, random B scaled by ``--lora-std``,
  the reference its base with the adapter disabled), saved and loaded the same way; ``--dpo DIR`` for a
  trained policy folder;
- variants: each dtype of ``--dtypes``; ``bfloat16-fp32-adapters`` (adapters kept in fp32 as peft
  keeps them, beside a bf16 base) and ``bfloat16@N`` (a token budget of N per batch) show where bf16's
  time goes.

Per variant: seconds to score the pairs (loading excluded, after a 2-pair warm-up; the first pass and
the best of ``--repeats``), the speedup over float32, and against float32's rewards: decision agreement
(same sign of the margin), max and mean |delta r| (and float32's reward std, their scale), and the
Pearson correlation of the margins. ``auto`` says what ``dtype="auto"`` picks on this machine.

    python benchmarks/dtype.py [--pairs 32] [--dtypes float32,bfloat16] [--out benchmarks/results/dtype.json]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import DATA, sample_pairs, save_results


def agreement(ref: np.ndarray, got: np.ndarray, n_pairs: int) -> dict:
    """Agreement of rewards ``got`` with ``ref``, both [2 * n_pairs] (chosen rewards, then rejected)."""
    ref_m, got_m = ref[:n_pairs] - ref[n_pairs:], got[:n_pairs] - got[n_pairs:]
    delta = np.abs(got - ref)
    corr = float(np.corrcoef(ref_m, got_m)[0, 1]) if ref_m.std() > 0 and got_m.std() > 0 else float("nan")
    return {
        "decision_agreement": float(np.mean((ref_m > 0) == (got_m > 0))),
        "max_abs_delta_r": float(delta.max()),
        "mean_abs_delta_r": float(delta.mean()),
        "fp32_reward_std": float(ref.std()),
        "margin_correlation": corr if np.isfinite(corr) else None,
    }


def variant_spec(name: str) -> tuple[str, bool, int | None]:
    """``bfloat16-fp32-adapters`` / ``bfloat16@2048`` -> (dtype, fp32 adapters, token budget)."""
    dtype, _, budget = name.partition("@")
    fp32_adapters = dtype.endswith("-fp32-adapters")
    return dtype.removesuffix("-fp32-adapters"), fp32_adapters, int(budget) if budget else None


def time_variant(load, name: str, texts, warm, repeats: int) -> tuple[dict, np.ndarray]:
    dtype, fp32_adapters, budget = variant_spec(name)
    rm = load(dtype)
    if fp32_adapters:
        for m in rm.members or [rm]:
            for module in [getattr(m, "model", None), getattr(m, "policy", None)]:
                for n, p in (module.named_parameters() if module is not None else []):
                    if "lora_" in n:
                        p.data = p.data.float()
    rm.configure(progress=False, max_tokens=budget)
    rm.score_texts(warm)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        r = rm.score_texts(texts)
        times.append(time.perf_counter() - t)
    return {"seconds_first": times[0], "seconds": min(times)}, np.asarray(r, dtype=np.float64)


def compare(load, variants, texts, warm, n_pairs: int, repeats: int) -> dict:
    out, ref = {}, None
    for name in ["float32", *(v for v in variants if v != "float32")]:
        row, r = time_variant(load, name, texts, warm, repeats)
        if ref is None:
            ref = r
        row.update(agreement(ref, r, n_pairs))
        row["speedup_vs_float32"] = out["float32"]["seconds"] / row["seconds"] if out else 1.0
        out[name] = row
        print(name, {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    return out


def cli_seconds(model: Path, data: Path, out: Path, dtype: str) -> float:
    """Wall time of one ``rewardkit score --rm MODEL --data DATA --dtype DTYPE`` process."""
    import subprocess

    cmd = ["rewardkit", "score", "--rm", str(model), "--data", str(data), "--out", str(out), "--dtype", dtype, "--force"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def cli_compare(model: Path, pairs, folder: Path, dtypes: list[str], repeats: int) -> dict:
    """``rewardkit score`` per dtype on ``pairs``, start-up subtracted (the time of a 1-pair run of
    the same command, same dtype, is taken off), decisions compared with float32's output."""
    import json

    from rewardkit.data import PreferenceDataset

    data, one = folder / "pairs.jsonl", folder / "one.jsonl"
    PreferenceDataset(list(pairs)).save_jsonl(data)
    PreferenceDataset(list(pairs[:1])).save_jsonl(one)
    out, ref = {}, None
    for dtype in dtypes:
        full = min(cli_seconds(model, data, folder / f"{dtype}.jsonl", dtype) for _ in range(repeats))
        start = min(cli_seconds(model, one, folder / f"{dtype}-1.jsonl", dtype) for _ in range(repeats))
        rows = [json.loads(line) for line in (folder / f"{dtype}.jsonl").read_text().splitlines()]
        r = np.array([x["chosen"] for x in rows] + [x["rejected"] for x in rows], dtype=np.float64)
        ref = r if ref is None else ref
        out[dtype] = {"seconds_total": full, "seconds_one_pair": start, "seconds": full - start, **agreement(ref, r, len(rows))}
        out[dtype]["speedup_vs_first"] = out[dtypes[0]]["seconds"] / out[dtype]["seconds"]
        print("cli", model.name, dtype, {k: round(v, 4) if isinstance(v, float) else v for k, v in out[dtype].items()}, flush=True)
    return out


def build_models(folder: Path, path: Path, lora_std: float) -> tuple[Path, Path]:
    """A LoRA explicit RM and a LoRA DPO policy on the demo model, saved in fp32 under ``folder``."""
    from rewardkit import BradleyTerryRM
    from rewardkit.adapters import add_lora
    from rewardkit.models.implicit import load_causal_lm

    rm = BradleyTerryRM.from_pretrained(path, lora_r=8, head_seed=0, max_length=512)
    rm.save(folder / "explicit")
    policy = add_lora(load_causal_lm(path, torch.device("cpu")), 8, task="CAUSAL_LM", seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * lora_std)
    policy.save_pretrained(folder / "policy")
    rm.tokenizer.save_pretrained(folder / "policy")
    return folder / "explicit", folder / "policy"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--dtypes", default="float32,bfloat16,bfloat16-fp32-adapters,bfloat16@2048")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rm", default=None, help="a trained reward model folder (default: random-head LoRA RM)")
    ap.add_argument("--dpo", default=None, help="a trained DPO policy folder (default: random LoRA policy)")
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--lora-std", type=float, default=0.002, help="std of the random policy's LoRA B")
    ap.add_argument("--cli", action="store_true", help="also time `rewardkit score --dtype float32 / auto`")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "dtype.json"))
    args = ap.parse_args()
    if not DATA.is_file():
        print(f"skipped: {DATA} not found")
        return
    from rewardkit import DPOImplicitRM, demo_model_path, load_reward_model
    from rewardkit.dtypes import FAST_BF16_FLAGS, cpu_flags, dtype_name, resolve_dtype
    from rewardkit.templating import Texts

    path = demo_model_path()
    pairs = sample_pairs(args.pairs)
    texts, warm = Texts.from_pairs(pairs), Texts.from_pairs(sample_pairs(2, seed=1))
    variants = [v.strip() for v in args.dtypes.split(",") if v.strip()]
    res: dict = {
        "pairs": args.pairs,
        "threads": torch.get_num_threads(),
        "cpu_fast_bf16_flags": sorted(set(FAST_BF16_FLAGS) & cpu_flags()),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "auto": dtype_name(resolve_dtype("auto", torch.device("cpu"))),
        "variants": variants,
    }
    with tempfile.TemporaryDirectory() as tmp:
        explicit, policy = build_models(Path(tmp), path, args.lora_std)
        explicit = Path(args.rm) if args.rm else explicit
        policy = Path(args.dpo) if args.dpo else policy
        res["explicit_model"] = str(args.rm) if args.rm else "demo + LoRA r=8, random head (precision only)"
        res["implicit_model"] = (
            str(args.dpo) if args.dpo else f"demo + random LoRA r=8 (B std {args.lora_std}), reference = base"
        )

        def load_explicit(dt):
            return load_reward_model(explicit, dtype=dt)

        def load_implicit(dt):
            if args.dpo and (policy / "rewardkit.json").is_file():
                return load_reward_model(policy, dtype=dt)
            return DPOImplicitRM.from_pretrained(policy, beta=args.beta, dtype=dt, max_length=512)

        res["explicit"] = compare(load_explicit, variants, texts, warm, args.pairs, args.repeats)
        res["implicit"] = compare(load_implicit, variants, texts, warm, args.pairs, args.repeats)
        if args.cli:
            res["cli"] = {}
            for kind, model in (("explicit", explicit), ("implicit", policy)):
                if (model / "rewardkit.json").is_file():  # a folder `rewardkit score --rm` loads
                    res["cli"][kind] = cli_compare(model, pairs, Path(tmp), ["float32", "auto"], args.repeats)
    res["targets"] = {"bfloat16 speedup_vs_float32": ">= 2.0", "bfloat16 decision_agreement": "1.0"}
    save_results(args.out, res)


if __name__ == "__main__":
    main()
