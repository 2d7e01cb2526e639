"""Weights and model folders that are corrupt or do not match their architecture or base
(rewardkit.checkpoints, rewardkit.safetensors_io): one ``error:`` line naming the file or tensor."""

from __future__ import annotations

import json

import pytest
import torch

from rewardkit import BradleyTerryRM
from tests.hostile import check_case, out_of

# name -> (argv(env), inputs(env), output(env), error regex); env: tests.hostile.build_env
CASES = {
    "LoRA RM on another base": (
        lambda e: [
            "score",
            "--rm",
            e.d / "lora0",
            "--base-model",
            e.other_base,
            "--data",
            e.data,
            "--out",
            out_of(e),
        ],
        lambda e: [e.d / "lora0", e.other_base, e.data],
        out_of,
        r"lora0: LoRA model was trained on another base model than .*other_base",
    ),
    "LoRA merge on another base": (
        lambda e: ["merge", e.d / "lora0", e.d / "lora1", "--base-model", e.other_base, "-o", out_of(e)],
        lambda e: [e.d / "lora0", e.d / "lora1", e.other_base],
        out_of,
        r"lora0: LoRA model was trained on another base model",
    ),
    "truncated safetensors (score)": (
        lambda e: ["score", "--rm", e.d / "truncated", "--data", e.data, "--out", out_of(e)],
        lambda e: [e.d / "truncated"],
        out_of,
        r"truncated/model.safetensors: truncated: tensor",
    ),
    "flipped safetensors header (score)": (
        lambda e: ["score", "--rm", e.d / "flipped", "--data", e.data, "--out", out_of(e)],
        lambda e: [e.d / "flipped"],
        out_of,
        r"flipped/model.safetensors: corrupt safetensors header",
    ),
    "absurd safetensors header length (merge)": (
        lambda e: ["merge", e.d / "rm0", e.d / "absurd", "-o", out_of(e)],
        lambda e: [e.d / "absurd"],
        out_of,
        r"absurd/model.safetensors: corrupt safetensors header \(length",
    ),
    "truncated safetensors (merge)": (
        lambda e: ["merge", e.d / "rm0", e.d / "truncated", "-o", out_of(e)],
        lambda e: [e.d / "truncated"],
        out_of,
        r"truncated/model.safetensors: truncated",
    ),
    "bad config.json": (
        lambda e: ["score", "--rm", e.d / "badconfig", "--data", e.data, "--out", out_of(e)],
        lambda e: [e.d / "badconfig"],
        out_of,
        r"badconfig/config.json: invalid JSON",
    ),
    "no tokenizer files": (
        lambda e: ["score", "--rm", e.d / "notok", "--data", e.data, "--out", out_of(e)],
        lambda e: [e.d / "notok"],
        out_of,
        r"notok: no tokenizer files",
    ),
    "model folder that does not exist": (
        lambda e: ["train", "explicit", "--model", e.d / "nope", "--data", e.data, "--out", out_of(e)],
        lambda e: [e.data],
        out_of,
        r"nope: model folder not found",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_error_line_and_touches_nothing(hostile_env, name, capsys):
    check_case(CASES[name], hostile_env, capsys)


# name -> (argv(n), inputs(n), output(n), error regex); n: tests.hostile.build_named
NAMED_CASES = {
    "shard index pointing outside its folder": (
        lambda n: ["merge", n.d / "rm", n.d / "outside_index", "-o", n.d / "m"],
        lambda n: [n.d / "victim", n.d / "outside_index"],
        lambda n: n.d / "m",
        r"shard '../victim/model.safetensors' is not a file name beside the index",
    ),
    "missing reward head": (
        lambda n: ["score", "--rm", n.d / "no_head", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "no_head"],
        lambda n: n.d / "o.jsonl",
        r"no_head: 1 tensor\(s\) the architecture needs are not in the weights: score.weight",
    ),
    "missing layer tensor": (
        lambda n: ["score", "--rm", n.d / "no_layer_tensor", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "no_layer_tensor"],
        lambda n: n.d / "o.jsonl",
        r"needs are not in the weights: model.layers.1.mlp.up_proj.weight",
    ),
    "config declares a layer more than the weights": (
        lambda n: ["score", "--rm", n.d / "extra_layer", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "extra_layer"],
        lambda n: n.d / "o.jsonl",
        r"9 tensor\(s\) the architecture needs are not in the weights: model.layers.2",
    ),
    "float head relabelled I32": (
        lambda n: ["score", "--rm", n.d / "i32_head", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "i32_head"],
        lambda n: n.d / "o.jsonl",
        r"tensor 'score.weight' is I32: a model's weights are floating point",
    ),
    "merge from tensors sharing bytes": (
        lambda n: ["merge", n.d / "rm", n.d / "shared_bytes", "-o", n.d / "m"],
        lambda n: [n.d / "rm", n.d / "shared_bytes"],
        lambda n: n.d / "m",
        r"shared_bytes/model.safetensors: tensors .*input_layernorm.* overlap",
    ),
    "score tensors sharing bytes": (
        lambda n: ["score", "--rm", n.d / "shared_bytes", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "shared_bytes"],
        lambda n: n.d / "o.jsonl",
        r"tensors .*input_layernorm.* overlap",
    ),
    "negative dimension": (
        lambda n: ["score", "--rm", n.d / "negative_dim", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "negative_dim"],
        lambda n: n.d / "o.jsonl",
        r"entry for tensor 'score.weight' \(shape and data_offsets must be non-negative integers\)",
    ),
    "fractional dimension": (
        lambda n: ["merge", n.d / "rm", n.d / "fractional_dim", "-o", n.d / "m"],
        lambda n: [n.d / "fractional_dim"],
        lambda n: n.d / "m",
        r"entry for tensor 'score.weight' \(shape and data_offsets must be non-negative integers\)",
    ),
    "trailing bytes": (
        lambda n: ["score", "--rm", n.d / "trailing_bytes", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "trailing_bytes"],
        lambda n: n.d / "o.jsonl",
        r"8 bytes after the last tensor \(trailing data\)",
    ),
    "LoRA adapter only as a pickle": (
        lambda n: ["score", "--rm", n.d / "only_bin", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "only_bin"],
        lambda n: n.d / "o.jsonl",
        r"without adapter_model.safetensors \(only adapter_model.bin: rewardkit never unpickles",
    ),
    "LoRA manifest without a base fingerprint": (
        lambda n: ["score", "--rm", n.d / "fp_null", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "fp_null", n.base],
        lambda n: n.d / "o.jsonl",
        r"records no base_fingerprint, so .*base cannot be checked",
    ),
    "base differing only in its last value": (
        lambda n: [
            "score",
            "--rm",
            n.d / "lora0",
            "--base-model",
            n.d / "base_lastval",
            "--data",
            n.data,
            "--out",
            n.d / "o.jsonl",
        ],
        lambda n: [n.d / "lora0", n.d / "base_lastval"],
        lambda n: n.d / "o.jsonl",
        r"trained on another base model than .*base_lastval",
    ),
}


@pytest.mark.parametrize("name", list(NAMED_CASES))
def test_inputs_named_inside_models_and_honest_weights(hostile_named, name, capsys):
    check_case(NAMED_CASES[name], hostile_named, capsys)


def test_base_fingerprint_follows_the_weights_not_the_config_text(tiny_lm, tmp_path):
    import shutil

    from rewardkit.checkpoints import base_fingerprint

    copy = tmp_path / "copy"
    shutil.copytree(tiny_lm, copy)
    cfg = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(cfg, indent=4, sort_keys=True))  # re-saved, same model
    assert base_fingerprint(copy) == base_fingerprint(tiny_lm)


def test_a_new_head_on_a_base_may_drop_its_pretraining_heads_but_not_backbone_tensors(tmp_path):
    from safetensors.torch import load_file, save_file

    from rewardkit import ModelError
    from rewardkit.tiny import build_tiny_model

    base = build_tiny_model(tmp_path / "base", seed=5)
    sd = load_file(base / "model.safetensors")
    sd["cls.predictions.bias"] = torch.zeros(3)  # e.g. an MLM head: not part of a reward model
    save_file(sd, base / "model.safetensors", metadata={"format": "pt"})
    rm = BradleyTerryRM.from_pretrained(base)
    assert rm.score(["q"], [" a"]).shape == (1,)
    sd["model.layers.7.mlp.up_proj.weight"] = torch.zeros(3)  # a layer config.json does not have
    save_file(sd, base / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelError, match=r"not in the architecture: model.layers.7.mlp.up_proj.weight"):
        BradleyTerryRM.from_pretrained(base)


def test_legacy_mask_buffers_are_not_mistaken_for_weights(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    from rewardkit import ModelError
    from rewardkit.checkpoints import check_weight_file

    f = tmp_path / "model.safetensors"
    save_file(
        {"h.0.attn.bias": np.ones((1, 1, 4, 4), dtype=bool), "h.0.mlp.weight": np.ones(2, np.float32)}, f
    )
    assert set(check_weight_file(f)) >= {"h.0.attn.bias", "h.0.mlp.weight"}
    save_file({"h.0.mlp.bias": np.ones(2, np.int32)}, f)
    with pytest.raises(ModelError, match="tensor 'h.0.mlp.bias' is I32"):
        check_weight_file(f)
