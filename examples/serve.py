"""Serve a reward model over HTTP and use it from Python as if it were local.

    python examples/serve.py [--rm DIR]

Starts `rewardkit serve` on a free local port (a tiny model when no --rm is given), scores pairs through
`RemoteRewardModel`, compares with the local model, posts OpenRLHF's /get_reward request, reads /info
and /metrics, scores one conversation through vLLM's /pooling, verl's /classify request (activation
off: the raw reward) and rewardkit's /score (the same reward), ranks two responses with vLLM's /rerank
(best-of-N), and stops the server.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rewardkit import BradleyTerryRM, RemoteRewardModel, load_reward_model
from rewardkit.synthetic import make_synthetic_preferences
from rewardkit.tiny import build_tiny_model


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rm", default=None)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rewardkit-serve-") as tmp:
        folder = args.rm
        if folder is None:
            work = Path(tmp)
            BradleyTerryRM.from_pretrained(build_tiny_model(work / "base"), head_seed=1).save(work / "rm")
            folder = str(work / "rm")
        return _serve_and_query(folder)


def _serve_and_query(folder: str) -> dict:
    import httpx  # the serve extra

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "rewardkit"),
            "serve",
            "--rm",
            folder,
            "--port",
            str(port),
            "--dtype",
            "float32",
        ]
    )
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        remote, local = RemoteRewardModel(url), load_reward_model(folder)
        pairs = make_synthetic_preferences(16, seed=3)
        diff = np.abs(remote.score_pairs(pairs).margins - local.score_pairs(pairs).margins).max()
        openrlhf = httpx.post(
            f"{url}/get_reward",
            json={"query": ["tell me about pasta good"], "prompts": ["tell me about pasta"]},
        ).json()
        result = {
            "kind": remote.info()["kind"],
            "max_difference_from_local": float(diff),
            "openrlhf_rewards": openrlhf["rewards"],
            "sequences_served": float(
                next(
                    x
                    for x in httpx.get(f"{url}/metrics").text.splitlines()
                    if x.startswith("rewardkit_sequences_total")
                ).split()[-1]
            ),
        }
        conv = [{"role": "user", "content": "tell me about pasta"}, {"role": "assistant", "content": "good"}]
        pooled = httpx.post(f"{url}/pooling", json={"messages": conv}).json()  # a vLLM client's request
        result["vllm_pooling_reward"] = pooled["data"][0]["data"][0]
        result["score_reward"] = httpx.post(
            f"{url}/score", json={"prompts": [conv[:1]], "responses": [conv[1]["content"]]}
        ).json()["rewards"][0]
        text = local.tokenizer.apply_chat_template(conv, tokenize=False)  # verl's vLLM reward request
        verl = httpx.post(f"{url}/classify", json={"input": text, "activation": False}).json()
        result["verl_classify_reward"] = verl["data"][-1]["probs"][-1]
        ranked = httpx.post(
            f"{url}/rerank", json={"query": "tell me about pasta", "documents": ["bad", "good"]}
        )
        result["rerank"] = [(x["index"], x["relevance_score"]) for x in ranked.json()["results"]]
        result["score_pair_rewards"] = remote.score(["tell me about pasta"] * 2, ["bad", "good"]).tolist()
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(result)
    return result


if __name__ == "__main__":
    main()
