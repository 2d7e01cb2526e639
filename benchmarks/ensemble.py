"""Ensemble costs on the demo model (SmolLM2-135M-Instruct), M = 4, same pairs, same run.

(a) peak RSS of a LoRA ensemble over one base (adapters switched over one copy of the weights) vs the
    4 members loaded separately; target ratio <= 0.4.
(b) wall time of a multi-head ensemble (one backbone, 4 heads) vs a single reward model; target <= 1.2.

Members are LoRA reward models with random (untrained) adapters and heads of their own seeds: cost does
not depend on training. Each measurement runs in its own subprocess (peak RSS above the imports).

    python benchmarks/ensemble.py [--pairs 16] [--out benchmarks/results/ensemble.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DATA, proc_status, sample_pairs, save_results

M = 4


def make_members(folder: Path) -> list[Path]:
    import torch

    from rewardkit import BradleyTerryRM, demo_model_path

    paths = []
    for s in range(M):
        rm = BradleyTerryRM.from_pretrained(demo_model_path(), lora_r=16, head_seed=s, max_length=256)
        with torch.no_grad():
            for n, p in rm.model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 1e-3, generator=torch.Generator().manual_seed(s))
        rm.save(folder / f"m{s}")
        paths.append(folder / f"m{s}")
    return paths


def child(mode: str, folder: Path, n_pairs: int) -> None:
    import torch  # noqa: F401  (imports before the baseline)

    from rewardkit import BradleyTerryRM, EnsembleRM, demo_model_path, load_ensemble, load_reward_model

    pairs = sample_pairs(n_pairs)
    prompts, responses = (
        [p.prompt for p in pairs] * 2,
        [p.chosen for p in pairs] + [p.rejected for p in pairs],
    )
    base = proc_status("VmRSS:")
    t0 = time.perf_counter()
    if mode == "shared":
        rm = load_ensemble(sorted(folder.glob("m*")))
    elif mode == "separate":
        rm = EnsembleRM([load_reward_model(p) for p in sorted(folder.glob("m*"))], aggregation="mean")
    else:
        rm = BradleyTerryRM.from_pretrained(
            demo_model_path(), num_heads=M if mode == "multihead" else 1, max_length=256
        )
    load_s = time.perf_counter() - t0
    rm.score(prompts[:2], responses[:2])  # warm-up
    t0 = time.perf_counter()
    scores = (  # [members, n]: an EnsembleRM's members, a multi-head model's heads
        rm.member_scores(prompts, responses)
        if hasattr(rm, "member_scores")
        else rm.score_with_uncertainty(prompts, responses).members
    )
    seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "mode": mode,
                "load_seconds": load_s,
                "score_seconds": seconds,
                "peak_rss_growth_bytes": proc_status("VmHWM:") - base,
                "rows": len(scores),
                "scores": [[float(x) for x in r] for r in scores],
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ensemble.json"))
    ap.add_argument("--child", default=None)
    ap.add_argument("--folder", default=None)
    args = ap.parse_args()
    if args.child:
        return child(args.child, Path(args.folder), args.pairs)
    if not DATA.exists():
        sys.exit(f"error: {DATA} not found")
    with tempfile.TemporaryDirectory() as tmp:
        make_members(Path(tmp))
        runs = {}
        for mode in ("shared", "separate", "single", "multihead"):
            cmd = [sys.executable, __file__, "--child", mode, "--folder", tmp, "--pairs", str(args.pairs)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                sys.exit(f"error: the {mode} child failed:\n{r.stderr[-3000:]}")
            runs[mode] = json.loads(r.stdout.strip().splitlines()[-1])
    import numpy as np

    diff = float(np.abs(np.array(runs["shared"]["scores"]) - np.array(runs["separate"]["scores"])).max())
    mb = 2**20
    result = {
        "pairs": args.pairs,
        "members": M,
        "lora_shared_peak_rss_mb": runs["shared"]["peak_rss_growth_bytes"] / mb,
        "lora_separate_peak_rss_mb": runs["separate"]["peak_rss_growth_bytes"] / mb,
        "lora_peak_rss_ratio": runs["shared"]["peak_rss_growth_bytes"]
        / runs["separate"]["peak_rss_growth_bytes"],
        "lora_shared_vs_separate_max_abs_diff": diff,
        "single_seconds": runs["single"]["score_seconds"],
        "multihead_seconds": runs["multihead"]["score_seconds"],
        "multihead_time_ratio": runs["multihead"]["score_seconds"] / runs["single"]["score_seconds"],
        "targets": {"lora_peak_rss_ratio": "<= 0.4", "multihead_time_ratio": "<= 1.2"},
    }
    save_results(args.out, result)


if __name__ == "__main__":
    main()
