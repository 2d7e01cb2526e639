"""The token convention (``rewardkit.templating``): what a (prompt, response) becomes in token ids, where
the response starts, and the checks on what callers hand it."""

import numpy as np
import pytest

from rewardkit import BradleyTerryRM
from rewardkit.templating import Texts, common_prefix_length, completion_text, text_length


def test_chat_template_no_double_bos(tmp_path):
    from rewardkit.synthetic import vocabulary
    from rewardkit.tiny import build_tiny_model

    path = build_tiny_model(tmp_path / "m", words=vocabulary() + ["<s>"])
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    tok.add_special_tokens({"bos_token": "<s>"})
    tok.chat_template = "{{ bos_token }}" + tok.chat_template
    tok.save_pretrained(path)
    rm = BradleyTerryRM.from_pretrained(path)
    enc = rm.formatter.encode([{"role": "user", "content": "please tell me"}], "good")
    assert enc.ids.count(tok.bos_token_id) == 1 and enc.ids[0] == tok.bos_token_id


def test_response_boundary(tiny_lm):
    rm = BradleyTerryRM.from_pretrained(tiny_lm)
    enc = rm.formatter.encode([{"role": "user", "content": "tell me"}], "good answer")
    toks = rm.tokenizer.convert_ids_to_tokens(enc.ids)
    assert toks[enc.response_start - 2 : enc.response_start] == ["<|im_start|>", "assistant"]
    assert toks[enc.response_start :] == ["good", "<unk>", "<|im_end|>"]
    assert not enc.merged


def test_template_rendering_the_prompt_differently_starts_the_response_where_they_differ(tiny_lm):
    """A template whose generation prompt differs from how it renders the assistant turn: the response
    starts at the common prefix (TRL's rule) and the encoding is flagged, never silently misaligned."""
    rm = BradleyTerryRM.from_pretrained(tiny_lm)
    rm.tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}system{% endif %}"
    )
    rm.formatter = type(rm.formatter)(rm.tokenizer, None, "auto")
    enc = rm.formatter.encode([{"role": "user", "content": "tell me"}], "good")
    toks = rm.tokenizer.convert_ids_to_tokens(enc.ids)
    assert toks == ["user", "tell", "me", "assistant", "good"] and enc.response_start == 3 and enc.merged


def test_prompt_cache_is_bounded(tiny_lm, monkeypatch):
    import rewardkit.templating as templating

    monkeypatch.setattr(templating, "PROMPT_CACHE_SIZE", 3)
    rm = BradleyTerryRM.from_pretrained(tiny_lm)
    for i in range(10):
        rm.formatter.encode(f"tell me {'good ' * i}", " ok")
    assert len(rm.formatter._prompt_cache) == 3


def test_texts_refuse_a_string_where_a_list_is_expected():
    with pytest.raises(TypeError, match="prompts must be a list"):
        Texts.of("qq", [" a", " b"])
    with pytest.raises(TypeError, match="responses must be a list"):
        Texts.of(["q"], " a")
    with pytest.raises(TypeError, match=r"responses\[1\] must be a string"):
        Texts.of(["q", "q"], [" a", 3])
    with pytest.raises(ValueError, match="got 2 prompts but 1 responses"):
        Texts.of(["q", "q"], [" a"])
    t = Texts.of(("q",), (" a",))
    assert t.prompts == ["q"] and t.responses == [" a"] and len(t) == 1


def test_common_prefix_and_completions():
    assert common_prefix_length([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix_length([], [1]) == 0 and common_prefix_length([7, 8], [7, 8]) == 2
    assert (
        completion_text([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}])
        == "ab"
    )
    assert completion_text({"role": "assistant", "content": "x"}) == "x"
    with pytest.raises(TypeError):
        completion_text(3)


def test_text_length_units(tiny_lm):
    rm = BradleyTerryRM.from_pretrained(tiny_lm)
    texts = ["good answer", " tell me please", ""]
    np.testing.assert_array_equal(text_length(texts, "chars"), [11, 15, 0])
    np.testing.assert_array_equal(text_length(texts, "words"), [2, 3, 0])
    ids = [len(rm.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    np.testing.assert_array_equal(text_length(texts, "tokens", rm.tokenizer), ids)


def test_encoding_key_follows_settings_and_hashes_the_tokenizer_once(tiny_lm):
    rm = BradleyTerryRM.from_pretrained(tiny_lm)
    f = rm.formatter
    k1 = f.encoding_key
    digest = f._tokenizer_digest
    f._tokenizer_digest = "0" * 64  # the kept digest is what the key is built from: not recomputed
    assert f.encoding_key != k1
    f._tokenizer_digest = digest
    assert f.encoding_key == k1
    f.max_length = 5  # a setting changes the key
    assert f.encoding_key != k1
    f.max_length = None
    assert f.encoding_key == k1
    other = BradleyTerryRM.from_pretrained(tiny_lm, head_seed=3).formatter
    assert other.encoding_key == k1  # same tokenizer and settings: one shared encoding


def test_texts_own_the_pair_layout():
    """Texts.from_pairs lays out every chosen response, then every rejected; split_pairs cuts values of
    that layout back (rewards [2n], member rows [M, 2n], columns [2n, k]), checked by hand."""
    from rewardkit.records import PreferencePair

    pairs = [
        PreferencePair("p0", "c0", "r0"),
        PreferencePair("p1", "c1", "r1"),
        PreferencePair("p2", "c2", "r2"),
    ]
    texts = Texts.from_pairs(pairs)
    assert texts.prompts == ["p0", "p1", "p2"] * 2 and texts.responses == ["c0", "c1", "c2", "r0", "r1", "r2"]
    chosen, rejected = texts.split_pairs(np.array([1.0, 2.0, 3.0, 10.0, 20.0, 30.0]))
    assert chosen.tolist() == [1.0, 2.0, 3.0] and rejected.tolist() == [10.0, 20.0, 30.0]
    rows = np.arange(12.0).reshape(2, 6)  # two members
    c, r = texts.split_pairs(rows, axis=1)
    assert c.tolist() == [[0, 1, 2], [6, 7, 8]] and r.tolist() == [[3, 4, 5], [9, 10, 11]]
    c, r = texts.split_pairs(np.arange(12.0).reshape(6, 2))  # a [2n, k] column
    assert c.tolist() == [[0, 1], [2, 3], [4, 5]] and r.tolist() == [[6, 7], [8, 9], [10, 11]]
    with pytest.raises(ValueError, match="5 values along axis 0 for 3 pairs"):
        texts.split_pairs(np.zeros(5))
    with pytest.raises(ValueError, match="needs pair texts"):
        Texts(["p"], ["r"]).split_pairs(np.zeros(2))
