"""checkpoints.py: model folders checked before transformers sees them, base fingerprints, load reports."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import xxhash
from safetensors.numpy import save_file

from rewardkit.checkpoints import (
    base_fingerprint,
    check_base,
    check_finite_weights,
    check_load_report,
    check_model_folder,
    check_weight_file,
    prepare_tokenizer,
)
from rewardkit.errors import ModelError


def _model(folder, tensors=None, config=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config or {"model_type": "x"}))
    save_file(tensors or {"w.weight": np.arange(4, dtype=np.float32)}, str(folder / "model.safetensors"))
    return folder


def test_model_folders_are_checked_in_one_line(tmp_path):
    assert check_model_folder(_model(tmp_path / "ok")) == tmp_path / "ok"
    cases = []
    (tmp_path / "file").write_text("")
    cases.append((tmp_path / "file", "is a file, expected a model folder"))
    cases.append((tmp_path / "missing", "model folder not found"))
    (tmp_path / "empty").mkdir()
    cases.append((tmp_path / "empty", "no config.json: not a model folder"))
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "pytorch_model.bin").write_bytes(b"")
    cases.append((pickled, r"no safetensors weights \(only pytorch_model.bin: rewardkit never unpickles"))
    bad = _model(tmp_path / "badjson")
    (bad / "config.json").write_text("{")
    cases.append((bad, "config.json: invalid JSON"))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    cases.append((adapter, "LoRA adapter without adapter_model.safetensors"))
    sharded = _model(tmp_path / "sharded")
    (sharded / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w.weight": "part2.safetensors"}})
    )
    cases.append((sharded, "lists part2.safetensors, which is missing"))
    for path, message in cases:
        with pytest.raises(ModelError, match=message) as e:
            check_model_folder(path)
        assert "\n" not in str(e.value)


def test_integer_weights_are_a_mislabelled_header_but_mask_buffers_are_not(tmp_path):
    f = tmp_path / "m.safetensors"
    save_file({"h.attn.bias": np.ones((2, 2), dtype=np.bool_), "w.weight": np.ones(2, np.float16)}, str(f))
    assert set(check_weight_file(f)) >= {"h.attn.bias", "w.weight"}
    save_file({"w.weight": np.ones(2, np.int64)}, str(f))
    with pytest.raises(ModelError, match="tensor 'w.weight' is I64: a model's weights are floating point"):
        check_weight_file(f)


def test_base_fingerprint_is_every_weight_byte(tmp_path):
    base = _model(tmp_path / "base", {"x": np.array([1.0, 2.0], np.float32)})
    h = xxhash.xxh3_128()
    h.update(b"x|F32|[2]")
    h.update(np.array([1.0, 2.0], np.float32).tobytes())
    assert base_fingerprint(base) == "xxh3-full:" + h.hexdigest()
    same = _model(tmp_path / "same", {"x": np.array([1.0, 2.0], np.float32)}, config={"model_type": "other"})
    assert base_fingerprint(same) == base_fingerprint(base)  # re-saved weights, another config
    other = _model(tmp_path / "other", {"x": np.array([1.0, 2.0000002], np.float32)})
    assert base_fingerprint(other) != base_fingerprint(base)
    check_base(tmp_path / "lora", base_fingerprint(base), same)
    with pytest.raises(ModelError, match=f"trained on another base model than {other}"):
        check_base(tmp_path / "lora", base_fingerprint(base), other)
    with pytest.raises(ModelError, match="records no base_fingerprint"):
        check_base(tmp_path / "lora", None, base, required=True)
    check_base(tmp_path / "lora", None, base)  # a folder rewardkit did not write: nothing to check


def test_load_reports_must_match_the_architecture():
    check_load_report({"missing_keys": [], "unexpected_keys": []}, "m")
    with pytest.raises(ModelError, match=r"m: 2 tensor\(s\) the architecture needs .*: a.weight, b.weight"):
        check_load_report({"missing_keys": ["b.weight", "a.weight"]}, "m")
    with pytest.raises(ModelError, match="not in the architecture: extra"):
        check_load_report({"unexpected_keys": ["extra"]}, "m")
    with pytest.raises(ModelError, match="shapes the architecture does not have: score.weight"):
        check_load_report({"mismatched_keys": [("score.weight", (1, 2), (2, 2))]}, "m")
    # a fresh reward head on a pretrained LM: its head is new and its LM head is dropped
    model = SimpleNamespace(base_model_prefix="model")
    check_load_report(
        {"missing_keys": ["score.weight"], "unexpected_keys": ["lm_head.weight"]},
        "m",
        new_head=True,
        model=model,
    )
    with pytest.raises(ModelError, match="model.layers.0.w"):
        check_load_report({"unexpected_keys": ["model.layers.0.w"]}, "m", new_head=True, model=model)


def test_prepare_tokenizer_pads_right_with_eos_else_unk():
    tok = prepare_tokenizer(
        SimpleNamespace(pad_token_id=None, eos_token="</s>", unk_token="<unk>", padding_side="left")
    )
    assert (tok.pad_token, tok.padding_side) == ("</s>", "right")
    tok = prepare_tokenizer(
        SimpleNamespace(pad_token_id=None, eos_token=None, unk_token="<unk>", padding_side="left")
    )
    assert tok.pad_token == "<unk>"
    with pytest.raises(ModelError, match="no pad, eos or unk token"):
        prepare_tokenizer(SimpleNamespace(pad_token_id=None, eos_token=None, unk_token=None))


def test_non_finite_weights_are_never_saved():
    layer = torch.nn.Linear(3, 2)
    check_finite_weights(layer, "rm")
    with torch.no_grad():
        layer.weight[0, :2] = float("nan")
    with pytest.raises(
        ModelError, match=r"rm: 1 weight tensor\(s\) hold NaN or infinite values: weight \(2 of 6\)"
    ):
        check_finite_weights(layer, "rm")
