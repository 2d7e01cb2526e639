"""The one batching engine every reward model scores through.

Sequences are sorted by length and packed into batches under a **token budget** (padded tokens per
batch), not a fixed count, so short sequences go through in large batches and long ones in small
batches; results are scattered back to input order. Padding is to a small multiple of the longest
sequence in the batch. On CUDA an out-of-memory batch is split in two and retried.

**Prefix sharing.** Sequences whose tokens before the response are identical (a pair's two responses,
best-of-N candidates) form a group; where a group's repeated prompt tokens are a large share of its tokens
(:func:`share_groups`), the prompt runs once, its KV cache is expanded over the group and only the
response tokens run (:class:`SharedBatch`), with the same rewards as the unshared forward.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch

from rewardkit.templating import Encoded
from rewardkit.util import show_progress

logger = logging.getLogger(__name__)

PAD_MULTIPLE = 8
# Padded tokens per batch. On CPU small batches win: less padding and cache-friendly GEMMs (SmolLM2-135M,
# 64 AlpacaEval sequences: 32 s at 1024, 35 s at 2048 and 4096, 45 s at 8192 tokens per batch).
CPU_MAX_TOKENS = 1024
CUDA_MAX_TOKENS = 16384
DEFAULT_MAX_TOKENS = CPU_MAX_TOKENS


def default_max_tokens(device) -> int:
    return CUDA_MAX_TOKENS if torch.device(device).type == "cuda" else CPU_MAX_TOKENS


@dataclass
class Batch:
    """A padded batch. ``input_ids``/``attention_mask``: [B, T]; ``response_start``: [B] token index."""

    indices: list[int]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_start: torch.Tensor

    def to(self, device) -> Batch:
        return Batch(
            self.indices,
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.response_start.to(device),
        )

    def split(self) -> list[Batch]:
        """Two halves (for an out-of-memory retry)."""
        h = len(self.indices) // 2
        return [
            Batch(self.indices[s], self.input_ids[s], self.attention_mask[s], self.response_start[s])
            for s in (slice(0, h), slice(h, None))
        ]

    def counts(self) -> tuple[int, int, int]:
        """(sequences, real tokens, padded tokens) computed."""
        return len(self.indices), int(self.attention_mask.sum()), self.input_ids.numel()


@dataclass
class SharedBatch:
    """Groups of sequences that share their tokens before the response: each group's prompt runs once.

    ``prefix_ids`` / ``prefix_mask``: [G, P], each group's prompt, right padded. ``suffix_ids`` /
    ``suffix_mask``: [N, S], each sequence's response tokens (those after its group's prompt), right
    padded. ``group``: [N] the prefix row of each sequence. A sequence's response starts right after its
    prompt, so every real suffix token is a response token.
    """

    indices: list[int]
    prefix_ids: torch.Tensor
    prefix_mask: torch.Tensor
    suffix_ids: torch.Tensor
    suffix_mask: torch.Tensor
    group: torch.Tensor

    @property
    def input_ids(self) -> torch.Tensor:
        """[N, P + S] each sequence as the two calls see it: its prompt row, then its response row."""
        return torch.cat([self.prefix_ids[self.group], self.suffix_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        """[N, P + S] the mask of :attr:`input_ids` (the response call's mask over cache + new tokens)."""
        return torch.cat([self.prefix_mask[self.group], self.suffix_mask], dim=1)

    def to(self, device) -> SharedBatch:
        t = (self.prefix_ids, self.prefix_mask, self.suffix_ids, self.suffix_mask, self.group)
        return SharedBatch(self.indices, *(x.to(device) for x in t))

    def _rows(self, rows: slice) -> SharedBatch:
        used = torch.unique(self.group[rows])  # sorted prefix rows this part needs
        remap = torch.full((self.prefix_ids.shape[0],), -1, dtype=torch.long)
        remap[used] = torch.arange(len(used))
        return SharedBatch(
            self.indices[rows],
            self.prefix_ids[used],
            self.prefix_mask[used],
            self.suffix_ids[rows],
            self.suffix_mask[rows],
            remap[self.group[rows]],
        )

    def split(self) -> list[SharedBatch]:
        """Two parts (for an out-of-memory retry): by groups when there are several, else by rows."""
        n_groups, g = self.prefix_ids.shape[0], self.group.tolist()  # rows are in ascending group order
        cut = next(i for i, x in enumerate(g) if x >= n_groups // 2) if n_groups > 1 else len(g) // 2
        return [self._rows(slice(0, cut)), self._rows(slice(cut, None))]

    def counts(self) -> tuple[int, int, int]:
        real = int(self.prefix_mask.sum()) + int(self.suffix_mask.sum())
        return len(self.indices), real, self.prefix_ids.numel() + self.suffix_ids.numel()


def padded_length(n: int, multiple: int = PAD_MULTIPLE) -> int:
    return -(-n // multiple) * multiple


def plan_batches(
    lengths: Sequence[int],
    max_tokens: int = DEFAULT_MAX_TOKENS,
    max_batch_size: int | None = None,
    pad_multiple: int = PAD_MULTIPLE,
) -> list[list[int]]:
    """Group indices into batches, longest first, so that ``len(batch) * padded_max_len <= max_tokens``.

    A single sequence longer than the budget still forms a batch of its own (it is never dropped).
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0  # padded length of the batch: set by its first (longest) member
    for i in order:
        full = max_batch_size is not None and len(current) >= max_batch_size
        if current and (full or (len(current) + 1) * width > max_tokens):
            batches.append(current)
            current = []
        if not current:
            width = padded_length(lengths[i], pad_multiple)
        current.append(i)
    if current:
        batches.append(current)
    return batches


def padded_tokens(
    lengths: Sequence[int], batches: Sequence[Sequence[int]], pad_multiple: int = PAD_MULTIPLE
) -> int:
    """Tokens computed by ``batches`` (lists of indices into ``lengths``), padding included: each batch
    is padded to its longest sequence, rounded up to ``pad_multiple``."""
    return sum(len(b) * padded_length(max(lengths[i] for i in b), pad_multiple) for b in batches if len(b))


def collate(
    items: Sequence[Encoded],
    indices: list[int],
    pad_id: int,
    pad_multiple: int = PAD_MULTIPLE,
    padding_side: str = "right",
) -> Batch:
    width = padded_length(max(len(items[i]) for i in indices), pad_multiple)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    starts = torch.empty(len(indices), dtype=torch.long)
    for row, i in enumerate(indices):
        seq = items[i].ids
        lo = 0 if padding_side == "right" else width - len(seq)
        ids[row, lo : lo + len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, lo : lo + len(seq)] = 1
        starts[row] = lo + items[i].response_start
    return Batch(indices, ids, mask, starts)


#: A group's prompt is run once when the prompt tokens that saves, (members - 1) x prompt length, are at
#: least this share of the group's tokens, and the prompt is at least PREFIX_MIN_TOKENS long. (A shared
#: call costs a second, short forward and the cache copies; short prompts before long answers, such as
#: AlpacaEval pairs at about 7% of their tokens, run unshared.)
PREFIX_MIN_SAVING = 0.25
PREFIX_MIN_TOKENS = 32


def share_groups(
    items: Sequence[Encoded], min_saving: float = PREFIX_MIN_SAVING, min_tokens: int = PREFIX_MIN_TOKENS
) -> tuple[list[list[int]], list[int]]:
    """(groups of indices whose tokens before the response are identical and whose sharing pays, the
    other indices). A sequence with no response token, or a prompt under ``min_tokens``, is never shared."""
    by_prompt: dict[tuple[int, ...], list[int]] = {}
    rest: list[int] = []
    for i, x in enumerate(items):
        if min_tokens <= x.response_start < len(x):
            by_prompt.setdefault(tuple(x.ids[: x.response_start]), []).append(i)
        else:
            rest.append(i)
    groups = []
    for prompt, members in by_prompt.items():
        saved = (len(members) - 1) * len(prompt)
        if len(members) >= 2 and saved >= min_saving * sum(len(items[i]) for i in members):
            groups.append(members)
        else:
            rest.extend(members)
    return groups, sorted(rest)


def plan_shared_batches(
    items: Sequence[Encoded],
    groups: Sequence[Sequence[int]],
    max_tokens: int = DEFAULT_MAX_TOKENS,
    max_batch_size: int | None = None,
    pad_multiple: int = PAD_MULTIPLE,
) -> list[list[list[int]]]:
    """Batches of whole groups, longest responses first, so that ``groups x padded prompt length +
    sequences x padded response length <= max_tokens`` (a group over the budget is a batch of its own)."""

    size = [
        (items[g[0]].response_start, max(len(items[i]) - items[i].response_start for i in g)) for g in groups
    ]  # (prompt, longest response) tokens of each group
    order = sorted(range(len(groups)), key=lambda k: (-size[k][1], -size[k][0], k))
    batches: list[list[list[int]]] = []
    current: list[list[int]] = []
    prompt = resp = rows = 0
    for k in order:
        gp, gr = (padded_length(x, pad_multiple) for x in size[k])
        p, r, n = max(prompt, gp), max(resp, gr), rows + len(groups[k])
        too_many = max_batch_size is not None and n > max_batch_size
        if current and ((len(current) + 1) * p + n * r > max_tokens or too_many):
            batches.append(current)
            current, p, r, n = [], gp, gr, len(groups[k])
        current.append(list(groups[k]))
        prompt, resp, rows = p, r, n
    if current:
        batches.append(current)
    return batches


def collate_shared(
    items: Sequence[Encoded], groups: Sequence[Sequence[int]], pad_id: int, pad_multiple: int = PAD_MULTIPLE
) -> SharedBatch:
    """A :class:`SharedBatch` of whole groups (rows in group order, right padded)."""
    rows = [i for g in groups for i in g]
    p_width = padded_length(max(items[g[0]].response_start for g in groups), pad_multiple)
    s_width = padded_length(max(len(items[i]) - items[i].response_start for i in rows), pad_multiple)
    p_ids = torch.full((len(groups), p_width), pad_id, dtype=torch.long)
    p_mask = torch.zeros((len(groups), p_width), dtype=torch.long)
    s_ids = torch.full((len(rows), s_width), pad_id, dtype=torch.long)
    s_mask = torch.zeros((len(rows), s_width), dtype=torch.long)
    group = torch.tensor([k for k, g in enumerate(groups) for _ in g], dtype=torch.long)
    for k, g in enumerate(groups):
        x = items[g[0]]
        p_ids[k, : x.response_start] = torch.tensor(x.ids[: x.response_start], dtype=torch.long)
        p_mask[k, : x.response_start] = 1
    for row, i in enumerate(rows):
        tail = items[i].ids[items[i].response_start :]
        s_ids[row, : len(tail)] = torch.tensor(tail, dtype=torch.long)
        s_mask[row, : len(tail)] = 1
    return SharedBatch(rows, p_ids, p_mask, s_ids, s_mask, group)


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def _run_one(fn: Callable, batch: Batch | SharedBatch, device) -> list[tuple[list[int], torch.Tensor]]:
    """Run ``fn`` on a batch; on out-of-memory split it in two and retry (down to one sequence)."""
    try:
        return [(batch.indices, fn(batch.to(device)).float().cpu())]
    except (torch.OutOfMemoryError, RuntimeError) as err:
        if not _is_oom(err) or len(batch.indices) == 1:
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        halves = batch.split()
        logger.info(
            "out of memory on a batch of %d; retrying as %d + %d",
            len(batch.indices),
            len(halves[0].indices),
            len(halves[1].indices),
        )
        return [part for sub in halves for part in _run_one(fn, sub, device)]


#: Callables ``(sequences, real_tokens, padded_tokens)`` told of every batch the engine runs (e.g. the
#: server's metrics). Called from the thread that scores.
BATCH_OBSERVERS: list[Callable[[int, int, int], None]] = []


def run_batches(
    items: Sequence[Encoded],
    fn: Callable[[Batch], torch.Tensor],
    *,
    pad_id: int,
    device,
    max_tokens: int | None = None,
    max_batch_size: int | None = None,
    progress: bool | None = None,
    desc: str = "scoring",
    shared: Callable[[SharedBatch], torch.Tensor] | None = None,
) -> np.ndarray:
    """Apply ``fn`` (Batch -> Tensor[B] or [B, K]) to every item in length-sorted token-budget batches;
    with ``shared`` (SharedBatch -> the same values), groups that share a prompt where it pays
    (:func:`share_groups`) go through it instead.

    Returns a float32 array ([n] or [n, K]) in the input order.
    """
    if not items:
        return np.empty(0, dtype=np.float32)
    out: np.ndarray | None = None
    budget = max_tokens or default_max_tokens(device)
    groups, rest = share_groups(items) if shared is not None else ([], list(range(len(items))))
    plan = [[rest[j] for j in b] for b in plan_batches([len(items[i]) for i in rest], budget, max_batch_size)]
    work = [(fn, lambda b=b: collate(items, b, pad_id)) for b in plan] + [
        (shared, lambda b=b: collate_shared(items, b, pad_id))
        for b in plan_shared_batches(items, groups, budget, max_batch_size)
    ]
    from tqdm.auto import tqdm

    bar = tqdm(total=len(items), desc=desc, unit="seq", disable=not show_progress(progress), leave=False)
    with torch.inference_mode():
        for run, make in work:
            batch = make()
            for observe in BATCH_OBSERVERS:
                observe(*batch.counts())
            for idx, values in _run_one(run, batch, device):
                if out is None:  # [n] for one reward per sequence, [n, heads] for multi-head models
                    out = np.empty((len(items), *values.shape[1:]), dtype=np.float32)
                out[idx] = values.numpy()
            bar.update(len(batch.indices))
    bar.close()
    return out


def report_encoding(
    items: Sequence[Encoded], formatter, what: str = "sequences", boundary: bool = True
) -> None:
    """Warn (once per call) how many sequences were truncated (to ``max_length`` or to the model's
    context) and, where the response boundary matters (``boundary``: implicit rewards, DPO), how many
    had it inside a token: counted, never hidden."""
    n_trunc = sum(x.truncated for x in items)
    if n_trunc:
        by = (
            f"the model's context of {formatter.context} tokens"
            if formatter.context is not None
            and formatter.limit == formatter.context
            and (formatter.max_length is None or formatter.context < formatter.max_length)
            else f"max_length={formatter.max_length}"
        )
        logger.warning(
            "%d of %d %s were longer than %s and kept their last tokens", n_trunc, len(items), what, by
        )
    n_merged = sum(x.merged for x in items) if boundary else 0
    if n_merged:
        logger.warning(
            "%d of %d %s: the tokenised prompt is not a prefix of the tokenised prompt + response (a token "
            "spans the boundary, e.g. a prompt ending in a space); the response starts where they differ, "
            "as in TRL",
            n_merged,
            len(items),
            what,
        )


@dataclass(frozen=True)
class EngineSettings:
    """How a model that tokenises here runs through the engine (explicit and implicit RMs).

    ``device``: where its weights live and batches go; ``max_tokens``: padded tokens per batch (None: the
    device's default, :func:`default_max_tokens`); ``max_batch_size``: sequences per batch at most (None:
    the budget alone); ``progress``: a progress bar (None: when stderr is a terminal);
    ``prefix_sharing``: run a shared prompt once per group (False: once per response, batch-invariant).
    """

    device: torch.device = torch.device("cpu")
    max_tokens: int | None = None
    max_batch_size: int | None = None
    progress: bool | None = None
    prefix_sharing: bool = True

    #: the settings ``RewardModel.configure`` may change (a model's device is fixed when it is built)
    CONFIGURABLE: ClassVar[tuple[str, ...]] = ("max_tokens", "max_batch_size", "progress", "prefix_sharing")

    def configured(self, **changes: Any) -> EngineSettings:
        """A copy with the changes that are not None; an unknown setting is an error, not ignored."""
        unknown = set(changes) - set(self.CONFIGURABLE)
        if unknown:
            raise TypeError(f"unknown engine setting(s) {sorted(unknown)}; known: {self.CONFIGURABLE}")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def score_encoded(
    items: Sequence[Encoded],
    fn: Callable[[Batch], torch.Tensor],
    *,
    engine: EngineSettings,
    formatter,
    name: str,
    boundary: bool = True,
    shared: Callable[[SharedBatch], torch.Tensor] | None = None,
) -> np.ndarray:
    """Run a model's batch function over encoded sequences with its ``engine`` settings (``shared``, its
    prefix-shared batch function, is used unless ``engine.prefix_sharing`` is False). ``formatter``: the
    token convention that encoded ``items`` (its tokenizer's pad id pads); ``name``: the model in errors.
    Truncated sequences and (with ``boundary``) merged response boundaries are counted in a warning,
    never hidden."""
    report_encoding(items, formatter, boundary=boundary)
    out = run_batches(
        items,
        fn,
        pad_id=formatter.tokenizer.pad_token_id,
        device=engine.device,
        max_tokens=engine.max_tokens,
        max_batch_size=engine.max_batch_size,
        progress=engine.progress,
        shared=shared if engine.prefix_sharing else None,
    )
    bad = int((~np.isfinite(out)).sum())
    if bad:
        from rewardkit.errors import ModelError

        raise ModelError(
            f"reward model {name}: {bad} of {out.size} rewards are NaN or infinite (its weights or inputs "
            "overflow)"
        )
    return out
