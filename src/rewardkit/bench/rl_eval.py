"""Measuring a policy during RL (``rewardkit bench hacking --optimizer rl``), apart from the trainer's
batch: on fixed held-out prompts, S samples per prompt at temperature 1 from the current policy, their
gold and proxy rewards, the sequence KL to the initial policy (exact per-token KL over the vocabulary
summed along each sampled path, ``rewardkit.eval.overoptimisation.path_kl``), length and EAD."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

#: (prompts, completions) -> [n] rewards
RewardFn = Callable[[list[Any], list[str]], Sequence[float]]


def completion_mask(completion_ids: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """[N, T] 1 up to and including the first EOS of each row (all ones where a row has none)."""
    if eos_id is None:
        return torch.ones_like(completion_ids)
    is_eos = (completion_ids == eos_id).long()
    before = torch.cumsum(is_eos, dim=1) - is_eos  # EOS strictly before position t
    return (before == 0).long()


@torch.no_grad()
def completion_logprobs(
    model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor
) -> torch.Tensor:
    """[N, T, V] float32 log-probabilities the model gives every vocabulary token at each completion
    position, for left-padded prompts [N, Lp] (``prompt_mask``) followed by completions [N, T]; the
    positions are counted as ``generate`` counts them (left padding skipped)."""
    ids = torch.cat([prompt_ids, completion_ids], dim=1)
    mask = torch.cat([prompt_mask, torch.ones_like(completion_ids)], dim=1)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    lp = prompt_ids.shape[1]
    return torch.log_softmax(logits[:, lp - 1 : -1].float(), dim=-1)


@torch.no_grad()
def completion_kl(model, init, prompt_ids, prompt_mask, completion_ids, mask) -> np.ndarray:
    """[N] exact per-token KL(model || init) over the vocabulary summed along each completion's masked
    positions (``rewardkit.eval.overoptimisation.path_kl``, computed on the models' device)."""
    logp = completion_logprobs(model, prompt_ids, prompt_mask, completion_ids)
    d = init.device
    logq = completion_logprobs(init, prompt_ids.to(d), prompt_mask.to(d), completion_ids.to(d)).to(
        logp.device
    )
    per_token = (logp.exp() * (logp - logq)).sum(dim=-1)  # [N, T]
    return (per_token * mask.to(per_token.dtype)).sum(dim=-1).double().cpu().numpy()


@dataclass
class Measurement:
    """One measurement of a policy: per prompt x sample arrays [P, S], per-prompt EAD [P] and, with an
    embedder, per-prompt embedding diversity [P] (1 - mean pairwise cosine of the prompt's samples)."""

    step: int
    gold: np.ndarray
    proxy: np.ndarray
    kl: np.ndarray
    length: np.ndarray
    ead: np.ndarray
    samples: list[dict[str, Any]] = field(default_factory=list)
    embedding: np.ndarray | None = None


class PolicyProbe:
    """Samples ``samples`` completions per prompt from a policy and measures them against ``init``.

    ``gold`` and ``proxy`` score (prompts, completion texts); the texts are what TRL's GRPOTrainer
    hands its reward functions (``batch_decode(..., skip_special_tokens=True)``) after ``sep``
    (:func:`rewardkit.bench.hacking_rl.completion_separator`)."""

    def __init__(
        self,
        init,
        tokenizer,
        prompts: list[str],
        samples: int,
        max_new_tokens: int,
        gold: RewardFn,
        proxy: RewardFn,
        seed: int = 0,
        sep: str = "",
        domains: Sequence[str] | None = None,
        embed: Callable[[Sequence[str]], np.ndarray] | None = None,
        batch: int = 64,
    ):
        self.embed, self.batch = embed, batch
        self.init, self.tok, self.prompts, self.sep = init.eval(), tokenizer, list(prompts), sep
        self.domains = list(domains) if domains is not None else ["id"] * len(self.prompts)
        self.samples, self.max_new_tokens, self.seed = samples, max_new_tokens, seed
        self.gold, self.proxy = gold, proxy
        self.prompt_ids = tokenizer(text=self.prompts)["input_ids"]  # as GRPOTrainer tokenises

    def _padded_prompts(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [ids for ids in self.prompt_ids for _ in range(self.samples)]
        width = max(len(r) for r in rows)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
        return ids, mask

    @torch.no_grad()
    def sample(self, model, step: int) -> tuple[list[list[int]], np.ndarray]:
        """The samples' completion ids (through EOS) and their path KL to the initial policy [P * S].

        Drawn ``batch`` sequences at a time at temperature 1 (no top-k / top-p), seeded by (seed, step)
        only, so every run starting from one policy draws the same step-0 sample."""
        device = next(model.parameters()).device
        ids, mask = self._padded_prompts(device)
        kept, kls = [], []
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(1_000_003 * self.seed + step)
            for lo in range(0, len(ids), self.batch):
                chunk, chunk_mask = ids[lo : lo + self.batch], mask[lo : lo + self.batch]
                out = model.generate(
                    input_ids=chunk,
                    attention_mask=chunk_mask,
                    do_sample=True,
                    temperature=1.0,
                    top_k=0,
                    top_p=1.0,
                    max_new_tokens=self.max_new_tokens,
                    pad_token_id=self.tok.pad_token_id,
                    eos_token_id=self.tok.eos_token_id,
                )
                comp = out[:, chunk.shape[1] :]
                cmask = completion_mask(comp, self.tok.eos_token_id)
                kls.append(completion_kl(model, self.init, chunk, chunk_mask, comp, cmask))
                kept += [c[m.bool()].tolist() for c, m in zip(comp.cpu(), cmask.cpu())]
        return kept, np.concatenate(kls)

    def measure(self, model, step: int) -> Measurement:
        """Sample from ``model`` (put back in its training mode afterwards) and measure."""
        from rewardkit.eval.diversity import mean_ead

        was_training = model.training
        model.eval()
        try:
            kept, kl = self.sample(model, step)
        finally:
            model.train(was_training)
        texts = [self.sep + t for t in self.tok.batch_decode(kept, skip_special_tokens=True)]
        prompts = [p for p in self.prompts for _ in range(self.samples)]
        gold = np.asarray(self.gold(prompts, texts), dtype=np.float64)
        proxy = np.asarray(self.proxy(prompts, texts), dtype=np.float64)
        shape = (len(self.prompts), self.samples)
        ead = [
            mean_ead(texts[i : i + self.samples], tokenizer=self.tok)
            for i in range(0, len(texts), self.samples)
        ]
        samples = [
            {
                "step": step,
                "prompt_index": i // self.samples,
                "domain": self.domains[i // self.samples],
                "prompt_ids": self.prompt_ids[i // self.samples],
                "completion_ids": kept[i],
                "completion": texts[i],
                "gold": float(gold[i]),
                "proxy": float(proxy[i]),
                "kl": float(kl[i]),
            }
            for i in range(len(texts))
        ]
        lengths = np.array([len(k) for k in kept], dtype=np.float64)
        return Measurement(
            step,
            gold.reshape(shape),
            proxy.reshape(shape),
            kl.reshape(shape),
            lengths.reshape(shape),
            np.asarray(ead),
            samples,
            self._embedding_diversity(texts),
        )

    def _embedding_diversity(self, texts: list[str]) -> np.ndarray | None:
        from rewardkit.eval.diversity import embedding_diversity

        if self.embed is None or self.samples < 2:
            return None
        k = self.samples
        return np.array([embedding_diversity(texts[i : i + k], self.embed) for i in range(0, len(texts), k)])


class MeasureCallback(TrainerCallback):
    """Measures the policy with a :class:`PolicyProbe` before training and every ``every`` optimizer
    steps (and at the last); add it after any callback that changes the weights at a step's end
    (Elastic Reset), so a measurement sees the weights the next step starts from."""

    def __init__(self, probe: PolicyProbe, every: int, last: int):
        self.probe, self.every, self.last = probe, every, last
        self.results: list[Measurement] = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not self.results:
            self.results.append(self.probe.measure(model, 0))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if step % self.every == 0 or step == self.last:
            self.results.append(self.probe.measure(model, step))
