"""Shared fixtures: tiny models built locally (random init + tokenizer trained on the fly)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval_gpt4.jsonl.gz"


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> Path:
    """Llama-style causal LM with a ChatML chat template and its own pad token."""
    from rewardkit.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "lm")


@pytest.fixture(scope="session")
def tiny_lm_pad_eos(tmp_path_factory) -> Path:
    """Same architecture, no pad token: rewardkit pads with EOS (== end-of-turn), the pad == eos trap."""
    from rewardkit.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "lm_pad_eos", pad_token=False, seed=1)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    from rewardkit.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "bert", arch="bert")


@pytest.fixture(scope="session")
def synthetic_split():
    from rewardkit.synthetic import make_synthetic_preferences

    return make_synthetic_preferences(400, seed=0), make_synthetic_preferences(200, seed=1)


@pytest.fixture(scope="session")
def trained_rm(tiny_lm, synthetic_split, tmp_path_factory):
    """A BT reward model trained on the synthetic task, saved to disk: (rm, folder)."""
    from rewardkit import train_reward_model

    train, test = synthetic_split
    out = tmp_path_factory.mktemp("trained") / "rm"
    rm = train_reward_model(tiny_lm, train, out=out, epochs=3, lr=3e-3, batch_size=16, progress=False).model
    return rm, out


@pytest.fixture
def batch_shapes(monkeypatch) -> list[tuple[int, int]]:
    """The [batch, padded length] of every batch the scoring engine builds during the test, in order."""
    import rewardkit.scoring as scoring

    shapes: list[tuple[int, int]] = []
    real_collate = scoring.collate

    def recording_collate(*args, **kwargs):
        batch = real_collate(*args, **kwargs)
        shapes.append(tuple(batch.input_ids.shape))
        return batch

    monkeypatch.setattr(scoring, "collate", recording_collate)
    return shapes


@pytest.fixture(scope="session")
def hostile_env(tiny_lm, tmp_path_factory):
    """Models and files for the hostile-input tables (tests/hostile.py build_env)."""
    from tests.hostile import build_env

    return build_env(tiny_lm, tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="session")
def hostile_named(tmp_path_factory):
    """Models naming other folders, and mismatched weights (tests/hostile.py build_named)."""
    from tests.hostile import build_named

    return build_named(tmp_path_factory.mktemp("named"))
