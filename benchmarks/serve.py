"""`rewardkit serve` against a per-request server, over real loopback HTTP, in one run.

    python3 benchmarks/serve.py [--endpoint get_reward|score] [--clients 64,256] [--requests-per-client 1]

The demo model (SmolLM2-135M-Instruct) as an explicit reward model, fp32 on CPU. Clients are
closed-loop (each sends its next request when the previous one is answered), all started together, the
same requests for both servers. ``--endpoint get_reward`` (default): OpenRLHF's workload, one
already-templated AlpacaEval conversation (at most 256 tokens) per ``/get_reward`` request.
``--endpoint score``: each request holds 1-8 (prompt, response) pairs' responses for ``/score``.

- ``rewardkit``: ``rewardkit serve`` (dynamic batching: concurrent requests pooled into the engine's
  length-sorted token-budget batches).
- ``per_request``: each request scored alone in one padded batch by the HF sequence-classification
  forward, one at a time, as OpenRLHF's ``serve_rm`` does; the same token ids (rewardkit's tokenisation),
  so rewards must agree.

Reports sequences/s, p50 / p99 request latency, the throughput ratio and the largest reward difference
between the two servers and ``rewardkit score``'s own scoring (target: >= 3x throughput at 128 clients
with a p99 no worse; rewards equal within 1e-5). Writes benchmarks/results/serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, save_results  # noqa: E402

RESULTS = Path(__file__).parent / "results"

BASELINE = """
import sys, torch, uvicorn
from fastapi import FastAPI, Request
from transformers import AutoModelForSequenceClassification
from rewardkit.checkpoints import load_tokenizer
from rewardkit.templating import Formatter

folder, port = sys.argv[1], int(sys.argv[2])
torch.set_grad_enabled(False)
model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
tok = load_tokenizer(folder)
fmt = Formatter(tok)
app = FastAPI()

@app.get("/health")
async def health():
    return {"status": "ok"}

def forward(ids):
    width = max(map(len, ids))
    x = torch.tensor([s + [tok.pad_token_id] * (width - len(s)) for s in ids])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in ids])
    return {"rewards": model(input_ids=x, attention_mask=mask).logits[:, 0].tolist()}

@app.post("/score")
async def score(request: Request):  # one request at a time, alone, in one padded batch (blocks the loop)
    body = await request.json()
    return forward([fmt.encode(p, r).ids for p, r in zip(body["prompts"], body["responses"])])

@app.post("/get_reward")
async def get_reward(request: Request):  # OpenRLHF's serve_rm: the query as it is, no special tokens
    body = await request.json()
    return forward([tok(q, add_special_tokens=False)["input_ids"] for q in body["query"]])

uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(cmd: list[str], url: str) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"{cmd[0]} did not start")


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


async def _load(url: str, requests: list[list[dict]], endpoint: str) -> dict:
    """Closed-loop clients: client c sends requests[c] one after another; returns latencies and rewards."""
    import httpx

    latencies, rewards, sequences = [], {}, 0
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=len(requests))
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def run_client(c: int):
            nonlocal sequences
            for k, body in enumerate(requests[c]):
                t = time.perf_counter()
                r = await client.post(f"/{endpoint}", json=body)
                r.raise_for_status()
                latencies.append(time.perf_counter() - t)
                rewards[(c, k)] = r.json()["rewards"]
                sequences += len(body["query"] if "query" in body else body["prompts"])

        t0 = time.perf_counter()
        await asyncio.gather(*(run_client(c) for c in range(len(requests))))
        seconds = time.perf_counter() - t0
    lat = sorted(latencies)
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
    return {
        "seconds": seconds,
        "sequences": sequences,
        "sequences_per_s": sequences / seconds,
        "p50_s": pick(0.5),
        "p99_s": pick(0.99),
        "rewards": rewards,
    }


def _openrlhf_body(tok, prompt, response) -> dict:
    """OpenRLHF's /get_reward request for one conversation: the templated text, special tokens written
    out; ``_prompts`` / ``_responses`` (ignored by both servers) keep it for the local reference."""
    from rewardkit.templating import to_messages

    msgs = to_messages(prompt)
    conv = msgs + [{"role": "assistant", "content": response}]
    return {
        "query": [tok.apply_chat_template(conv, tokenize=False)],
        "prompts": [tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)],
        "_prompts": [prompt],
        "_responses": [response],
    }


def main(argv=None) -> None:
    import numpy as np

    from rewardkit import BradleyTerryRM
    from rewardkit.bench.recipes import load_recipe
    from rewardkit.demo import demo_model_path
    from rewardkit.templating import Formatter
    from rewardkit.util import versions

    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", choices=("get_reward", "score"), default="get_reward")
    ap.add_argument("--clients", default="64,256")
    ap.add_argument("--requests-per-client", type=int, default=1)
    ap.add_argument("--max-length", type=int, default=256)
    args = ap.parse_args(argv)
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="rewardkit-serve-bench-") as tmp:
        rm = BradleyTerryRM.from_pretrained(demo_model_path(), head_seed=0)
        rm.save(Path(tmp) / "rm")
        fmt = Formatter(rm.tokenizer)
        pool = load_recipe("alpaca_eval", DATA, on_error="skip")
        seqs = []
        for i in rng.sample(range(len(pool)), 4000):
            p = pool[i]
            if len(fmt.encode(p.prompt, p.chosen)) <= args.max_length:
                seqs.append((p.prompt, p.chosen))
        single = args.endpoint == "get_reward"
        size = "one AlpacaEval conversation" if single else "1-8 AlpacaEval sequences"
        results = {
            "model": "SmolLM2-135M-Instruct as an explicit RM, fp32, CPU",
            "workload": f"closed-loop clients, {args.requests_per_client} /{args.endpoint} requests each of "
            f"{size} (templated, <= {args.max_length} tokens)",
            "note": "2 CPU cores shared with other jobs while measured: figures are noisy",
            "versions": versions(),
            "runs": {},
        }
        for n_clients in [int(x) for x in args.clients.split(",")]:
            requests = []
            for _ in range(n_clients):
                mine = []
                for _ in range(args.requests_per_client):
                    k = 1 if single else rng.randint(1, 8)
                    picked = [seqs[rng.randrange(len(seqs))] for _ in range(k)]
                    mine.append({"prompts": [p for p, _ in picked], "responses": [r for _, r in picked]})
                    if single:
                        mine[-1] = _openrlhf_body(rm.tokenizer, *picked[0])
                requests.append(mine)
            run = {}
            for name in ("per_request", "rewardkit"):
                port = _port()
                url = f"http://127.0.0.1:{port}"
                if name == "rewardkit":
                    cmd = [
                        str(Path(sys.executable).parent / "rewardkit"),
                        "serve",
                        "--rm",
                        str(Path(tmp) / "rm"),
                        "--port",
                        str(port),
                        "--dtype",
                        "float32",  # the per-request baseline scores in float32 too
                    ]
                else:
                    cmd = [sys.executable, "-c", BASELINE, str(Path(tmp) / "rm"), str(port)]
                proc = _start(cmd, url)
                try:
                    run[name] = asyncio.run(_load(url, requests, args.endpoint))
                    if name == "rewardkit":  # computed tokens, padding included, from the server's metrics
                        import httpx

                        m = dict(
                            line.split()[:2]
                            for line in httpx.get(f"{url}/metrics").text.splitlines()
                            if line.startswith(("rewardkit_tokens_total", "rewardkit_padded_tokens_total"))
                        )
                        run[name]["padding_fraction"] = 1 - float(m["rewardkit_tokens_total"]) / float(
                            m["rewardkit_padded_tokens_total"]
                        )
                finally:
                    _stop(proc)
            lengths = [
                [len(fmt.encode(p, r)) for p, r in zip(b["_prompts"], b["_responses"])]
                if single
                else [len(fmt.encode(p, r)) for p, r in zip(b["prompts"], b["responses"])]
                for c in requests
                for b in c
            ]
            run["per_request"]["padding_fraction"] = 1 - sum(map(sum, lengths)) / sum(
                len(x) * max(x) for x in lengths
            )
            flat = lambda r: np.concatenate([np.asarray(r["rewards"][k]) for k in sorted(r["rewards"])])  # noqa: E731
            key = ("_prompts", "_responses") if single else ("prompts", "responses")
            direct = np.concatenate([rm.score(body[key[0]], body[key[1]]) for c in requests for body in c])
            summary = {name: {k: v for k, v in r.items() if k != "rewards"} for name, r in run.items()}
            summary["throughput_ratio"] = (
                run["rewardkit"]["sequences_per_s"] / run["per_request"]["sequences_per_s"]
            )
            summary["p99_ratio"] = run["rewardkit"]["p99_s"] / run["per_request"]["p99_s"]
            summary["max_reward_diff_vs_score"] = float(np.abs(flat(run["rewardkit"]) - direct).max())
            summary["max_reward_diff_baseline_vs_score"] = float(
                np.abs(flat(run["per_request"]) - direct).max()
            )
            results["runs"][str(n_clients)] = summary
            print(
                f"{n_clients} clients: rewardkit {summary['rewardkit']['sequences_per_s']:.1f} seq/s "
                f"(p50 {summary['rewardkit']['p50_s']:.2f} s, p99 {summary['rewardkit']['p99_s']:.2f} s) vs "
                f"per-request {summary['per_request']['sequences_per_s']:.1f} seq/s (p50 "
                f"{summary['per_request']['p50_s']:.2f} s, p99 {summary['per_request']['p99_s']:.2f} s): "
                f"{summary['throughput_ratio']:.2f}x; max reward diff {summary['max_reward_diff_vs_score']:.2g}",
                flush=True,
            )
    name = "serve_get_reward.json" if single else "serve.json"
    save_results(RESULTS / name, results, show=False)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
