"""The ready-made client adapters (rewardkit.integrations) against a real server: OpenRLHF 0.11's own
SingleTurnAgentExecutor loading the reward-function file, and verl's call of a custom compute_score,
each compared with rewardkit's own float32 scoring."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

import rewardkit.integrations.openrlhf_reward as openrlhf_reward  # noqa: E402
from rewardkit import load_reward_model  # noqa: E402
from rewardkit.errors import DataError  # noqa: E402
from rewardkit.integrations import verl  # noqa: E402
from tests.test_serve import server  # noqa: E402
from tests.test_serve_rl import CONVERSATIONS, FakeEngine, _openrlhf_agent, bos_models  # noqa: E402, F401


def test_openrlhf_loads_the_reward_file_and_gets_the_http_reward(bos_models, monkeypatch):  # noqa: F811
    """OpenRLHF's executor given the .py path (its --reward.remote_url): the same rewards as its own HTTP
    client posting to /get_reward, and as rewardkit's scoring of the conversation."""
    agent = _openrlhf_agent()
    local = load_reward_model(bos_models / "rm")
    tok = local.tokenizer
    with server("--rm", str(bos_models / "rm")) as (url, _):
        monkeypatch.setenv("REWARDKIT_URL", url)
        by_file = agent.SingleTurnAgentExecutor(openrlhf_reward.__file__)
        assert by_file.reward_func is not None  # OpenRLHF took the file as a reward function
        by_http = agent.SingleTurnAgentExecutor(f"{url}/get_reward")
        for user, response in CONVERSATIONS:
            messages = [{"role": "user", "content": user}]
            prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            action = tok(response + tok.eos_token, add_special_tokens=False)["input_ids"]
            length = len(tok(prompt, add_special_tokens=False)["input_ids"]) + len(action)
            params = SimpleNamespace(max_tokens=len(action), logprobs=None)
            outs = [
                asyncio.run(ex.execute(prompt, "label", params, length, tok, FakeEngine(action)))
                for ex in (by_file, by_http)
            ]
            assert outs[0]["reward"] is not None and outs[0]["scores"] == outs[0]["reward"]
            np.testing.assert_allclose(outs[0]["reward"], outs[1]["reward"], atol=1e-6)
            np.testing.assert_allclose(outs[0]["reward"], local.score([messages], [response]), atol=1e-4)
        direct = openrlhf_reward.reward_func(["no template here"], [""], ["x"])
        assert set(direct) == {"rewards", "scores", "extra_logs"} and len(direct["rewards"]) == 1


def test_verl_compute_score_scores_the_conversation(bos_models):  # noqa: F811
    """verl's RemoteRewardManager.run_single calls compute_score(data_source=, solution_str=,
    ground_truth=, extra_info=, **reward_kwargs) with the response decoded without special tokens;
    extra_info is a dict whose values may be numpy object arrays (verl's non-tensor batch)."""
    local = load_reward_model(bos_models / "rm")
    with server("--rm", str(bos_models / "rm")) as (url, _):
        for user, response in CONVERSATIONS:
            chat = [{"role": "user", "content": user}]
            want = local.score([chat], [response])[0]
            extra = {"prompt": np.array(chat, dtype=object), "index": 3, "num_turns": None}
            got = verl.compute_score(data_source="d", solution_str=response, ground_truth="g", extra_info=extra,
                                     url=url, reward_router_address=None)  # fmt: skip
            assert set(got) == {"score"} and abs(got["score"] - want) <= 1e-5
            plain = verl.compute_score(
                "d", response, "g", {"question": user}, url=url, prompt_field="question"
            )
            assert abs(plain["score"] - local.score([user], [response])[0]) <= 1e-5
        with pytest.raises(DataError, match="extra_info\\['prompt'\\]"):
            verl.compute_score("d", "x", "g", {}, url=url)
