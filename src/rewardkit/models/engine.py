"""What the kinds that tokenise and score through the engine share (explicit and implicit RMs): a
``formatter`` (the token convention), engine settings, and rows of rewards whose mean is the reward."""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from rewardkit.base import RewardModel
from rewardkit.records import Prompt
from rewardkit.scoring import Batch, EngineSettings, SharedBatch, score_encoded
from rewardkit.templating import Encoded, Formatter, Texts


class EngineRewardModel(RewardModel):
    """A reward model with its own tokenizer (``formatter``) and engine settings (:attr:`engine`). A kind
    implements :meth:`member_rows`; its reward is the mean of its rows (one row for a single-head model)."""

    #: how this model runs through the engine: device, token budget, batch size, progress, prefix sharing
    engine: EngineSettings

    @property
    def device(self) -> torch.device:
        """Where the weights live and batches go (``engine.device``)."""
        return self.engine.device

    @property
    def encoding_key(self) -> str:  # type: ignore[override]
        return self.formatter.encoding_key

    def save(self, path: str | os.PathLike, *, force: bool = False) -> None:
        """Write the model to a folder that ``rewardkit.load_reward_model`` restores."""
        self._write(path, force=force)

    @abstractmethod
    def _write(self, path: str | os.PathLike, *, force: bool, keep: Sequence[str] = ()) -> None:
        """:meth:`save`; ``keep``: entries of an existing folder at ``path`` carried over (a trainer's
        ``checkpoints``, when it writes the trained model into its run folder)."""

    def configure(self, chat_template: str | None = None, **engine: Any) -> None:
        self.engine = self.engine.configured(**engine)
        if chat_template is not None:
            f = self.formatter
            self.formatter = Formatter(f.tokenizer, f.max_length, chat_template, f.pair_encoding, f.context)

    def _run_engine(
        self,
        items: Sequence[Encoded],
        fn: Callable[[Batch], torch.Tensor],
        *,
        boundary: bool = True,
        shared: Callable[[SharedBatch], torch.Tensor] | None = None,
    ) -> np.ndarray:
        """``fn`` (and ``shared``, its prefix-shared form) over ``items`` with this model's settings."""
        return score_encoded(
            items,
            fn,
            engine=self.engine,
            formatter=self.formatter,
            name=self.source or type(self).__name__,
            boundary=boundary,
            shared=shared,
        )

    def member_scores(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> np.ndarray:
        """[num_members, n] rewards of every row (head, LoRA adapter)."""
        return self.member_rows(Texts.of(prompts, responses))

    def score_texts(self, texts: Texts) -> np.ndarray:
        """The mean of the rows (a multi-head / multi-adapter model averages its members)."""
        rows = self.member_rows(texts)
        return rows[0] if len(rows) == 1 else rows.mean(axis=0).astype(np.float32)
