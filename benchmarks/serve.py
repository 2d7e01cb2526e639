"""`rewardkit serve` against a per-request server and against the engine's own batch scoring, over real
loopback HTTP, in one run.

    python3 benchmarks/serve.py [--endpoints get_reward,classify] [--clients 1,16,64] [--sequences 64]
    python3 benchmarks/serve.py --endpoints score --clients 32,128 --requests-per-client 2   # 1-8 per request

The demo model (SmolLM2-135M-Instruct) as an explicit reward model, fp32 on CPU. Clients are closed-loop
(each sends its next request when the previous one is answered), all started together, the same requests
for every server. Single-sequence endpoints (one already-templated AlpacaEval conversation of at most 256
tokens per request, ``--sequences`` requests shared among the clients):

- ``get_reward``: OpenRLHF's ``/get_reward`` request;
- ``classify``: verl's vLLM request, ``/classify {"input", "use_activation": false}``;
- ``score``: ``/score`` requests of 1-8 (prompt, response) pairs, ``--requests-per-client`` each.

Servers: ``rewardkit`` (``rewardkit serve``: concurrent requests pooled into the engine's length-sorted
token-budget batches) and ``per_request`` (each request scored alone in one padded batch by the HF
sequence-classification forward, one at a time, as OpenRLHF's ``serve_rm`` does; the same token ids).
``engine_bound``: the same texts scored in-process by one ``score_texts`` call (no HTTP, all sequences
at once): the most pooling can reach. Reports sequences/s, p50 / p99 latency, the ratios and the largest
reward difference from ``rewardkit score``'s own scoring. Writes serve_<endpoint>.json (serve.json for
``score``) in ``--out-dir`` (default benchmarks/results/, over the committed file).
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

@app.post("/classify")
async def classify(request: Request):  # vLLM's rule: the input text with the tokenizer's special tokens
    body = await request.json()
    out = forward([tok(body["input"])["input_ids"]])["rewards"]
    return {"data": [{"index": 0, "probs": [r]} for r in out]}

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


def _rewards_of(endpoint: str, answer: dict) -> list[float]:
    if endpoint == "classify":
        return [d["probs"][0] for d in answer["data"]]
    return answer["rewards"]


async def _load(url: str, requests: list[list[dict]], endpoint: str) -> dict:
    """Closed-loop clients: client c sends requests[c] one after another; returns latencies and rewards."""
    import httpx

    latencies, rewards = [], {}
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=len(requests))
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def run_client(c: int):
            for k, body in enumerate(requests[c]):
                wire = {key: v for key, v in body.items() if not key.startswith("_")}
                t = time.perf_counter()
                r = await client.post(f"/{endpoint}", json=wire)
                r.raise_for_status()
                latencies.append(time.perf_counter() - t)
                rewards[(c, k)] = _rewards_of(endpoint, r.json())

        t0 = time.perf_counter()
        await asyncio.gather(*(run_client(c) for c in range(len(requests))))
        seconds = time.perf_counter() - t0
    lat = sorted(latencies)
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
    n = sum(len(v) for v in rewards.values())
    return {"seconds": seconds, "sequences": n, "sequences_per_s": n / seconds, "p50_s": pick(0.5),
            "p99_s": pick(0.99), "rewards": rewards}  # fmt: skip


def _request(tok, endpoint: str, picked: list[tuple]) -> dict:
    """One request body of ``endpoint`` for (prompt, response) pairs; ``_prompts`` / ``_responses`` (not
    sent) keep them for the local reference. OpenRLHF sends the templated text with its special tokens
    written out; verl's vLLM request sends it too (this tokenizer adds no BOS, so nothing is stripped)."""
    from rewardkit.templating import to_messages

    prompts, responses = [p for p, _ in picked], [r for _, r in picked]
    body: dict = {"_prompts": prompts, "_responses": responses}
    if endpoint == "score":
        return {**body, "prompts": prompts, "responses": responses}
    msgs = to_messages(prompts[0])
    text = tok.apply_chat_template(msgs + [{"role": "assistant", "content": responses[0]}], tokenize=False)
    if endpoint == "classify":
        return {**body, "input": text, "use_activation": False}
    prompt = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    return {**body, "query": [text], "prompts": [prompt]}


def _workload(seqs: list[tuple], tok, endpoint: str, n_clients: int, args, rng) -> list[list[dict]]:
    """Each client's requests: single-sequence requests shared round-robin, or (``score``) 1-8 pairs each."""
    requests: list[list[dict]] = [[] for _ in range(n_clients)]
    if endpoint == "score":
        for c in range(n_clients):
            for _ in range(args.requests_per_client):
                k = rng.randint(1, 8)
                requests[c].append(
                    _request(tok, endpoint, [seqs[rng.randrange(len(seqs))] for _ in range(k)])
                )
        return requests
    for i in range(args.sequences):
        requests[i % n_clients].append(_request(tok, endpoint, [seqs[rng.randrange(len(seqs))]]))
    return requests


def _serve(name: str, folder: str, endpoint: str, requests: list[list[dict]]) -> dict:
    """One server started, loaded with the workload (and, for rewardkit, its padding from /metrics)."""
    import httpx

    port = _port()
    url = f"http://127.0.0.1:{port}"
    if name == "rewardkit":  # scores in float32, as the per-request baseline does
        cmd = [str(Path(sys.executable).parent / "rewardkit"), "serve", "--rm", folder, "--port", str(port),
               "--dtype", "float32"]  # fmt: skip
    else:
        cmd = [sys.executable, "-c", BASELINE, folder, str(port)]
    proc = _start(cmd, url)
    try:
        run = asyncio.run(_load(url, requests, endpoint))
        if name == "rewardkit":  # computed tokens, padding included, from the server's metrics
            m = dict(line.split()[:2] for line in httpx.get(f"{url}/metrics").text.splitlines()
                     if line.startswith(("rewardkit_tokens_total", "rewardkit_padded_tokens_total")))  # fmt: skip
            run["padding_fraction"] = 1 - float(m["rewardkit_tokens_total"]) / float(
                m["rewardkit_padded_tokens_total"]
            )
    finally:
        _stop(proc)
    return run


def _engine_bound(rm, requests: list[list[dict]], endpoint: str) -> dict:
    """The same texts scored in-process by the engine in one call (after one warm-up call)."""
    from rewardkit.templating import Texts

    bodies = [b for c in requests for b in c]
    if endpoint == "score":
        texts = Texts([p for b in bodies for p in b["prompts"]], [r for b in bodies for r in b["responses"]])
    else:
        raw = [b["input"] if endpoint == "classify" else b["query"][0] for b in bodies]
        texts = Texts([""] * len(raw), raw, raw=True, special_tokens=endpoint == "classify")
    rm.score_texts(texts)
    t0 = time.perf_counter()
    rm.score_texts(texts)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "sequences": len(texts), "sequences_per_s": len(texts) / seconds}


def _summary(run: dict, rm, requests: list[list[dict]]) -> dict:
    import numpy as np

    bodies = [b for c in requests for b in c]
    direct = np.concatenate([rm.score(b["_prompts"], b["_responses"]) for b in bodies])
    flat = lambda r: np.concatenate([np.asarray(r["rewards"][k]) for k in sorted(r["rewards"])])  # noqa: E731
    out = {name: {k: v for k, v in r.items() if k != "rewards"} for name, r in run.items()}
    for name in ("rewardkit", "engine_bound"):
        out[f"{name}_vs_per_request"] = run[name]["sequences_per_s"] / run["per_request"]["sequences_per_s"]
    out["p99_ratio"] = run["rewardkit"]["p99_s"] / run["per_request"]["p99_s"]
    for name in ("rewardkit", "per_request"):
        out[f"max_reward_diff_{name}_vs_score"] = float(np.abs(flat(run[name]) - direct).max())
    return out


def main(argv=None) -> None:
    from rewardkit import BradleyTerryRM
    from rewardkit.bench.recipes import load_recipe
    from rewardkit.demo import demo_model_path
    from rewardkit.templating import Formatter
    from rewardkit.util import versions

    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoints", default="get_reward,classify", help="get_reward, classify, score")
    ap.add_argument("--clients", default="1,16,64")
    ap.add_argument("--sequences", type=int, default=64, help="single-sequence requests per run")
    ap.add_argument("--requests-per-client", type=int, default=2, help="score: requests of 1-8 pairs each")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--out-dir", default=str(RESULTS), help="folder of the JSON (default: the committed one)")
    args = ap.parse_args(argv)
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="rewardkit-serve-bench-") as tmp:
        rm = BradleyTerryRM.from_pretrained(demo_model_path(), head_seed=0)
        rm.save(Path(tmp) / "rm")
        fmt = Formatter(rm.tokenizer)
        pool = load_recipe("alpaca_eval", DATA, on_error="skip")
        picks = (pool[i] for i in rng.sample(range(len(pool)), 4000))
        seqs = [(p.prompt, p.chosen) for p in picks if len(fmt.encode(p.prompt, p.chosen)) <= args.max_length]
        for endpoint in args.endpoints.split(","):
            results = {"model": "SmolLM2-135M-Instruct as an explicit RM, fp32, CPU", "endpoint": endpoint,
                       "workload": f"closed-loop clients, /{endpoint}, templated AlpacaEval (<= {args.max_length} tokens)",
                       "note": "2 CPU cores; throughput and latency depend on what else runs on them",
                       "versions": versions(), "runs": {}}  # fmt: skip
            for n_clients in [int(x) for x in args.clients.split(",")]:
                requests = _workload(seqs, rm.tokenizer, endpoint, n_clients, args, rng)
                run = {
                    name: _serve(name, str(Path(tmp) / "rm"), endpoint, requests)
                    for name in ("per_request", "rewardkit")
                }
                run["engine_bound"] = _engine_bound(rm, requests, endpoint)
                summary = results["runs"][str(n_clients)] = _summary(run, rm, requests)
                print(f"/{endpoint}, {n_clients} clients: rewardkit {summary['rewardkit']['sequences_per_s']:.2f} seq/s "
                      f"(p50 {summary['rewardkit']['p50_s']:.2f} s, p99 {summary['rewardkit']['p99_s']:.2f} s), "
                      f"per-request {summary['per_request']['sequences_per_s']:.2f}, engine bound "
                      f"{summary['engine_bound']['sequences_per_s']:.2f}; rewardkit {summary['rewardkit_vs_per_request']:.2f}x, "
                      f"max reward diff {summary['max_reward_diff_rewardkit_vs_score']:.2g}", flush=True)  # fmt: skip
            name = "serve.json" if endpoint == "score" else f"serve_{endpoint}.json"
            save_results(Path(args.out_dir) / name, results, show=False)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
