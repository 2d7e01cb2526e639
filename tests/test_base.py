"""The RewardModel contract: one hook (score_texts), concrete score / score_pairs / __call__, defaults
for what callers use, and the kind registry."""

import json

import numpy as np
import pytest

from rewardkit import ModelError, RewardModel, Texts, load_reward_model, register_kind
from rewardkit.accuracy import correctness, pairwise_accuracy
from rewardkit.data import PreferenceDataset
from rewardkit.models.registry import KINDS, kind_class
from rewardkit.records import PreferencePair


class LengthRM(RewardModel):
    """r = number of words in the response (a kind that implements only the hook)."""

    kind = "test_length_words"

    def score_texts(self, texts: Texts) -> np.ndarray:
        return np.array([len(r.split()) for r in texts.responses], dtype=np.float32)

    def save(self, path, *, force=False):
        from rewardkit.io import atomic_dir
        from rewardkit.manifest import write_manifest

        with atomic_dir(path, force=force) as tmp:
            write_manifest(tmp, self._manifest())

    @classmethod
    def _load(cls, path, manifest, **kwargs):
        return cls()


def test_one_hook_gives_every_entry_point():
    rm = LengthRM()
    assert rm.score(["q", "q"], ["a b", "a"]).tolist() == [2.0, 1.0]
    pairs = PreferenceDataset([PreferencePair("q", "a b c", "a"), PreferencePair("q", "a", "a b")])
    s = rm.score_pairs(pairs)
    assert s.chosen.tolist() == [3.0, 1.0] and s.rejected.tolist() == [1.0, 2.0] and s.accuracy() == 0.5
    assert rm(prompts=["q"], completions=[[{"role": "assistant", "content": "x y"}]]) == [2.0]
    rewards, extra = rm.score_columns(Texts.of(["q"], ["a b"]))
    assert rewards.tolist() == [2.0] and extra == {}
    assert rm.member_rows(Texts.of(["q"], ["a b"])).shape == (1, 1)
    assert (rm.members, rm.num_members, rm.formatter, rm.encoding_key, rm.named_inputs()) == (
        (),
        1,
        None,
        None,
        [],
    )
    assert rm.describe()["kind"] == "test_length_words"
    rm.configure(chat_template="never", max_tokens=10)  # nothing to configure: no error, no effect


def test_score_texts_is_the_abstract_hook():
    class Old(RewardModel):  # rewardkit 0.2's hook alone: not a whole reward model
        kind = "test_old"

        def score(self, prompts, responses):
            return np.ones(len(responses), dtype=np.float32)

        def save(self, path, *, force=False): ...

        @classmethod
        def _load(cls, path, manifest, **kwargs): ...

    with pytest.raises(TypeError, match="score_texts"):
        Old()


def test_tie_credit_is_defined_once():
    m = np.array([1.0, 0.0, -2.0, 0.0])
    assert correctness(m, "half").tolist() == [1.0, 0.5, 0.0, 0.5]
    assert correctness(m, "wrong").tolist() == [1.0, 0.0, 0.0, 0.0]
    assert pairwise_accuracy(m, "correct") == 0.75
    with pytest.raises(ValueError):
        correctness(m, "maybe")


def test_registry_loads_registered_kinds_and_names_unknown_ones(tmp_path):
    assert kind_class("explicit").__name__ == "BradleyTerryRM" and "ensemble" in KINDS
    register_kind("test_length_words", f"{__name__}:LengthRM")
    LengthRM().save(tmp_path / "m")
    assert isinstance(load_reward_model(tmp_path / "m"), LengthRM)
    with pytest.raises(ModelError, match="already registered"):
        register_kind("explicit", "elsewhere:Other")
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / "rewardkit.json").write_text(json.dumps({"kind": "nope", "format": 1}))
    with pytest.raises(ModelError, match=r"unknown kind 'nope'; known: \[.*'explicit'"):
        load_reward_model(tmp_path / "u")


def test_a_kind_is_found_by_the_registry_only(tmp_path):
    """Defining a class registers nothing (rewardkit 0.2 did): an unregistered kind is unknown."""
    from rewardkit.models.registry import KINDS

    class Declared(LengthRM):
        kind = "test_declared_only"

    assert "test_declared_only" not in KINDS
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "rewardkit.json").write_text(json.dumps({"kind": "test_declared_only", "format": 1}))
    with pytest.raises(ModelError, match="unknown kind 'test_declared_only'"):
        load_reward_model(tmp_path / "d")
    register_kind("test_broken", "no.such.module:Cls")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "rewardkit.json").write_text(json.dumps({"kind": "test_broken", "format": 1}))
    with pytest.raises(ModelError, match=r"kind 'test_broken': cannot import 'no.such.module:Cls'"):
        load_reward_model(tmp_path / "b")


def test_run_input_scopes_nest_by_identity(tmp_path):
    from rewardkit.io import protect, protected, run_inputs

    with run_inputs([tmp_path / "a"]) as outer:
        with run_inputs([tmp_path / "a"]) as inner:  # equal sets: the inner one must leave, not the outer
            assert inner == outer and inner is not outer
        protect([tmp_path / "b"])
        assert (tmp_path / "b").resolve() in outer and (tmp_path / "b").resolve() in protected()
    assert protected() == set()


def test_every_kind_saves_with_one_signature():
    import inspect

    def shape(fn):
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]

    want = shape(RewardModel.save)
    assert want[1:] == [("path", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
                        ("force", inspect.Parameter.KEYWORD_ONLY, False)]  # fmt: skip
    for kind in ("explicit", "implicit", "ensemble", "length_penalized", "remote"):
        assert shape(kind_class(kind).save) == want, kind
