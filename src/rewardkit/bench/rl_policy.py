"""The initial policy of ``rewardkit bench hacking --optimizer rl`` on the built-in task: a causal LM
supervised-fine-tuned (HF ``Trainer``) on the task's base-policy candidates.

What the policy already says decides which failure RL finds: the share of SFT responses padded with
the spurious word (``p_spurious``) sets how often the policy samples it at step 0. Measured here with the
ci preset's tiny proxies (EXRM-1, corrupt setup): with none the policy did not find the word in 150 GRPO
steps and gold only rose; with a fifth of the responses padded the proxy's reward for the word dominated
from the first steps and gold only fell; a few percent gave a rise then a fall (Gao et al.).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rewardkit.errors import RewardkitError


class PolicySFT(BaseModel):
    """The SFT mix and the SFT run of the initial policy."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    n_prompts: int = Field(256, ge=1, description="prompts of the SFT mix")
    k: int = Field(16, ge=1, description="base-policy responses per prompt (all are trained on)")
    p_spurious: float = Field(
        0.05, ge=0, le=1, description="share of SFT responses padded with the spurious word"
    )
    max_count: int = Field(6, ge=1, description="most copies of the word in a padded response")
    epochs: float = Field(3.0, gt=0)
    lr: float = Field(3e-3, gt=0)
    batch_size: int = Field(32, ge=1)
    data_seed: int = Field(500, ge=0, description="seed of the SFT mix (apart from the RL and proxy seeds)")


def sft_mix(settings: PolicySFT) -> tuple[list[str], list[str]]:
    """(prompts, completions) of the SFT mix: every one of the ``k`` base-policy candidates of each of
    ``n_prompts`` prompts (``rewardkit.synthetic.make_hacking_candidates``); completions carry their
    leading space (the prompt is plain text, concatenated as it is)."""
    from rewardkit.synthetic import make_hacking_candidates

    prompts, cands = make_hacking_candidates(
        settings.n_prompts,
        settings.k,
        seed=settings.data_seed,
        p_spurious=settings.p_spurious,
        max_count=settings.max_count,
    )
    return [p for p, row in zip(prompts, cands) for _ in row], [c for row in cands for c in row]


def mix_summary(completions: list[str]) -> dict[str, float]:
    """Mean gold reward, spurious-word count and length (words) of ``completions``."""
    from rewardkit.synthetic import SPURIOUS, gold_reward

    return {
        "gold": float(np.mean([gold_reward(c) for c in completions])),
        "spurious": float(np.mean([c.split().count(SPURIOUS) for c in completions])),
        "words": float(np.mean([len(c.split()) for c in completions])),
    }


def _examples(tokenizer, prompts: list[str], completions: list[str]) -> list[dict[str, list[int]]]:
    """Token ids of ``prompt + completion + EOS`` with the prompt's labels masked (-100)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise RewardkitError("the policy's tokenizer has no EOS token: completions could never end")
    rows = []
    for p, c in zip(prompts, completions):
        start = len(tokenizer(p, add_special_tokens=False)["input_ids"])
        ids = tokenizer(p + c, add_special_tokens=False)["input_ids"] + [eos]
        rows.append({"input_ids": ids, "labels": [-100] * start + ids[start:]})
    return rows


def _collate(pad_id: int):
    import torch

    def collate(batch: list[dict[str, list[int]]]) -> dict:
        n = max(len(b["input_ids"]) for b in batch)
        ids = [b["input_ids"] + [pad_id] * (n - len(b["input_ids"])) for b in batch]
        labels = [b["labels"] + [-100] * (n - len(b["labels"])) for b in batch]
        mask = [[1] * len(b["input_ids"]) + [0] * (n - len(b["input_ids"])) for b in batch]
        return {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
        }

    return collate


def build_initial_policy(
    backbone: str | os.PathLike,
    out: str | os.PathLike,
    settings: PolicySFT | None = None,
    *,
    seed: int = 0,
    force: bool = False,
) -> Path:
    """SFT ``backbone`` (an HF causal LM folder with its tokenizer) on the SFT mix of ``settings`` with
    HF ``Trainer`` (next-token loss on the completion and its EOS; the prompt masked) and save it.

    Args:
        backbone: causal LM folder (the ci / cpu presets: the tiny word-level model).
        out: folder to write (an HF folder ``from_pretrained`` loads, with the tokenizer).
        settings: the mix and the run (``PolicySFT()`` when None).
        seed: the Trainer's seed (data order, dropout).
        force: replace an existing ``out``.

    Returns:
        ``out`` as a Path.
    """
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    settings = settings or PolicySFT()
    out = Path(out)
    if out.exists() and not force:
        raise RewardkitError(f"{out}: already exists (use force=True to replace it)")
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    model = AutoModelForCausalLM.from_pretrained(backbone, dtype=torch.float32)
    prompts, completions = sft_mix(settings)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    scratch = out.with_name(out.name + ".sft-tmp")
    args = TrainingArguments(
        output_dir=str(scratch),
        num_train_epochs=settings.epochs,
        learning_rate=settings.lr,
        per_device_train_batch_size=settings.batch_size,
        lr_scheduler_type="linear",
        seed=seed,
        report_to=[],
        save_strategy="no",
        logging_steps=10**6,
        disable_tqdm=True,
        remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(),
    )
    data = Dataset.from_list(_examples(tokenizer, prompts, completions))
    Trainer(model=model, args=args, train_dataset=data, data_collator=_collate(pad)).train()
    shutil.rmtree(scratch, ignore_errors=True)
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def benchmark_policy_settings(config, seed: int) -> PolicySFT:
    """The SFT settings of ``bench hacking --optimizer rl`` (a ``HackingConfig``) for RL seed ``seed``:
    ``rl.sft_examples`` responses (``k`` per prompt), ``rl.sft_epochs``, ``rl.sft_lr``, the task's
    ``max_count``; a mix of its own per seed."""
    k = PolicySFT().k
    return PolicySFT(
        n_prompts=max(1, -(-config.rl.sft_examples // k)),
        k=k,
        max_count=config.task.max_count,
        epochs=config.rl.sft_epochs,
        lr=config.rl.sft_lr,
        data_seed=500 + seed,
    )


def initial_policy_for(config, base: str, folder: Path, seed: int) -> Path:
    """The initial policy of RL seed ``seed`` of a ``HackingConfig`` run, built once at ``folder``."""
    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    return build_initial_policy(base, folder, benchmark_policy_settings(config, seed), seed=seed, force=True)
