"""Elastic Reset inside TRL's GRPOTrainer: right after a reset the policy equals the EMA computed by hand
from the policy's weights after every optimizer step; buffered completions are reused after a reset."""

import pytest
import torch

from rewardkit.synthetic import GOOD, vocabulary
from rewardkit.tiny import build_tiny_model
from rewardkit.train.elastic import ElasticResetCallback

trl = pytest.importorskip("trl")
from transformers import TrainerCallback  # noqa: E402


def _good_words(prompts, completions, **kwargs):
    return [float(sum(w in GOOD for w in c.split())) for c in completions]


class _Snapshots(TrainerCallback):
    """Trainable weights at every ``on_step_end`` (where it sits in the callback list decides whether
    that is before or after Elastic Reset acted)."""

    def __init__(self):
        self.seen: dict[int, dict[str, torch.Tensor]] = {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.seen[0] = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.seen[state.global_step] = {
            n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad
        }


def _trainer(tmp_path, callbacks, *, steps: int, steps_per_generation: int | None = None, beta: float = 0.0):
    policy = build_tiny_model(tmp_path / "policy", vocabulary(), hidden=32, layers=2, heads=4, seed=0)
    args = trl.GRPOConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=steps,
        learning_rate=1e-2,
        per_device_train_batch_size=4,
        num_generations=4,
        steps_per_generation=steps_per_generation,
        max_completion_length=6,
        beta=beta,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=10**6,
        disable_tqdm=True,
        seed=0,
    )
    prompts = ["please tell me about pasta", "explain how the oven works", "what is a gene"] * 8
    from datasets import Dataset

    return trl.GRPOTrainer(
        model=str(policy),
        reward_funcs=[_good_words],
        args=args,
        train_dataset=Dataset.from_dict({"prompt": prompts}),
        callbacks=callbacks,
    )


@pytest.mark.parametrize("beta", [0.0, 0.05])
def test_policy_equals_the_ema_right_after_a_reset(tmp_path, beta):
    eta = 0.6
    before, after = type("Before", (_Snapshots,), {})(), type("After", (_Snapshots,), {})()
    reset = ElasticResetCallback(reset_every=3, ema_decay=eta)
    trainer = _trainer(tmp_path, [before, reset, after], steps=4, beta=beta)
    trainer.train()
    assert reset.resets == 1
    theta = before.seen  # the policy after each optimizer step, before Elastic Reset acts
    names = list(theta[0])
    assert names and all(not torch.equal(theta[1][n], theta[0][n]) for n in names[:3])  # it trained
    ema = {n: theta[0][n].clone() for n in names}
    for step in (1, 2, 3):
        ema = {n: eta * ema[n] + (1 - eta) * theta[step][n] for n in names}
    for n in names:  # step 3: the policy became the EMA; the EMA restarted from the initial weights,
        torch.testing.assert_close(after.seen[3][n], ema[n], rtol=1e-5, atol=1e-6)
        assert not torch.equal(theta[3][n], ema[n])  # (the reset changed the policy)
        # so after step 4 it is eta * initial + (1 - eta) * theta_4
        torch.testing.assert_close(
            reset.ema[n], eta * theta[0][n] + (1 - eta) * theta[4][n], rtol=1e-5, atol=1e-6
        )
    for step in (1, 2):  # no reset before step 3: the policy is untouched
        for n in names:
            assert torch.equal(before.seen[step][n], after.seen[step][n])
    if beta > 0:  # the reference model of the KL term is not reset: it stays the initial policy
        ref = dict(trainer.ref_model.named_parameters())
        for n in names:
            torch.testing.assert_close(ref[n], theta[0][n], rtol=0, atol=0)


def test_buffered_completions_are_reused_after_a_reset(tmp_path):
    """steps_per_generation=2: one generation feeds two optimizer steps, so with a reset after every
    step, the second step of each pair trains on completions sampled before the reset."""
    resets_at: list[int] = []

    class _Resets(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            resets_at.append(state.global_step)

    reset = ElasticResetCallback(reset_every=1, ema_decay=0.5)
    trainer = _trainer(tmp_path, [reset, _Resets()], steps=4, steps_per_generation=2)
    generated_at: list[int] = []
    original = trainer._generate_and_score_completions

    def counting(inputs):
        generated_at.append(trainer.state.global_step)
        return original(inputs)

    trainer._generate_and_score_completions = counting
    trainer.train()
    assert reset.resets == 4 and resets_at == [1, 2, 3, 4]
    assert generated_at == [0, 2]  # steps 2 and 4 follow a reset and reuse the buffer
