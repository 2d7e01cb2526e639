"""rewardkit.serve.vllm: the vLLM / SGLang request rules, each checked on hand values (no model).

The routes end to end, against verl's and vLLM's own request shapes, are in test_serve_clients.py."""

from __future__ import annotations

import math

import pytest

from rewardkit.serve.limits import RequestError
from rewardkit.serve.schemas import VLLMRequest
from rewardkit.serve.vllm import (
    activation,
    check_model,
    check_truncation,
    input_texts,
    sigmoid,
    usage,
    vllm_texts,
)


class _Tok:
    """A 10-token vocabulary: id i decodes to the letter 'a' + i."""

    def __len__(self) -> int:
        return 10

    def decode(self, ids) -> str:
        return "".join(chr(ord("a") + i) for i in ids)


class _Formatter:
    tokenizer = _Tok()


def _status(fn, *args) -> tuple[int, str]:
    with pytest.raises(RequestError) as e:
        fn(*args)
    return e.value.status, str(e.value)


def test_sigmoid_is_vllms_activation_and_never_overflows():
    assert sigmoid(0.0) == 0.5
    assert sigmoid(2.0) == pytest.approx(0.8807970779778823, abs=1e-15)  # 1 / (1 + e^-2)
    assert sigmoid(-2.0) == pytest.approx(1 - 0.8807970779778823, abs=1e-15)
    assert sigmoid(-1000.0) == 0.0 and sigmoid(1000.0) == 1.0  # no OverflowError at either end
    assert math.isfinite(sigmoid(-745.0))


def test_activation_from_any_of_the_three_names():
    assert activation(VLLMRequest(input="x"), True) is True  # none given: the route's default
    assert activation(VLLMRequest(input="x"), False) is False
    assert activation(VLLMRequest(input="x", use_activation=False), True) is False
    assert activation(VLLMRequest(input="x", activation=True), False) is True  # vLLM <= 0.11.1 (verl)
    assert activation(VLLMRequest(input="x", softmax=False, use_activation=False), True) is False
    status, msg = _status(activation, VLLMRequest(input="x", softmax=True, use_activation=False), True)
    assert status == 400 and "disagree" in msg


def test_truncation_is_accepted_only_where_it_means_keep_the_last_tokens():
    check_truncation(VLLMRequest(input="x"), 512)
    check_truncation(VLLMRequest(input="x", truncate_prompt_tokens=-1), None)
    check_truncation(VLLMRequest(input="x", truncate_prompt_tokens=600), 512)  # at least the limit
    check_truncation(VLLMRequest(input="x", truncation_side="left"), 512)
    assert _status(check_truncation, VLLMRequest(input="x", truncate_prompt_tokens=100), 512)[0] == 400
    assert _status(check_truncation, VLLMRequest(input="x", truncate_prompt_tokens=100), None)[0] == 400
    assert _status(check_truncation, VLLMRequest(input="x", truncation_side="right"), 512)[0] == 400


def test_input_texts_of_strings_and_token_ids():
    t = input_texts("hello", True, None)
    assert (t.prompts, t.responses, t.raw, t.special_tokens) == ([""], ["hello"], True, True)
    t = input_texts(["a", "b"], False, None)
    assert (t.responses, t.special_tokens) == (["a", "b"], False)
    t = input_texts([0, 1, 2], True, _Formatter())  # one token-id list
    assert (t.ids, t.responses) == ([[0, 1, 2]], ["abc"])
    t = input_texts([[3], [4, 9]], True, _Formatter())
    assert (t.ids, t.responses) == ([[3], [4, 9]], ["d", "ej"])
    assert _status(input_texts, [[0, 10]], True, _Formatter()) == (
        400,
        "field 'input.0': token ids must be non-empty and in [0, 10)",
    )
    assert _status(input_texts, [[1], []], True, _Formatter())[1].startswith("field 'input.1'")
    assert (
        _status(input_texts, [[1]], True, None)[1]
        == "field 'input': token ids need a model with one tokenizer"
    )


def test_vllm_texts_of_a_conversation_scores_its_last_assistant_message():
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " hello"}]
    t = vllm_texts(VLLMRequest(messages=chat), None)
    assert t.prompts == [[{"role": "user", "content": "hi"}]] and t.responses == [" hello"] and not t.raw
    t = vllm_texts(VLLMRequest(input="x y", add_special_tokens=False), None)
    assert (t.responses, t.special_tokens) == (["x y"], False)
    assert vllm_texts(VLLMRequest(input="x"), None).special_tokens is True  # vLLM's default
    status, msg = _status(vllm_texts, VLLMRequest(messages=chat[:1]), None)
    assert status == 400 and "last message must be the assistant's" in msg
    status, msg = _status(vllm_texts, VLLMRequest(messages=chat, add_special_tokens=True), None)
    assert status == 400 and "add_special_tokens" in msg


def test_model_name_and_usage():
    check_model(None, "rm")
    check_model("rm", "rm")
    status, msg = _status(check_model, "other", "rm")
    assert status == 404 and "`other` does not exist" in msg
    assert usage([3, 4]) == {
        "prompt_tokens": 7,
        "total_tokens": 7,
        "completion_tokens": 0,
        "prompt_tokens_details": None,
    }
    assert usage(None)["prompt_tokens"] is None
