"""The one interface every reward model implements (:class:`RewardModel`) and the pair scores it gives.

A saved reward model is a folder with a ``rewardkit.json`` manifest (:mod:`rewardkit.manifest`);
``rewardkit.load_reward_model`` (:mod:`rewardkit.models.registry`) restores any kind. This module
imports no kind.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rewardkit.accuracy import TiePolicy, pairwise_accuracy
from rewardkit.data import as_pairs
from rewardkit.manifest import FORMAT_VERSION
from rewardkit.records import Prompt
from rewardkit.templating import Texts, completion_text
from rewardkit.version import __version__

#: folder -> reward model (:func:`rewardkit.models.registry.load_reward_model`, bound to a load's kwargs)
Loader = Callable[[Path], "RewardModel"]


@dataclass(frozen=True)
class PairScores:
    """Rewards of the chosen and rejected responses of n pairs (float32 arrays of shape [n])."""

    chosen: np.ndarray
    rejected: np.ndarray

    @property
    def margins(self) -> np.ndarray:
        return self.chosen - self.rejected

    def accuracy(self, ties: TiePolicy = "half") -> float:
        return pairwise_accuracy(self.margins, ties)

    def __len__(self) -> int:
        return len(self.chosen)


class RewardModel(ABC):
    """r(prompt, response) -> float: the whole contract a reward model kind implements.

    A kind implements :meth:`score_texts` (the one scoring hook), :meth:`save` and :meth:`_load`;
    :meth:`score`, :meth:`score_pairs` and ``__call__`` (TRL's ``reward_funcs``) are built on it. The
    optional capabilities callers use have defaults here, so nothing needs ``hasattr``:
    :attr:`members` (the reward models it is made of), :attr:`num_members` (reward rows it produces),
    :meth:`score_columns` (per-sequence extra outputs such as an ensemble's member rewards),
    :meth:`describe` (what ``/info`` and reports show) and :meth:`named_inputs` (the folders it
    depends on, which no output may overwrite).
    """

    kind: ClassVar[str]

    @abstractmethod
    def score_texts(self, texts: Texts) -> np.ndarray:
        """The hook a kind implements: rewards of ``texts`` ([n] float32). Models with a tokenizer honour
        its pair boundaries and the TRL reward-call convention (``rewardkit.templating``)."""

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> np.ndarray:
        """One reward per (prompt, response): float32 array of shape [n]."""
        return np.asarray(self.score_texts(Texts.of(prompts, responses)), dtype=np.float32)

    def score_pairs(self, pairs: Any) -> PairScores:
        """Score chosen and rejected of every pair in one call (so the engine batches them together)."""
        pairs = as_pairs(pairs)
        texts = Texts.from_pairs(pairs)
        return PairScores(*texts.split_pairs(self.score_texts(texts)))

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[Any], **kwargs) -> list[float]:
        """TRL ``reward_funcs`` signature: plain or conversational prompts/completions -> list of floats.

        Scores what ``GRPOTrainer`` scores for an ``nn.Module`` reward model (see ``rewardkit.templating``).
        """
        n = len(completions)
        columns = {k: v for k, v in kwargs.items() if isinstance(v, (list, tuple)) and len(v) == n}
        metadata = [{k: v[i] for k, v in columns.items()} for i in range(n)] if columns else None
        texts = Texts.of(
            prompts, [completion_text(c) for c in completions], reward_call=True, metadata=metadata
        )
        return [float(x) for x in self.score_texts(texts)]

    #: a name given to this model (None: its folder's name, else its kind)
    given_name: str | None = None

    @property
    def name(self) -> str:
        """What this model is called in logs and reports: a given name, else the name of the folder it
        was loaded from, else its kind."""
        if self.given_name:
            return self.given_name
        return Path(self.source).name if self.source else getattr(self, "kind", type(self).__name__)

    @name.setter
    def name(self, value: str | None) -> None:
        self.given_name = value

    @property
    def __name__(self) -> str:  # TRL names a reward_funcs callable by its __name__ (else its class)
        return self.name

    #: the reward models this one is made of (an ensemble's members, a wrapper's model); none here
    members: Sequence[RewardModel] = ()
    #: reward rows this model produces (heads x LoRA adapters, or members' rows); 1 here
    num_members: int = 1

    #: the token convention a model encodes with (``rewardkit.templating.Formatter``; a wrapper's is its
    #: model's); None for a model that does not tokenise here (an ensemble, a served model)
    formatter: Any = None
    #: the tokenizer behind ``formatter`` (None when there is none)
    tokenizer: Any = None
    #: the folder the model was loaded from (None when built in memory)
    source: str | None = None

    #: identity of this model's tokenisation (``Formatter.encoding_key``): models with equal keys share
    #: one encoding of the same texts (an ensemble encodes once per key); None: nothing to share
    encoding_key: str | None = None

    def member_rows(self, texts: Texts, items: Sequence[Any] | None = None) -> np.ndarray:
        """[num_members, n] rewards of every row this model produces (heads, adapters); ``items``: the
        texts already encoded by a model with the same :attr:`encoding_key`. Here: one row."""
        return np.asarray(self.score_texts(texts), dtype=np.float32)[None]

    def configure(self, chat_template: str | None = None, **engine: Any) -> None:
        """Set scoring-engine settings that are not None (``max_tokens``, ``max_batch_size``,
        ``progress``) and, with ``chat_template``, replace the token convention the model was saved with;
        on this model and every member. A model without an engine of its own passes them on."""
        for m in self.members:
            m.configure(chat_template, **engine)

    @property
    def dtype(self) -> str | None:
        """The floating dtype the model's weights score in (``"float32"``, ``"bfloat16"``, ...): a kind
        with weights gives its own; a model made of others gives their dtype when they share one; None
        when there is none (a served model) or the members differ."""
        found = {m.dtype for m in self.members} - {None}
        return found.pop() if len(found) == 1 else None

    def to_dtype(self, dtype: Any) -> RewardModel:
        """Cast in place for scoring (``"auto"``, ``"bfloat16"``, a ``torch.dtype``) to the weights
        ``load_reward_model(saved, dtype=dtype)`` gives (e.g. a model just trained in float32); on every
        member of a model made of others. Returns the model."""
        for m in self.members:
            m.to_dtype(dtype)
        return self

    def score_texts_reusing(self, texts: Texts, known: Mapping[int, np.ndarray]) -> np.ndarray:
        """Rewards of ``texts`` ([n] float64) when other models' rewards of the same texts are ``known``
        (``id(model)`` -> [n]): a model built on another (a length penalty over a model) reuses its
        rewards instead of scoring twice. Here: :meth:`score_texts`."""
        return np.asarray(self.score_texts(texts), dtype=np.float64)

    def score_columns(self, texts: Texts) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(rewards [n], extra per-sequence outputs by column name, each [n] or [n, k]) in one pass.

        An ensemble adds its members' rewards and their std, a length penalty the raw reward and the
        penalty; a plain model adds nothing."""
        return np.asarray(self.score_texts(texts), dtype=np.float32), {}

    def describe(self) -> dict[str, Any]:
        """What this model is, for ``/info`` and reports (never a secret): kind, reward rows, where it was
        loaded from, its token convention; kinds add their own settings."""
        f = self.formatter
        return {
            "kind": self.kind,
            "members": self.num_members,
            "source": self.source,
            "dtype": self.dtype,
            "chat_template": None if f is None else f.chat_template,
            "max_length": None if f is None else f.max_length,
        }

    def named_inputs(self) -> list[Path]:
        """Folders this model was loaded from or depends on (base, reference, members): never outputs."""
        return []

    @abstractmethod
    def save(self, path: str | os.PathLike, *, force: bool = False) -> None:
        """Write the model to a folder that ``rewardkit.load_reward_model`` restores; an existing ``path``
        is replaced only with ``force`` (atomically), and never a folder the model was loaded from."""

    @classmethod
    @abstractmethod
    def _load(
        cls, path: Path, manifest: dict[str, Any], *, load_member: Loader | None = None, **kwargs: Any
    ) -> RewardModel:
        """Restore from a folder whose manifest has this class's ``kind``. ``load_member``: the registry's
        loader (folder -> model, with the same ``kwargs``) for the models a folder holds (an ensemble's
        members, a wrapper's model); the registry passes it, so no kind imports the registry."""

    def _manifest(self, **fields: Any) -> dict[str, Any]:
        return {"kind": self.kind, "format": FORMAT_VERSION, "rewardkit_version": __version__, **fields}
