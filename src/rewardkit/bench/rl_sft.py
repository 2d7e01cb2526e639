"""The placeholder initial policy of ``rewardkit bench hacking --optimizer rl``: the policy backbone
SFT'd briefly with HF's Trainer on the built-in task's base-policy samples (prompt ids masked, response
and EOS learned). ``rewardkit.bench.hacking_rl.initial_policy`` calls it until the task's own initial
policy replaces it."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from rewardkit.bench.hacking_config import HackingConfig


def _sft_examples(config: HackingConfig, tok, seed: int) -> list[dict[str, list[int]]]:
    """Base-policy samples of the built-in task as SFT examples: prompt ids (label -100), response ids
    and EOS."""
    from rewardkit.synthetic import make_hacking_candidates

    t = config.task
    prompts, cands = make_hacking_candidates(
        config.rl.sft_examples, 1, 1000 + seed, t.p_candidate, t.max_count
    )
    rows = []
    for p, (c,) in zip(prompts, cands):
        ids = tok(text=p)["input_ids"]
        comp = tok(c.strip(), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows.append({"input_ids": ids + comp, "labels": [-100] * len(ids) + comp})
    return rows


def _pad_collate(pad_id: int) -> Callable[[list[dict]], dict]:
    import torch

    def collate(rows: list[dict]) -> dict:
        width = max(len(r["input_ids"]) for r in rows)
        fill = [width - len(r["input_ids"]) for r in rows]
        return {
            "input_ids": torch.tensor([r["input_ids"] + [pad_id] * f for r, f in zip(rows, fill)]),
            "labels": torch.tensor([r["labels"] + [-100] * f for r, f in zip(rows, fill)]),
            "attention_mask": torch.tensor([[1] * len(r["input_ids"]) + [0] * f for r, f in zip(rows, fill)]),
        }

    return collate


def placeholder_initial_policy(config: HackingConfig, base: str, folder: Path, seed: int) -> Path:
    """The backbone SFT'd briefly (HF Trainer) on the built-in task's base-policy samples."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        PrinterCallback,
        Trainer,
        TrainingArguments,
    )

    if folder.exists():
        return folder
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    with tempfile.TemporaryDirectory(prefix="rewardkit-sft-") as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            num_train_epochs=config.rl.sft_epochs,
            learning_rate=config.rl.sft_lr,
            per_device_train_batch_size=16,
            use_cpu=not torch.cuda.is_available(),
            report_to="none",
            save_strategy="no",
            logging_steps=10**6,
            disable_tqdm=True,
            seed=seed,
        )
        rows = _sft_examples(config, tok, seed)
        trainer = Trainer(
            model=model, args=args, train_dataset=rows, data_collator=_pad_collate(tok.pad_token_id)
        )
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
