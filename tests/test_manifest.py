"""manifest.py: the rewardkit.json of a saved model, checked field by field, and the folders it names."""

import json
from pathlib import Path

import pytest

from rewardkit.errors import ModelError
from rewardkit.manifest import (
    FORMAT_VERSION,
    MANIFEST,
    member_folder,
    named_folder,
    read_manifest,
    reward_model_manifest,
    write_manifest,
)
from rewardkit.models.registry import model_dependencies


def _folder(root: Path, name: str, manifest: dict | None = None) -> Path:
    d = root / name
    d.mkdir(parents=True)
    if manifest is not None:
        (d / MANIFEST).write_text(json.dumps(manifest))
    return d


def test_round_trip_and_absent(tmp_path):
    write_manifest(tmp_path, {"kind": "explicit", "format": FORMAT_VERSION, "num_heads": 2, "lora": True})
    assert read_manifest(tmp_path) == {"kind": "explicit", "format": 1, "num_heads": 2, "lora": True}
    assert read_manifest(tmp_path / "nothing") is None


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"kind": 3}, "field 'kind' missing or not a string"),
        ({"kind": "x", "format": FORMAT_VERSION + 1}, "newer than this rewardkit understands"),
        ({"kind": "x", "format": True}, "'format' must be an integer"),
        ({"kind": "x", "num_heads": True}, "'num_heads' has the wrong type"),
        ({"kind": "x", "max_length": 0}, "'max_length' must be a positive integer"),
        ({"kind": "x", "beta": 0}, "'beta' must be a positive finite number"),
        (
            {"kind": "x", "uncertainty_penalty": -1},
            "'uncertainty_penalty' must be a non-negative finite number",
        ),
        ({"kind": "x", "lam": 1}, "field 'lam' was renamed 'uncertainty_penalty'"),
        ({"kind": "x", "alpha": 0.5}, "field 'alpha' was renamed 'length_penalty'"),
        ({"kind": "x", "reference": "/m"}, "field 'reference' was renamed 'ref_model'"),
        ({"kind": "x", "reduction": "max"}, "'reduction' must be one of sum, mean"),
        ({"kind": "x", "members": ["a", ""]}, "'members' must be a list of folder names"),
        ({"kind": "x", "weights": [1, -2]}, "'weights' must be a list of finite non-negative numbers"),
    ],
)
def test_each_bad_field_is_one_line_naming_it(tmp_path, fields, message):
    (tmp_path / MANIFEST).write_text(json.dumps(fields))
    with pytest.raises(ModelError, match=message) as e:
        read_manifest(tmp_path)
    assert str(e.value).startswith(str(tmp_path / MANIFEST)) and "\n" not in str(e.value)


def test_invalid_json_names_the_line(tmp_path):
    (tmp_path / MANIFEST).write_text('{"kind": "x",\n "beta": }')
    with pytest.raises(ModelError, match=r"rewardkit.json:2: invalid JSON"):
        read_manifest(tmp_path)


def test_an_hf_classifier_without_manifest_counts_as_explicit(tmp_path):
    d = _folder(tmp_path, "hf")
    (d / "config.json").write_text(json.dumps({"architectures": ["LlamaForSequenceClassification"]}))
    assert reward_model_manifest(d) == {"kind": "explicit", "format": FORMAT_VERSION}
    (d / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(ModelError, match="not an HF sequence-classification checkpoint"):
        reward_model_manifest(d)
    with pytest.raises(ModelError, match="reward model folder not found"):
        reward_model_manifest(tmp_path / "missing")


def test_named_folders_stay_inside(tmp_path):
    ens = _folder(tmp_path, "ens", {"kind": "ensemble"})
    _folder(ens, "m0")
    assert member_folder(ens, "m0") == (ens / "m0").resolve()
    with pytest.raises(ModelError, match="resolves outside the ensemble folder"):
        member_folder(ens, "../ens")
    with pytest.raises(ModelError, match="is an absolute path"):
        member_folder(ens, str(tmp_path))
    with pytest.raises(ModelError, match="member 'm9' not found"):
        member_folder(ens, "m9")
    assert named_folder(ens, "base_model", str(tmp_path / "b")) == (tmp_path / "b").resolve()
    with pytest.raises(ModelError, match="relative path that leaves the folder"):
        named_folder(ens, "ref_model", "../victim")


def test_model_dependencies_follow_every_named_folder(tmp_path):
    base, ref = _folder(tmp_path, "base"), _folder(tmp_path, "ref")
    outer = _folder(tmp_path, "outer", {"kind": "length_penalized", "model": "model"})
    ens = _folder(outer, "model", {"kind": "ensemble", "members": ["lora", "dpo"]})
    _folder(ens, "lora", {"kind": "explicit", "lora": True, "base_model": str(base)})
    _folder(ens, "dpo", {"kind": "implicit", "ref_model": str(ref)})
    got = model_dependencies(outer)
    assert set(got) == {p.resolve() for p in (outer, ens, ens / "lora", ens / "dpo", base, ref)}
    assert len(got) == len(set(got)) and got[0] == outer.resolve()
    # --base-model overrides the recorded base (of every member)
    other = _folder(tmp_path, "other")
    assert base.resolve() not in model_dependencies(outer, other) and other.resolve() in model_dependencies(
        outer, other
    )
    # an HF adapter folder names its base in adapter_config.json (read as peft reads it)
    adapter = _folder(tmp_path, "adapter")
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    assert model_dependencies(adapter) == [adapter.resolve(), base.resolve()]


def test_lora_base_precedence(tmp_path, monkeypatch):
    """The one rule for the base a LoRA folder needs: the caller's override, then rewardkit's manifest
    (inside the folder when relative), then peft's adapter_config.json (relative to the working
    directory, as peft reads it); nothing named: None."""
    from rewardkit.manifest import lora_base

    monkeypatch.chdir(tmp_path)
    lora = _folder(tmp_path, "lora")
    assert lora_base(lora) is None
    (lora / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "hf_base"}))
    assert lora_base(lora) == tmp_path / "hf_base"  # 3. peft's record, from the working directory
    write_manifest(lora, {"kind": "explicit", "format": FORMAT_VERSION, "lora": True, "base_model": "inner"})
    assert lora_base(lora) == lora / "inner"  # 2. the manifest beats peft's record
    assert lora_base(lora, {}) == tmp_path / "hf_base"  # a manifest the caller read (here: none) is used
    assert lora_base(lora, override="given") == tmp_path / "given"  # 1. the override beats both
    write_manifest(lora, {"kind": "explicit", "format": FORMAT_VERSION, "base_model": "../outside"})
    with pytest.raises(ModelError, match="relative path that leaves the folder"):
        lora_base(lora)
    bad = _folder(tmp_path, "bad")
    (bad / "adapter_config.json").write_text("{not json")
    with pytest.raises(ModelError, match="adapter_config.json: invalid JSON"):
        lora_base(bad)
    (bad / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "a\0b"}))
    assert lora_base(bad) is None
    assert model_dependencies(lora, "given") == [lora.resolve(), tmp_path / "given"]


def test_model_dependencies_ask_each_kind(tmp_path, monkeypatch):
    """The folders followed are the ones the folder's kind declares (KindSpec, no kind imported): a
    registered kind's own field is followed, another kind's field in its manifest is not."""
    from rewardkit.models import registry

    monkeypatch.setattr(registry, "KINDS", dict(registry.KINDS))
    registry.register_kind("test_judged", "nowhere:Judged", folders=("judge",))
    judge = _folder(tmp_path, "judge")
    plug = _folder(tmp_path, "plug", {"kind": "test_judged", "judge": str(judge), "ref_model": str(tmp_path)})
    assert model_dependencies(plug) == [plug.resolve(), judge.resolve()]
    assert registry.KINDS["implicit"].folders == ("ref_model",) and registry.KINDS["ensemble"].models == ("members",)


def test_a_kind_that_declares_nothing_keeps_its_conventional_folders_protected(tmp_path, monkeypatch):
    """A plugin kind from an entry point (or a kind the registry does not know) declares no fields: its
    members and DPO reference are still followed, so a command never writes over them."""
    from rewardkit.models import registry

    monkeypatch.setattr(registry, "_ENTRY_POINTS_READ", True)  # no installed plugins read
    ref = _folder(tmp_path, "ref")
    ens = _folder(tmp_path, "ens", {"kind": "someone_elses", "members": ["m1", "m2"], "ref_model": str(ref)})
    m1, m2 = _folder(ens, "m1"), _folder(ens, "m2")
    got = model_dependencies(ens)
    assert set(got) == {ens.resolve(), m1.resolve(), m2.resolve(), ref.resolve()}
