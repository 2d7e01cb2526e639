"""Serving RL trainers: OpenRLHF 0.11's own request code and vLLM-shaped clients against a real server,
on a tokenizer that adds BOS and a chat template that starts with it (Llama-3, Gemma, Mistral)."""

from __future__ import annotations

import asyncio
import importlib.util
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from rewardkit import BradleyTerryRM, DPOImplicitRM, RemoteRewardModel, load_reward_model  # noqa: E402
from rewardkit.serve.app import prompt_boundary  # noqa: E402
from rewardkit.templating import Texts  # noqa: E402
from tests.test_serve import server  # noqa: E402

CONVERSATIONS = [
    ("tell me about pasta", "good clear answer"),
    ("explain the star", "bad"),
    ("why is the sky blue", "the sky is blue because good"),
]


@pytest.fixture(scope="module")
def bos_models(tmp_path_factory):
    from rewardkit.tiny import build_tiny_model

    d = tmp_path_factory.mktemp("serve_bos")
    base = build_tiny_model(d / "base", bos=True)
    BradleyTerryRM.from_pretrained(base, head_seed=11).save(d / "rm")
    ref = build_tiny_model(d / "ref", bos=True, seed=3)
    DPOImplicitRM.from_pretrained(base, ref, beta=0.5).save(d / "dporm")
    return d


def _openrlhf_agent():
    """OpenRLHF's ``openrlhf/utils/agent.py`` (and the logging module it imports), loaded by path
    from the installed package without running ``openrlhf/__init__`` (which needs torch, deepspeed)."""
    spec = importlib.util.find_spec("openrlhf")
    if spec is None:
        pytest.skip("openrlhf is not installed (scripts/setup.sh installs it with --no-deps)")
    pytest.importorskip("aiohttp")
    root = Path(spec.submodule_search_locations[0])
    modules = {}
    for name, rel in (
        ("openrlhf.utils.logging_utils", "utils/logging_utils.py"),
        ("rk_openrlhf_agent", "utils/agent.py"),
    ):
        s = importlib.util.spec_from_file_location(name, root / rel)
        module = importlib.util.module_from_spec(s)
        sys.modules[name] = module
        s.loader.exec_module(module)
        modules[name] = module
    return modules["rk_openrlhf_agent"]


class FakeEngine:
    """Stands in for vLLM: 'generates' fixed token ids (OpenRLHF builds the query from them)."""

    def __init__(self, action_ids: list[int]):
        self.action_ids = action_ids

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        out = SimpleNamespace(token_ids=list(self.action_ids), text="", finish_reason="stop", logprobs=None)
        return SimpleNamespace(outputs=[out])


def test_prompt_boundary_hand_cases():
    assert prompt_boundary("Hello world, ANSWER", "Hello world, ") == 13  # starts with its prompt
    assert prompt_boundary("ello world, ANSWER", "Hello world, ") == 12  # left-truncated prompt
    assert prompt_boundary("aab", "xaa") == 2  # the longest end of the prompt the query starts with
    assert prompt_boundary("Hello there", "Hello world") == 6  # common prefix
    assert prompt_boundary("abc", "xyz") == 0


def test_openrlhf_request_code_gets_the_reward_score_gives_the_conversation(bos_models):
    agent = _openrlhf_agent()
    local = load_reward_model(bos_models / "rm")
    tok = local.tokenizer
    with server("--rm", str(bos_models / "rm")) as (url, _):
        for user, response in CONVERSATIONS:
            messages = [{"role": "user", "content": user}]
            prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            action = tok(response + tok.eos_token, add_special_tokens=False)[
                "input_ids"
            ]  # what a policy emits
            prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
            expected = httpx.post(
                f"{url}/score", json={"prompts": [messages], "responses": [response]}
            ).json()
            np.testing.assert_allclose(expected["rewards"], local.score([messages], [response]), atol=1e-5)
            for max_length in (len(prompt_ids) + len(action), len(prompt_ids) + len(action) - 3):
                executor = agent.SingleTurnAgentExecutor(f"{url}/get_reward")
                params = SimpleNamespace(max_tokens=len(action), logprobs=None)
                out = asyncio.run(
                    executor.execute(prompt, "label", params, max_length, tok, FakeEngine(action))
                )
                assert out["reward"] is not None, "OpenRLHF got no reward (its request failed)"
                seq = out["observation_tokens"]
                query = tok.decode(seq, skip_special_tokens=False)
                if max_length == len(prompt_ids) + len(action):
                    assert seq == prompt_ids + action  # whole prompt: the /score conversation
                    assert tok(query)["input_ids"][:2] == [tok.bos_token_id] * 2  # BOS twice if added again
                    np.testing.assert_allclose(out["reward"], expected["rewards"], atol=1e-4)
                else:  # OpenRLHF left-truncated the prompt: its query does not start with it
                    assert not query.startswith(prompt)
                    local_r = local.score_texts(Texts([""], [query], ids=[seq]))
                    np.testing.assert_allclose(out["reward"], local_r, atol=1e-4)


def test_a_mismatched_prompt_does_not_fail_the_batch(bos_models):
    """An implicit RM needs the boundary: a left-truncated prompt falls back to its end the query starts
    with; the other item's reward is the same as when it is sent alone."""
    local = load_reward_model(bos_models / "dporm")
    tok = local.tokenizer
    p1 = tok.apply_chat_template(
        [{"role": "user", "content": "tell me"}], add_generation_prompt=True, tokenize=False
    )
    q1 = p1 + "good answer" + tok.eos_token
    body = {"query": [q1, "me about pasta good"], "prompts": [p1, "tell me about pasta "]}
    with server("--rm", str(bos_models / "dporm")) as (url, _):
        r = httpx.post(f"{url}/get_reward", json=body, timeout=60)
        assert r.status_code == 200, r.text
        alone = httpx.post(f"{url}/get_reward", json={"query": [q1], "prompts": [p1]}).json()["rewards"]
    rewards = r.json()["rewards"]
    assert len(rewards) == 2
    np.testing.assert_allclose(rewards[0], alone[0], atol=1e-5)
    expected = local.score_texts(
        Texts([p1, "me about pasta "], ["good answer" + tok.eos_token, "good"], raw=True)
    )
    np.testing.assert_allclose(rewards, expected, atol=1e-5)
    whole = local.score_texts(Texts([""], ["me about pasta good"], raw=True))
    assert abs(rewards[1] - whole[0]) > 1e-3  # the boundary matters for an implicit reward


def test_vllm_shapes_and_rewards(bos_models):
    local = load_reward_model(bos_models / "rm")
    tok = local.tokenizer
    user, response = CONVERSATIONS[0]
    conv = [{"role": "user", "content": user}, {"role": "assistant", "content": response}]
    expected = float(local.score([conv[:1]], [response])[0])
    text = tok.apply_chat_template(conv, tokenize=False)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert text.startswith(tok.bos_token) and ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id
    with server("--rm", str(bos_models / "rm"), "--served-model-name", "my-rm") as (url, _):
        models = httpx.get(f"{url}/v1/models").json()
        assert models["object"] == "list" and models["data"][0]["id"] == "my-rm"
        assert models["data"][0]["max_model_len"] == 512
        cases = [
            {"model": "my-rm", "messages": conv},
            {"input": text, "add_special_tokens": False},  # templated text, BOS written out
            {"input": text[len(tok.bos_token) :]},  # verl's way: BOS text stripped, the tokenizer adds it
            {"input": ids},
            {"input": [ids]},
        ]
        for body in cases:
            out = httpx.post(f"{url}/pooling", json=body).json()
            assert out["object"] == "list" and out["model"] == "my-rm" and out["id"].startswith("pool-"), out
            assert out["data"][0]["index"] == 0 and out["data"][0]["object"] == "pooling"
            assert abs(out["data"][0]["data"][0] - expected) <= 1e-4, (body, out)
            assert out["usage"]["prompt_tokens"] == len(ids) == out["usage"]["total_tokens"]
        two = httpx.post(f"{url}/pooling", json={"input": [text, "good"], "add_special_tokens": False}).json()
        assert [d["index"] for d in two["data"]] == [0, 1]
        assert two["usage"]["prompt_tokens"] == len(ids) + 1
        np.testing.assert_allclose(
            two["data"][1]["data"][0], local.score_texts(Texts([""], ["good"], raw=True))[0], atol=1e-5
        )
        cls = httpx.post(f"{url}/classify", json={"messages": conv}).json()
        d = cls["data"][0]
        assert d["num_classes"] == 1 and abs(d["probs"][0] - 1 / (1 + math.exp(-expected))) <= 1e-5
        raw = httpx.post(f"{url}/classify", json={"messages": conv, "use_activation": False}).json()
        assert abs(raw["data"][0]["probs"][0] - expected) <= 1e-4
        t = httpx.post(f"{url}/tokenize", json={"prompt": "tell me", "return_token_strs": True}).json()
        assert t["tokens"] == tok("tell me")["input_ids"] and t["count"] == 3 and t["token_strs"][0] == "<s>"
        t = httpx.post(f"{url}/tokenize", json={"messages": conv, "add_generation_prompt": False}).json()
        assert t["tokens"] == ids and t["max_model_len"] == 512
        back = httpx.post(f"{url}/detokenize", json={"tokens": ids}).json()
        assert back == {"prompt": tok.decode(ids)}
        remote = RemoteRewardModel(url)  # already-templated text and token ids go through /pooling
        np.testing.assert_allclose(remote.score_texts(Texts([""], [text], raw=True)), [expected], atol=1e-4)
        np.testing.assert_allclose(remote.score_texts(Texts([""], [""], ids=[ids])), [expected], atol=1e-4)
        refusals = [
            ("/pooling", {"model": "other", "input": "x"}, 404, "field 'model'"),
            ("/pooling", {"messages": conv[:1]}, 400, "last message must be the assistant"),
            ("/pooling", {"input": "x", "encoding_format": "base64"}, 400, "field 'encoding_format'"),
            ("/pooling", {"input": "x", "messages": conv}, 400, "exactly one of"),
            ("/pooling", {"input": [10**9]}, 400, "field 'input.0'"),
            ("/detokenize", {"tokens": [-1]}, 400, "field 'tokens'"),
        ]
        for path, body, status, message in refusals:
            r = httpx.post(f"{url}{path}", json=body)
            assert r.status_code == status and message in r.json()["error"]["message"], (
                path,
                r.status_code,
                r.text,
            )


def test_the_serve_example_scores_a_vllm_request_as_score_does():
    spec = importlib.util.spec_from_file_location(
        "serve_example", Path(__file__).parents[1] / "examples" / "serve.py"
    )
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main([])
    assert abs(result["vllm_pooling_reward"] - result["score_reward"]) <= 1e-5
    assert abs(result["verl_classify_reward"] - result["score_reward"]) <= 1e-5  # the raw reward
    (best, top), (_, second) = result["rerank"]
    assert top >= second and abs(top - result["score_pair_rewards"][best]) <= 1e-5
    assert result["max_difference_from_local"] <= 1e-5
