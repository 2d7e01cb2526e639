"""bf16 training on CPU (rewardkit/train/precision.py): frozen weights stored in bf16 for the run and
given back unchanged, eager attention for short runs, one precision for DPO's reference pass and its
training forward, and the command line's ``--dtype auto`` rule for training."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import TrainerCallback

from rewardkit import train_dpo, train_reward_model
from rewardkit.train.precision import EAGER_MAX_TOKENS, attention_for, cpu_bf16, frozen_weights_in


class _Dtypes(TrainerCallback):
    """The dtypes of the model's frozen linear weights and of its trainable parameters at each step."""

    def __init__(self):
        self.seen: list[tuple[set, set]] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        from rewardkit.train.precision import _castable

        trainable = {p.dtype for p in model.parameters() if p.requires_grad}
        self.seen.append(({p.dtype for p in _castable(model)}, trainable))  # frozen linear weights
        self.attention = _impls(model)


def _lora_lm(tiny_lm):
    from rewardkit.adapters import add_lora
    from rewardkit.models.implicit import load_causal_lm

    return add_lora(load_causal_lm(tiny_lm, "cpu", torch.float32), 4, None, 0.0, task="CAUSAL_LM", seed=0)


def test_frozen_weights_in_casts_frozen_linear_weights_only_and_gives_the_originals_back(tiny_lm):
    model = _lora_lm(tiny_lm)
    frozen = {n: p.data for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n: p.data for n, p in model.named_parameters() if p.requires_grad}
    linear = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    castable = {n for n in frozen if n.rsplit(".", 1)[0] in linear} - {"base_model.model.lm_head.weight"}
    assert frozen and trainable and castable and len(castable) < len(frozen)
    with frozen_weights_in(model, torch.bfloat16) as n_cast:
        assert n_cast == len(castable)
        for n, p in model.named_parameters():
            # embeddings (the LM head is tied to them here) and norms keep float32: the residual stream too
            assert p.dtype == (torch.bfloat16 if n in castable else torch.float32), n
            if n in castable:  # the same values, rounded
                torch.testing.assert_close(p.data.float(), frozen[n], atol=0, rtol=2**-8)
        ids = torch.randint(5, model.config.vocab_size, (1, 6))
        with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
            hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
        assert {h.dtype for h in hidden} == {torch.float32}  # the residual stream keeps float32
    for n, p in model.named_parameters():
        original = (frozen | trainable)[n]  # the very storage, not a copy back from bf16
        assert p.dtype == torch.float32 and p.data_ptr() == original.data_ptr()
    with pytest.raises(RuntimeError, match="boom"), frozen_weights_in(model, torch.bfloat16):
        raise RuntimeError("boom")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with frozen_weights_in(model, torch.bfloat16, enabled=False) as n_cast:
        assert n_cast == 0 and all(p.dtype == torch.float32 for p in model.parameters())


def test_checkpoints_of_a_bf16_cpu_run_hold_the_original_weights(tiny_lm, synthetic_split, tmp_path):
    """A linear-probe phase freezes the backbone, which a bf16 CPU run holds in bf16: its checkpoints
    still hold the float32 weights (and config), as a float32 run's would."""
    import json

    from safetensors import safe_open

    train, _ = synthetic_split
    out = tmp_path / "rm"
    train_reward_model(
        tiny_lm, train[:64], out=out, epochs=1, lp_epochs=1, lr=1e-3, batch_size=16, bf16=True,
        save_checkpoints=True, logging_steps=10**6, progress=False,
    )
    files = sorted((out / "checkpoints" / "linear-probe").glob("checkpoint-*/model.safetensors"))
    assert files
    with safe_open(str(files[-1]), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes == {"F32"}
    assert json.loads((files[-1].parent / "config.json").read_text()).get("dtype") in (None, "float32")


def test_dpo_eval_longer_than_the_eager_limit_keeps_one_attention(tiny_lm, synthetic_split, monkeypatch):
    """Train sequences under the eager-attention limit, eval sequences over it: the reference pass and
    training decide by the same (longest of both) length, so step 0's log-ratios are still exactly 0."""
    import rewardkit.train.precision as precision
    from rewardkit.data import PreferenceDataset
    from rewardkit.records import PreferencePair

    train, test = synthetic_split
    long_eval = PreferenceDataset(
        [PreferencePair(p.prompt, p.chosen * 6, p.rejected * 6) for p in test[:8]]
    )
    monkeypatch.setattr(precision, "EAGER_MAX_TOKENS", 40)  # above the train pairs, below the eval ones
    trained = train_dpo(
        tiny_lm, train[:16], eval_data=long_eval, epochs=1, lr=1e-3, beta=0.1, batch_size=8, lora_r=4,
        bf16=True, dtype="float32", logging_steps=1, progress=False, max_length=256,
    )
    assert trained.record.first_loss == pytest.approx(math.log(2), abs=1e-6)


def _impls(model) -> set[str]:
    from transformers import PreTrainedModel

    return {m.config._attn_implementation for m in model.modules() if isinstance(m, PreTrainedModel)}


def test_attention_for_switches_short_runs_to_eager_and_back(tiny_lm):
    """Eager attention inside the block for a short run (same outputs as SDPA, fp32), nothing for a
    long one or when disabled; each model's own implementation afterwards."""
    model = _lora_lm(tiny_lm).eval()
    ids = torch.randint(5, model.config.vocab_size, (2, 12))
    with torch.no_grad():
        want = model(input_ids=ids).logits
        assert _impls(model) == {"sdpa"}
        with attention_for(model, EAGER_MAX_TOKENS) as n:
            assert n >= 1 and _impls(model) == {"eager"}
            torch.testing.assert_close(model(input_ids=ids).logits, want, atol=1e-5, rtol=1e-5)
        assert _impls(model) == {"sdpa"}
        for longest, enabled in ((EAGER_MAX_TOKENS + 1, True), (8, False)):
            with attention_for(model, longest, enabled) as n:
                assert n == 0 and _impls(model) == {"sdpa"}
    with pytest.raises(RuntimeError, match="boom"), attention_for(model, 8):
        raise RuntimeError("boom")
    assert _impls(model) == {"sdpa"}
    assert cpu_bf16(True, "cpu") and not cpu_bf16(True, "cuda") and not cpu_bf16(False, "cpu")


def test_lora_rm_bf16_training_on_cpu_learns_with_bf16_frozen_weights(tiny_lm, synthetic_split):
    """A LoRA RM trained in bf16 on CPU: the base is bf16 while it trains (LoRA and head fp32), fp32
    again afterwards; it learns the synthetic task as well as the float32 run (held-out accuracy)."""
    train, test = synthetic_split
    accs = {}
    for bf16 in (False, True):
        seen = _Dtypes()
        rm = train_reward_model(
            tiny_lm, train, epochs=2, lr=3e-3, batch_size=16, lora_r=8, bf16=bf16, callbacks=[seen],
            logging_steps=10**6, progress=False,
        ).model
        frozen_dtype = torch.bfloat16 if bf16 else torch.float32
        assert seen.seen and all(f == {frozen_dtype} and t == {torch.float32} for f, t in seen.seen)
        assert seen.attention == ({"eager"} if bf16 else {"sdpa"})
        assert {p.dtype for p in rm.module.parameters()} == {torch.float32} and _impls(rm.module) == {"sdpa"}
        accs[bf16] = rm.score_pairs(test).accuracy()
    assert accs[False] > 0.8 and accs[True] > 0.8
    assert abs(accs[True] - accs[False]) <= 0.05


def test_lora_dpo_bf16_on_cpu_one_precision_for_reference_and_policy(tiny_lm, synthetic_split):
    """LoRA DPO in bf16 on CPU: the reference pass (adapter disabled) sees the same bf16 frozen weights
    and attention backend as the training forward, so step 0's log-ratios are exactly 0 (loss log 2)."""
    train, _ = synthetic_split
    seen = _Dtypes()
    trained = train_dpo(
        tiny_lm, train[:32], epochs=1, lr=1e-3, beta=0.1, batch_size=8, lora_r=4, bf16=True,
        dtype="float32", callbacks=[seen], logging_steps=1, progress=False,
    )
    rm = trained.model
    assert trained.record.first_loss == pytest.approx(math.log(2), abs=1e-6)
    assert all(f == {torch.bfloat16} for f, _ in seen.seen) and seen.attention == {"eager"}
    assert {p.dtype for p in rm.policy.parameters()} == {torch.float32} and _impls(rm.policy) == {"sdpa"}


@pytest.mark.parametrize("fast", [True, False])
def test_cli_train_dtype_auto_is_the_machine_rule(tiny_lm, synthetic_split, tmp_path, monkeypatch, capsys, fast):
    """``train --dtype auto`` trains in bf16 autocast where ``auto`` scores in bf16 (here: a CPU with
    fast bf16) and says which precision ran; ``--dtype float32`` stays fp32 on such a CPU."""
    import rewardkit.dtypes as ck
    from rewardkit.cli import main

    monkeypatch.setattr(ck, "cpu_has_fast_bf16", lambda: fast)
    data = tmp_path / "train.jsonl"
    synthetic_split[0].save_jsonl(data)
    for dtype, want in (("auto", fast), ("float32", False)):
        out = tmp_path / f"rm-{dtype}"
        main(["train", "explicit", "--model", str(tiny_lm), "--data", str(data), "--out", str(out),
              "--lora-r", "4", "--batch-size", "16", "--dtype", dtype])
        printed = capsys.readouterr().out
        assert ("in bfloat16 autocast;" if want else "in float32;") in printed, printed
