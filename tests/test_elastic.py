"""Elastic Reset (Noukhovitch et al.) as a TrainerCallback: EMA by hand, resets, optimizer state, LoRA
memory, resume, refusals, and the CLI flags."""

from types import SimpleNamespace

import pytest
import torch

from rewardkit import ElasticResetCallback, train_reward_model


def _state(step):
    return SimpleNamespace(global_step=step, is_world_process_zero=True)


def _args(tmp_path, **kw):
    return SimpleNamespace(output_dir=str(tmp_path), fsdp="", deepspeed=None, **kw)


def test_ema_update_and_reset_by_hand(tmp_path):
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0]]))
    cb = ElasticResetCallback(reset_every=2, ema_decay=0.9)
    cb.on_train_begin(_args(tmp_path), _state(0), None, model=model)
    init = torch.tensor([[1.0, 2.0]])
    with torch.no_grad():  # "optimizer step" 1
        model.weight.copy_(torch.tensor([[3.0, 0.0]]))
    cb.on_step_end(_args(tmp_path), _state(1), None)
    ema1 = 0.9 * init + 0.1 * torch.tensor([[3.0, 0.0]])  # (1.2, 1.8)
    torch.testing.assert_close(cb.ema["weight"], ema1)
    torch.testing.assert_close(model.weight.detach(), torch.tensor([[3.0, 0.0]]))  # no reset yet
    with torch.no_grad():  # step 2: a reset step
        model.weight.copy_(torch.tensor([[5.0, 4.0]]))
    cb.on_step_end(_args(tmp_path), _state(2), None)
    ema2 = 0.9 * ema1 + 0.1 * torch.tensor([[5.0, 4.0]])  # (1.58, 2.02)
    torch.testing.assert_close(model.weight.detach(), ema2)  # online <- EMA
    torch.testing.assert_close(cb.ema["weight"], init)  # EMA <- initial
    assert cb.resets == 1


@pytest.mark.parametrize("mode", ["reset", "keep"])
def test_optimizer_state_at_a_reset(tmp_path, mode):
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    cb = ElasticResetCallback(reset_every=1, ema_decay=0.5, optimizer_state=mode)
    cb.on_train_begin(_args(tmp_path), _state(0), None, model=model)
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    cb.on_step_end(_args(tmp_path), _state(1), None, optimizer=opt)
    held = [p for p in model.parameters() if p in opt.state]
    assert (held == []) if mode == "reset" else len(held) == 2


def test_refusals(tmp_path):
    with pytest.raises(ValueError, match="reset_every"):
        ElasticResetCallback(reset_every=0)
    with pytest.raises(ValueError, match="ema_decay"):
        ElasticResetCallback(reset_every=2, ema_decay=1.0)
    cb = ElasticResetCallback(reset_every=2)
    with pytest.raises(ValueError, match="FSDP and DeepSpeed are refused"):
        cb.on_train_begin(
            SimpleNamespace(output_dir=str(tmp_path), fsdp="full_shard", deepspeed=None),
            _state(0),
            None,
            model=torch.nn.Linear(1, 1),
        )


def test_resuming_without_the_saved_copies_is_refused(tmp_path):
    (tmp_path / "checkpoint-4").mkdir()
    cb = ElasticResetCallback(reset_every=2)
    with pytest.raises(ValueError, match="resuming at step 4 without elastic_reset.safetensors"):
        cb.on_train_begin(_args(tmp_path), _state(4), None, model=torch.nn.Linear(1, 1))


def test_a_value_model_is_kept_while_the_policy_is_reset(tmp_path):
    """TRL's PPO trains ``PolicyAndValueWrapper(policy, value_model)``: Elastic Reset resets the policy
    and maintains the value function (Noukhovitch et al.)."""
    model = torch.nn.Module()
    model.policy, model.value_model = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.policy.weight.fill_(1.0)
        model.value_model.weight.fill_(1.0)
    cb = ElasticResetCallback(reset_every=1, ema_decay=0.5)
    cb.on_train_begin(_args(tmp_path), _state(0), None, model=model)
    assert list(cb.params) == ["policy.weight"]
    with torch.no_grad():
        model.policy.weight.fill_(3.0)
        model.value_model.weight.fill_(3.0)
    cb.on_step_end(_args(tmp_path), _state(1), None)
    assert model.policy.weight.item() == 2.0  # reset to the EMA 0.5 * 1 + 0.5 * 3
    assert model.value_model.weight.item() == 3.0  # kept


def test_in_training_lora_tracks_adapter_sized_copies_and_resumes(tiny_lm, synthetic_split, tmp_path):
    train = synthetic_split[0][:32]
    cb = ElasticResetCallback(reset_every=3, ema_decay=0.9)
    trained = train_reward_model(
        tiny_lm,
        train,
        lora_r=4,
        batch_size=8,
        epochs=2,
        lr=1e-3,
        out=tmp_path / "rm",
        save_checkpoints=True,
        callbacks=[cb],
        progress=False,
    )
    rm = trained.model
    assert trained.record.optimizer_steps == 8 and cb.resets == 2  # resets after steps 3 and 6
    trainable = sum(p.numel() for p in rm.module.parameters() if p.requires_grad)
    total = sum(p.numel() for p in rm.module.parameters())
    tracked = sum(t.numel() for t in cb.ema.values())
    assert tracked == trainable < total / 5  # adapters and head only
    assert all(t.device.type == "cpu" for t in cb.ema.values())
    saved = tmp_path / "rm" / "checkpoints" / "fine-tune" / "checkpoint-4" / "elastic_reset.safetensors"
    assert saved.is_file()
    resumed = ElasticResetCallback(reset_every=3, ema_decay=0.9)
    resumed.on_train_begin(
        SimpleNamespace(output_dir=str(saved.parents[1]), fsdp="", deepspeed=None),
        _state(4),
        None,
        model=rm.module,
    )
    from safetensors.torch import load_file

    blob = load_file(saved)
    for name, t in resumed.ema.items():
        torch.testing.assert_close(t, blob[f"ema.{name}"])


def test_cli_flags(tiny_lm, synthetic_split, tmp_path, capsys, monkeypatch):
    """--elastic-reset-every / --ema-decay reach the callback the trainer runs: its settings are the
    flags', and 4 optimizer steps with a reset every 2 reset twice."""
    from rewardkit.cli import main
    from rewardkit.train import elastic

    made = []

    class Recorded(elastic.ElasticResetCallback):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(elastic, "ElasticResetCallback", Recorded)
    data = tmp_path / "d.jsonl"
    synthetic_split[0][:16].save_jsonl(data)
    main(
        [
            "train",
            "explicit",
            "--model",
            str(tiny_lm),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "o"),
            "--batch-size",
            "4",
            "--elastic-reset-every",
            "2",
            "--ema-decay",
            "0.99",
        ]
    )
    assert "trained on 16 pairs in 4 steps" in capsys.readouterr().out
    assert len(made) == 1
    cb = made[0]
    assert (cb.reset_every, cb.ema_decay, cb.resets) == (2, 0.99, 2)
    assert cb.params and set(cb.ema) == set(cb.params)  # it tracked the trained parameters


class _Killed(BaseException):
    """A kill: nothing after it runs (no ``Exception``, so no clean-up)."""


def test_the_state_is_part_of_the_atomic_checkpoint_and_resume_restores_it_exactly(
    tiny_lm, synthetic_split, tmp_path, monkeypatch
):
    """A run killed right after checkpoint-8 is renamed into place (before the Trainer's ``on_save``)
    leaves a checkpoint that already holds the EMA, initial copies and reset count; resuming from it with
    a fresh callback ends where an uninterrupted run does, bit for bit: weights, EMA, initial copies and
    the 4 resets of 12 steps (after steps 3, 6, 9, 12)."""
    from safetensors.torch import load_file

    from rewardkit.train import snapshots
    from rewardkit.train.elastic import STATE_FILE

    train = synthetic_split[0][:32]
    kw = dict(epochs=3, lr=1e-3, batch_size=8, save_checkpoints=True, progress=False)
    full_cb = ElasticResetCallback(reset_every=3, ema_decay=0.9)
    full = train_reward_model(tiny_lm, train, out=tmp_path / "full", callbacks=[full_cb], **kw).model
    real_remove = snapshots.remove_path

    def remove(path, **kwargs):  # the staging folder's removal, after checkpoint-8 is in place
        if path.name == ".checkpoint-8.tmp" and path.exists():
            raise _Killed
        return real_remove(path, **kwargs)

    monkeypatch.setattr(snapshots, "remove_path", remove)
    with pytest.raises(_Killed):
        cb = ElasticResetCallback(reset_every=3, ema_decay=0.9)
        train_reward_model(tiny_lm, train, out=tmp_path / "cut", callbacks=[cb], **kw)
    monkeypatch.undo()
    saved = tmp_path / "cut" / "checkpoints" / "fine-tune" / "checkpoint-8" / STATE_FILE
    blob = load_file(saved)
    assert int(blob["resets"]) == 2 == cb.resets  # after steps 3 and 6
    assert all(torch.equal(blob[f"ema.{n}"], t) for n, t in cb.ema.items())

    resumed_cb = ElasticResetCallback(reset_every=3, ema_decay=0.9)
    resumed = train_reward_model(
        tiny_lm, train, out=tmp_path / "cut", resume=True, callbacks=[resumed_cb], **kw
    ).model
    a, b = full.module.state_dict(), resumed.module.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed_cb.resets == full_cb.resets == 4
    for copies, expect in ((resumed_cb.ema, full_cb.ema), (resumed_cb.init, full_cb.init)):
        assert copies.keys() == expect.keys() and all(torch.equal(copies[n], expect[n]) for n in copies)


def test_resets_are_counted_from_the_step_in_a_checkpoint_without_the_count(tmp_path):
    """A checkpoint from before the count was saved: ``global_step // reset_every`` resets so far."""
    from safetensors.torch import save_file

    model = torch.nn.Linear(1, 1, bias=False)
    (tmp_path / "checkpoint-7").mkdir()
    w = model.weight.detach().clone()
    save_file(
        {"ema.weight": w, "init.weight": w.clone()},
        str(tmp_path / "checkpoint-7" / "elastic_reset.safetensors"),
    )
    cb = ElasticResetCallback(reset_every=3)
    cb.on_train_begin(_args(tmp_path), _state(7), None, model=model)
    assert cb.resets == 2
