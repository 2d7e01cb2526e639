"""Each RL client's exact request against a real `rewardkit serve`, compared with rewardkit's own float32
scoring of the same conversations: verl's vLLM and SGLang reward paths, SGLang's /classify, vLLM's
/score and /rerank, and TRL's GRPOTrainer reward call through RemoteRewardModel."""

from __future__ import annotations

import math

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from rewardkit import BradleyTerryRM, LengthPenalizedRM, RemoteRewardModel, load_reward_model  # noqa: E402
from tests.test_serve import server  # noqa: E402

CONVS = [
    ("tell me about pasta", "good clear answer"),
    ("explain the star", "bad"),
    ("why is the sky blue", "the sky is blue because good"),
]


@pytest.fixture(scope="module")
def bos_rm(tmp_path_factory):
    """A reward model whose tokenizer adds BOS and whose chat template writes it (Llama-3's setting)."""
    from rewardkit.tiny import build_tiny_model

    d = tmp_path_factory.mktemp("clients")
    BradleyTerryRM.from_pretrained(build_tiny_model(d / "base", bos=True), head_seed=11).save(d / "rm")
    return d / "rm"


def _chat(user: str, response: str) -> list[dict]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": response}]


def test_verl_vllm_and_sglang_requests_get_the_raw_reward(bos_rm):
    """verl's RewardLoopWorker (verl/experimental/reward_loop/reward_loop.py): the RM tokenizer's chat
    template, BOS text stripped; vLLM: POST /classify {"model", "input", "activation": false}, reward =
    data[-1].probs[-1]; SGLang: POST /v1/embeddings {"model", "input"}, reward = data[-1].embedding[-1]."""
    local = load_reward_model(bos_rm)
    tok = local.tokenizer
    expected = local.score([_chat(u, r)[:1] for u, r in CONVS], [r for _, r in CONVS])
    name = str(bos_rm)
    with server("--rm", name) as (url, _):
        for (user, response), want in zip(CONVS, expected):
            rm_prompt = tok.apply_chat_template(
                _chat(user, response), add_generation_prompt=False, tokenize=False
            )
            assert rm_prompt.startswith(tok.bos_token)
            rm_prompt = rm_prompt[len(tok.bos_token) :]
            out = httpx.post(f"{url}/classify", json={"model": name, "input": rm_prompt, "activation": False})
            assert abs(out.json()["data"][-1]["probs"][-1] - want) <= 1e-5, out.text
            out = httpx.post(f"{url}/v1/embeddings", json={"model": name, "input": rm_prompt}).json()
            assert out["object"] == "list" and out["data"][-1]["object"] == "embedding"
            assert abs(out["data"][-1]["embedding"][-1] - want) <= 1e-5
            # vLLM >= 0.11.2's name, and the default: the sigmoid of the reward
            raw = httpx.post(f"{url}/classify", json={"input": rm_prompt, "use_activation": False}).json()
            assert abs(raw["data"][0]["probs"][0] - want) <= 1e-5
            act = httpx.post(f"{url}/classify", json={"input": rm_prompt}).json()
            assert abs(act["data"][0]["probs"][0] - 1 / (1 + math.exp(-want))) <= 1e-6
        # SGLang's native /classify (Skywork's recipe): {"text": [templated]} -> [{"embedding": [r]}]
        texts = [tok.apply_chat_template(_chat(u, r), tokenize=False)[len(tok.bos_token) :] for u, r in CONVS]
        items = httpx.post(f"{url}/classify", json={"model": name, "text": texts}).json()
        np.testing.assert_allclose([x["embedding"][0] for x in items], expected, atol=1e-5)
        one = httpx.post(f"{url}/classify", json={"text": texts[0]}).json()
        assert abs(one["embedding"][0] - expected[0]) <= 1e-5 and one["meta_info"]["prompt_tokens"] > 0
        pooled = httpx.post(f"{url}/pooling", json={"input": texts, "task": "classify"}).json()
        np.testing.assert_allclose(
            [d["data"][0] for d in pooled["data"]], 1 / (1 + np.exp(-expected)), atol=1e-6
        )
        refusals = [
            ("/classify", {"input": "x", "activation": False, "use_activation": True}, "disagree"),
            ("/pooling", {"input": "x", "normalize": True}, "field 'normalize'"),
            ("/pooling", {"input": "x", "task": "embed"}, "field 'task'"),
            ("/classify", {"input": "x", "truncate_prompt_tokens": 8}, "field 'truncate_prompt_tokens'"),
            ("/classify", {"input": "x", "truncation_side": "right"}, "field 'truncation_side'"),
            ("/classify", {"input": [True, 3]}, "field 'input"),  # JSON true is no token id
            ("/classify", {"text": "x", "input": "x"}, "not both"),
            ("/v1/embeddings", {"input": "x", "dimensions": 4}, "field 'dimensions'"),
        ]
        for path, body, message in refusals:
            r = httpx.post(f"{url}{path}", json=body)
            err = r.json()["error"]
            assert r.status_code == 400 and message in err["message"], (path, r.text)
            assert err["type"] == "BadRequestError" and err["code"] == 400
        ok = httpx.post(
            f"{url}/classify", json={"input": "x", "truncate_prompt_tokens": -1, "truncation_side": "left"}
        )
        assert ok.status_code == 200


def test_vllm_score_and_rerank_equal_rewardkit_score(bos_rm):
    local = load_reward_model(bos_rm)
    query, docs = "tell me about pasta", ["good clear answer", "bad", "the sky is blue because good"]
    expected = local.score([query] * 3, docs)
    name = str(bos_rm)
    with server("--rm", name) as (url, _):
        for path in ("/score", "/v1/score"):
            for a, b in (("queries", "documents"), ("data_1", "data_2"), ("text_1", "text_2")):
                out = httpx.post(f"{url}{path}", json={"model": name, a: query, b: docs}).json()
                assert out["object"] == "list" and out["id"].startswith("score-"), out
                assert [d["index"] for d in out["data"]] == [0, 1, 2] and out["data"][0]["object"] == "score"
                np.testing.assert_allclose([d["score"] for d in out["data"]], expected, atol=1e-5)
        pairwise = httpx.post(
            f"{url}/score", json={"text_1": [query, "explain the star"], "text_2": docs[:2]}
        )
        want = local.score([query, "explain the star"], docs[:2])
        np.testing.assert_allclose([d["score"] for d in pairwise.json()["data"]], want, atol=1e-5)
        own = httpx.post(
            f"{url}/score", json={"prompts": [query] * 3, "responses": docs}
        ).json()  # rewardkit's
        np.testing.assert_allclose(own["rewards"], expected, atol=1e-5)
        sig = httpx.post(f"{url}/score", json={"queries": query, "documents": docs, "use_activation": True})
        np.testing.assert_allclose(
            [d["score"] for d in sig.json()["data"]], 1 / (1 + np.exp(-expected)), atol=1e-6
        )
        best = np.argsort(-expected)
        for path in ("/rerank", "/v1/rerank", "/v2/rerank"):
            out = httpx.post(
                f"{url}{path}", json={"model": name, "query": query, "documents": docs, "top_n": 2}
            ).json()
            assert [x["index"] for x in out["results"]] == list(best[:2]), out
            for x in out["results"]:
                assert x["document"]["text"] == docs[x["index"]]
                assert abs(x["relevance_score"] - expected[x["index"]]) <= 1e-5
            assert out["usage"]["total_tokens"] > 0
        refusals = [
            ("/score", {"prompts": ["x"], "responses": ["y"], "text_1": "x", "text_2": "y"}, 400, "not both"),
            ("/score", {"text_1": ["a", "b"], "text_2": ["c", "d", "e"]}, 400, "2 and 3 items"),
            ("/score", {"queries": "a"}, 400, "go together"),
            ("/rerank", {"query": "a", "documents": ["b"], "model": "other"}, 404, "field 'model'"),
            ("/v1/rerank", {"query": "a", "documents": ["b"], "top_n": -1}, 400, "field 'top_n'"),
            ("/nowhere", {}, 404, "no route /nowhere"),
        ]
        for path, body, status, message in refusals:
            r = httpx.post(f"{url}{path}", json=body)
            err = r.json()["error"]
            assert r.status_code == status == err["code"] and message in err["message"], (path, r.text)
            assert set(err) == {"message", "type", "param", "code"}
        r = httpx.get(f"{url}/score")
        assert r.status_code == 405 and r.json()["error"]["type"] == "MethodNotAllowedError"


def _grpo_trainer(tmp_path, base, reward):
    import datasets
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), report_to=[], use_cpu=True, bf16=False,
                      per_device_train_batch_size=2, num_generations=2, max_completion_length=4,
                      disable_tqdm=True)  # fmt: skip
    return GRPOTrainer(model=str(base), reward_funcs=[reward], args=args,
                       train_dataset=datasets.Dataset.from_list([{"prompt": "tell me"}] * 2))  # fmt: skip


def test_trl_grpo_step_with_64_long_completions_through_the_server(tmp_path):
    """GRPOTrainer._calculate_rewards (TRL 1.16) with RemoteRewardModel as its reward function: 64
    completions of 2048 tokens, their completion_ids (131072 ints: over the server's JSON-value limit if
    sent), a numpy column and an object column JSON cannot carry; requests bounded to 256KB. Then a
    length-penalised server reads the reference column, which the client sends because /info names it."""
    from rewardkit.tiny import build_tiny_model

    base = build_tiny_model(tmp_path / "base", seed=6, bpe=True, pad_token=False)
    BradleyTerryRM.from_pretrained(base, head_seed=3).save(tmp_path / "rm")
    local = load_reward_model(tmp_path / "rm")
    n = 64
    completions = [" good clear answer" * (680 + i) for i in range(n)]
    lengths = [len(local.tokenizer(c)["input_ids"]) for c in completions]
    assert min(lengths) >= 2048, min(lengths)
    prompts = ["tell me about pasta"] * n
    refs = ["a reference answer of some length " * (1 + i % 3) for i in range(n)]
    inputs = [{"prompt": p, "completion": c, "reference": r, "weight": np.float32(i), "image": object()}
              for i, (p, c, r) in enumerate(zip(prompts, completions, refs))]  # fmt: skip
    ids = [[5] * 2048 for _ in range(n)]
    # the tiny model's context is 512 tokens (8192 characters by default): allow a 4096-token RM's 65536
    args = ("--max-request-bytes", "256KB", "--max-sequence-chars", "65536")
    with server("--rm", str(tmp_path / "rm"), *args) as (url, _):
        remote = RemoteRewardModel(url)
        trainer = _grpo_trainer(tmp_path, base, remote)
        got = trainer._calculate_rewards(inputs, prompts, completions, ids)[:, 0].numpy()
        assert remote.info()["record_fields"] == []
    np.testing.assert_allclose(got, local(prompts=prompts, completions=completions), atol=1e-5)
    penalised = LengthPenalizedRM(local, length_penalty=0.5, reference="reference", unit="chars")
    penalised.save(tmp_path / "lp")
    with server("--rm", str(tmp_path / "lp"), *args) as (url, _):
        remote = RemoteRewardModel(url)
        assert remote.info()["record_fields"] == ["reference"]
        few = inputs[:4]
        got = remote(prompts=prompts[:4], completions=completions[:4], completion_ids=ids[:4],
                     **{k: [x[k] for x in few] for k in ("reference", "weight", "image")})  # fmt: skip
    want = penalised(prompts=prompts[:4], completions=completions[:4], reference=refs[:4])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(np.array(want) - local(prompts=prompts[:4], completions=completions[:4])).min() > 1e-3
