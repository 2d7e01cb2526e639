"""How much a served reward depends on its batch mates, with and without ``rewardkit serve --deterministic``.

    python3 benchmarks/serve_determinism.py [--targets 8] [--mates 40] [--repeats 3]

The demo model (SmolLM2-135M-Instruct) as an explicit reward model, served over loopback HTTP in float32
and in bfloat16, each with and without ``--deterministic``. Each target conversation (AlpacaEval, at most
256 tokens) is first scored alone on an idle server (one request at a time); then every target, sent
``--repeats`` times, and ``--mates`` other conversations of other lengths arrive at once as
single-sequence ``/score`` requests, so the server pools them into shared, padded engine batches.
Reports the largest |reward in a pool - reward alone| over the targets, and the pooled phase's
sequences/s (the cost of ``--deterministic``: one forward per sequence). Writes
benchmarks/results/serve_determinism.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, save_results  # noqa: E402
from serve import _port, _start, _stop  # noqa: E402

RESULTS = Path(__file__).parent / "results"


async def _post_all(url: str, bodies: list[dict]) -> tuple[list[float], float]:
    """All bodies at once (one connection each); the rewards in order and the seconds taken."""
    import httpx

    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        t0 = time.perf_counter()
        answers = await asyncio.gather(*(client.post("/score", json=b) for b in bodies))
        seconds = time.perf_counter() - t0
    for r in answers:
        r.raise_for_status()
    return [r.json()["rewards"][0] for r in answers], seconds


def _measure(rm_dir: str, dtype: str, deterministic: bool, targets: list, mates: list, repeats: int) -> dict:
    import httpx

    port = _port()
    url = f"http://127.0.0.1:{port}"
    cmd = [str(Path(sys.executable).parent / "rewardkit"), "serve", "--rm", rm_dir, "--port", str(port),
           "--dtype", dtype, "--max-wait-ms", "50"] + (["--deterministic"] if deterministic else [])  # fmt: skip
    proc = _start(cmd, url)
    try:
        alone = []
        for p, r in targets:  # one at a time on an idle server: each sequence in a batch of its own
            alone.append(
                httpx.post(f"{url}/score", json={"prompts": [p], "responses": [r]}, timeout=600).json()
            )
        alone = [a["rewards"][0] for a in alone]
        rng = random.Random(1)
        mixed = [(i, t) for i, t in enumerate(targets) for _ in range(repeats)] + [(None, m) for m in mates]
        rng.shuffle(mixed)
        bodies = [{"prompts": [p], "responses": [r]} for _, (p, r) in mixed]
        pooled, seconds = asyncio.run(_post_all(url, bodies))
    finally:
        _stop(proc)
    diffs = [abs(v - alone[i]) for (i, _), v in zip(mixed, pooled) if i is not None]
    return {
        "max_abs_diff": max(diffs),
        "pooled_sequences_per_s": len(bodies) / seconds,
        "sequences": len(bodies),
    }


def main(argv=None) -> None:
    from rewardkit import BradleyTerryRM
    from rewardkit.bench.recipes import load_recipe
    from rewardkit.demo import demo_model_path
    from rewardkit.templating import Formatter
    from rewardkit.util import versions

    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", type=int, default=8)
    ap.add_argument("--mates", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--out", default=str(RESULTS / "serve_determinism.json"))
    args = ap.parse_args(argv)
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="rewardkit-determinism-") as tmp:
        rm = BradleyTerryRM.from_pretrained(demo_model_path(), head_seed=0)
        rm.save(Path(tmp) / "rm")
        fmt = Formatter(rm.tokenizer)
        pool = load_recipe("alpaca_eval", DATA, on_error="skip")
        seqs = []
        for i in rng.sample(range(len(pool)), 2000):
            p = pool[i]
            if len(fmt.encode(p.prompt, p.chosen)) <= args.max_length:
                seqs.append((p.prompt, p.chosen))
            if len(seqs) == args.targets + args.mates:
                break
        targets, mates = seqs[: args.targets], seqs[args.targets :]
        results = {
            "model": "SmolLM2-135M-Instruct as an explicit RM, CPU (2 cores, shared)",
            "workload": f"{args.targets} targets scored alone, then {args.repeats}x each among {args.mates} "
            f"mates, all single-sequence /score requests at once (<= {args.max_length} tokens)",
            "versions": versions(),
            "runs": {},
        }
        for dtype in ("float32", "bfloat16"):
            for deterministic in (False, True):
                run = _measure(str(Path(tmp) / "rm"), dtype, deterministic, targets, mates, args.repeats)
                name = f"{dtype}{' --deterministic' if deterministic else ''}"
                results["runs"][name] = run
                print(f"{name}: max |pooled - alone| {run['max_abs_diff']:.3g}, "
                      f"{run['pooled_sequences_per_s']:.2f} seq/s pooled", flush=True)  # fmt: skip
    save_results(args.out, results, show=False)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
