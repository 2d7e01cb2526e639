"""Named data recipes for the shift benchmark: how a public preference set's records map onto
prompt / chosen / rejected + the metadata the shifts are defined on, and its default shifts.

Each recipe's ``transform`` takes one raw record (the public schema) and returns a record that
:func:`rewardkit.data.normalize_record` reads, or raises :class:`Excluded` for a record the recipe
leaves out on purpose (ties, single-response records): those are counted, never dropped silently.
Recipes work the same on the hub dataset and on local files in the same schema.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rewardkit.data import Excluded, PreferenceDataset, collect_pairs
from rewardkit.errors import DataError
from rewardkit.readers import iter_source

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    hub: str | None = None
    hub_split: str = "train"
    hub_subsets: tuple[str, ...] = ()  # data_dir values loaded one by one and tagged as ``subset``
    hub_config: str | None = None
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    shift: dict[str, Any] = field(default_factory=dict)


def _best_worst(items: list[dict[str, Any]], score: str, where: str) -> tuple[dict, dict]:
    scored = [c for c in items if isinstance(c.get(score), (int, float))]
    if len(scored) < 2:
        raise Excluded(f"{where}: fewer than two scored responses")
    best = max(scored, key=lambda c: c[score])
    worst = min(scored, key=lambda c: c[score])
    if best[score] == worst[score]:
        raise Excluded(f"{where}: all responses tie on {score!r}")
    return best, worst


def _user(prompt: Any) -> Any:
    """An instruction as a one-message conversation (templated under the ``auto`` convention)."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


def _alpaca_eval(r: dict[str, Any]) -> dict[str, Any]:
    if "chosen" in r:  # already in rewardkit's schema (e.g. ../shared/data/alpaca_eval_gpt4.jsonl.gz)
        return {**r, "prompt": _user(r.get("prompt"))} if r.get("prompt") is not None else r
    pref = r.get("preference")
    if pref not in (1, 2, 1.0, 2.0):
        raise Excluded(f"preference {pref!r} is not 1 or 2 (tie or missing)")
    w, lo = ("1", "2") if pref in (1, 1.0) else ("2", "1")
    return {
        "prompt": _user(r["instruction"]),
        "chosen": r[f"output_{w}"],
        "rejected": r[f"output_{lo}"],
        "subset": r.get("dataset"),
        "chosen_generator": r.get(f"generator_{w}"),
        "rejected_generator": r.get(f"generator_{lo}"),
        "annotator": r.get("annotator"),
    }


def _ultrafeedback(r: dict[str, Any]) -> dict[str, Any]:
    best, worst = _best_worst(r["completions"], "overall_score", "completions")
    return {
        "prompt": _user(r["instruction"]),
        "chosen": best["response"],
        "rejected": worst["response"],
        "subset": r.get("source"),
        "chosen_generator": best.get("model"),
        "rejected_generator": worst.get("model"),
    }


def _tldr(r: dict[str, Any]) -> dict[str, Any]:
    info, summaries, choice = r["info"], r["summaries"], r["choice"]
    if choice not in (0, 1) or len(summaries) != 2:
        raise Excluded(f"choice {choice!r} over {len(summaries)} summaries")
    is_news = info.get("article") is not None and info.get("post") is None
    doc = info["article"] if is_news else info["post"]
    title = info.get("title") or ""
    prompt = f"{'Article' if is_news else 'Post'}: {title}\n\n{doc}\n\nTL;DR:"
    w, lo = summaries[choice], summaries[1 - choice]
    return {
        "prompt": prompt,  # plain text: the summary carries its separating space (TRL's TL;DR format)
        "chosen": " " + w["text"].strip(),
        "rejected": " " + lo["text"].strip(),
        "subset": "cnndm" if is_news else "tldr",
        "site": info.get("site") or info.get("subreddit"),
        "chosen_generator": w.get("policy"),
        "rejected_generator": lo.get("policy"),
    }


def _arena(r: dict[str, Any]) -> dict[str, Any]:
    winner = r["winner"]
    if winner not in ("model_a", "model_b"):
        raise Excluded(f"winner {winner!r}")
    lose = "model_b" if winner == "model_a" else "model_a"
    conv_w, conv_l = r["conversation_" + winner[-1]], r["conversation_" + lose[-1]]
    return {
        "chosen": conv_w,  # implicit prompt: the shared turns before the last answer
        "rejected": conv_l,
        "subset": r.get("language"),
        "chosen_generator": r[winner],
        "rejected_generator": r[lose],
    }


def _nectar(r: dict[str, Any]) -> dict[str, Any]:
    # rank 1 is best; the recipe pairs the best with the worst answer
    ranked = [{**a, "neg_rank": -a["rank"]} for a in r["answers"] if isinstance(a.get("rank"), (int, float))]
    best, worst = _best_worst(ranked, "neg_rank", "answers")
    prompt = r["prompt"].rstrip()
    src = r.get("source")
    return {
        "chosen": f"{prompt} {best['answer'].strip()}",  # HH-style transcripts
        "rejected": f"{prompt} {worst['answer'].strip()}",
        "subset": src[0] if isinstance(src, list) and src else src,
        "chosen_generator": best.get("model"),
        "rejected_generator": worst.get("model"),
    }


def _webgpt(r: dict[str, Any]) -> dict[str, Any]:
    s0, s1 = r["score_0"], r["score_1"]
    if s0 == s1:
        raise Excluded(f"tie (score_0 == score_1 == {s0})")
    w, lo = ("0", "1") if s0 > s1 else ("1", "0")
    q = r["question"]
    return {
        "prompt": _user(q["full_text"]),
        "chosen": r[f"answer_{w}"],
        "rejected": r[f"answer_{lo}"],
        "subset": q.get("dataset"),
    }


def _hh(r: dict[str, Any]) -> dict[str, Any]:
    return r  # HH transcripts are read natively; ``subset`` is added from the data_dir


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe(
            "synthetic",
            "built-in procedurally generated task with a known gold reward (no download)",
            shift={
                "prompt_field": "subset",
                "id_prompts": ["cooking", "travel"],
                "ood_prompts": ["science", "finance"],
                "id_responses": ["gen_a", "gen_b"],
                "ood_responses": ["gen_c"],
            },
        ),
        Recipe(
            "alpaca_eval",
            "AlpacaEval GPT-4 annotations: every pair is text_davinci_003 vs another generator",
            hub="tatsu-lab/alpaca_eval",
            hub_config="alpaca_eval_gpt4_baseline",
            hub_split="eval",
            transform=_alpaca_eval,
            shift={
                "prompt_field": "subset",
                "id_prompts": ["helpful_base", "oasst", "selfinstruct"],
                "ood_prompts": ["koala", "vicuna"],
                # trained on pairs against open-weight models, tested on pairs against API models
                "id_responses": None,
                "ood_responses": [
                    "claude",
                    "claude-2",
                    "cohere",
                    "gpt-3.5-turbo-0301",
                    "gpt-3.5-turbo-1106",
                    "gpt35_turbo_instruct",
                    "gpt4",
                    "gpt4_0314",
                    "gpt4_1106_preview",
                    "mistral-medium",
                    "text_davinci_001",
                ],
                "shared_responses": ["text_davinci_003"],
            },
        ),
        Recipe(
            "hh_rlhf",
            "Anthropic HH-RLHF: prompt shift across its subsets (no generator metadata)",
            hub="Anthropic/hh-rlhf",
            hub_subsets=("helpful-base", "harmless-base", "helpful-online", "helpful-rejection-sampled"),
            transform=_hh,
            shift={
                "prompt_field": "subset",
                "id_prompts": ["helpful-base"],
                "response_fields": [],
            },
        ),
        Recipe(
            "ultrafeedback",
            "UltraFeedback: best vs worst completion by overall score; prompt source and model shift",
            hub="openbmb/UltraFeedback",
            transform=_ultrafeedback,
            shift={
                "prompt_field": "subset",
                "id_prompts": ["evol_instruct", "sharegpt", "ultrachat"],
                "shared_responses": [],
            },
        ),
        Recipe(
            "tldr",
            "OpenAI summarize-from-feedback: train on Reddit TL;DR, test on CNN/DailyMail (prompt shift)",
            hub="openai/summarize_from_feedback",
            hub_config="comparisons",
            hub_split="validation",
            transform=_tldr,
            shift={"prompt_field": "subset", "id_prompts": ["tldr"], "ood_prompts": ["cnndm"]},
        ),
        Recipe(
            "chatbot_arena",
            "Chatbot Arena conversations: shift by language and by model (ties excluded)",
            hub="lmsys/chatbot_arena_conversations",
            transform=_arena,
            shift={"prompt_field": "subset", "id_prompts": ["English"]},
        ),
        Recipe(
            "nectar",
            "Nectar: rank-1 vs last-ranked answer; shift by prompt source and model",
            hub="berkeley-nest/Nectar",
            transform=_nectar,
            shift={"prompt_field": "subset", "id_prompts": ["anthropic-hh", "sharegpt"]},
        ),
        Recipe(
            "webgpt",
            "WebGPT comparisons: shift by question dataset (ties excluded; no generator metadata)",
            hub="openai/webgpt_comparisons",
            transform=_webgpt,
            shift={"prompt_field": "subset", "id_prompts": ["eli5"], "response_fields": []},
        ),
    ]
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise DataError(f"unknown data recipe {name!r}; known: {', '.join(RECIPES)}")
    return RECIPES[name]


def _hub_records(recipe: Recipe):
    import datasets

    parts = recipe.hub_subsets or (None,)
    for sub in parts:
        try:
            ds = datasets.load_dataset(recipe.hub, recipe.hub_config, data_dir=sub, split=recipe.hub_split)
        except Exception as e:  # network / name errors: one line, with the cause
            raise DataError(
                f"{recipe.hub}: could not load ({type(e).__name__}: {e}); pass --data with a local copy"
            ) from None
        for i, rec in enumerate(ds):
            yield f"{recipe.hub}/{sub or recipe.hub_split}: row {i}", ({**rec, "subset": sub} if sub else rec)


def load_recipe(
    name: str, source: Any = None, *, on_error: str = "raise", limit: int | None = None
) -> PreferenceDataset:
    """Pairs of a named recipe from ``source`` (a local file / rows in the public schema) or, when
    ``source`` is None, from the recipe's hub dataset. Records the recipe excludes (ties, ...) and, with
    ``on_error="skip"``, malformed records are kept in ``dataset.skipped`` with the reason."""
    recipe = get_recipe(name)
    if name == "synthetic":
        raise DataError("the synthetic recipe has no records to load; leave --data unset")
    if source is None:
        if recipe.hub is None:
            raise DataError(f"recipe {name!r} needs --data")
        where_name, records = recipe.hub, _hub_records(recipe)
    else:
        where_name, records = iter_source(source, recipe.hub_split)

    def transform(rec: dict[str, Any]) -> dict[str, Any]:
        try:
            return recipe.transform(rec) if recipe.transform else rec
        except Excluded as e:
            raise Excluded(f"excluded by recipe {name}: {e}") from None

    return collect_pairs(
        f"{where_name} ({name})",
        records,
        on_error=on_error,  # type: ignore[arg-type]
        limit=limit,
        transform=transform,
        schema=name,
        what=f"preference pairs from recipe {name!r}",
    )
