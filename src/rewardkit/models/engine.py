"""What the kinds that tokenise and score through the engine share (explicit and implicit RMs): a
``formatter`` (the token convention), engine settings, and rows of rewards whose mean is the reward."""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from rewardkit.base import RewardModel
from rewardkit.records import Prompt
from rewardkit.scoring import configure_engine
from rewardkit.templating import Texts


class EngineRewardModel(RewardModel):
    """A reward model with its own tokenizer and engine settings (``formatter``, ``max_tokens``,
    ``max_batch_size``, ``progress``). A kind implements :meth:`member_rows`; its reward is the mean of
    its rows (one row for a single-head model)."""

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
        configure_engine(self, chat_template, **engine)

    def member_scores(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> np.ndarray:
        """[num_members, n] rewards of every row (head, LoRA adapter)."""
        return self.member_rows(Texts.of(prompts, responses))

    def score_texts(self, texts: Texts) -> np.ndarray:
        """The mean of the rows (a multi-head / multi-adapter model averages its members)."""
        rows = self.member_rows(texts)
        return rows[0] if len(rows) == 1 else rows.mean(axis=0).astype(np.float32)
