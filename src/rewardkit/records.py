"""One raw record (any supported format) -> :class:`~rewardkit.records.PreferencePair`, and the
degeneracies a loader counts: explicit prompts, implicit shared prefixes (TRL's ``extract_prompt``),
conversations and HH-RLHF transcripts. Every malformed record is a :class:`DataError` naming its
location and field."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from rewardkit.errors import DataError

Message = dict[str, str]
Prompt = str | list[Message]

_HH_HUMAN = "\n\nHuman:"
_HH_ASSISTANT = "\n\nAssistant:"
_FILE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".csv")


@dataclass(frozen=True)
class PreferencePair:
    """One preference: ``chosen`` is preferred over ``rejected`` as an answer to ``prompt``."""

    prompt: Prompt
    chosen: str
    rejected: str
    metadata: dict[str, Any] = field(default_factory=dict)




def _check_messages(value: Any, where: str, name: str) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: field {name!r}: expected a non-empty list of messages")
    for j, m in enumerate(value):
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("role"), str)
            or not isinstance(m.get("content"), str)
        ):
            raise DataError(f"{where}: field {name!r}: message {j} needs string 'role' and 'content'")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _response_text(value: Any, where: str, name: str) -> str:
    """A response given as a string or as assistant message(s)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        value = [value]
    msgs = _check_messages(value, where, name)
    if len(msgs) != 1 or msgs[0]["role"] != "assistant":
        raise DataError(
            f"{where}: field {name!r}: expected one assistant message, got roles {[m['role'] for m in msgs]}"
        )
    return msgs[0]["content"]


def _parse_hh(transcript: str, where: str, name: str) -> tuple[list[Message], str]:
    """'\\n\\nHuman: a\\n\\nAssistant: b ...' -> (messages before the last assistant turn, last answer)."""
    turns: list[Message] = []
    rest = transcript
    if not rest.startswith(_HH_HUMAN):
        raise DataError(f"{where}: field {name!r}: HH transcript must start with '\\n\\nHuman:'")
    while rest:
        if rest.startswith(_HH_HUMAN):
            role, rest = "user", rest[len(_HH_HUMAN) :]
        elif rest.startswith(_HH_ASSISTANT):
            role, rest = "assistant", rest[len(_HH_ASSISTANT) :]
        else:  # pragma: no cover - guarded by the split below
            raise DataError(f"{where}: field {name!r}: malformed HH transcript")
        cut = [i for i in (rest.find(_HH_HUMAN), rest.find(_HH_ASSISTANT)) if i >= 0]
        end = min(cut) if cut else len(rest)
        turns.append({"role": role, "content": rest[:end].strip()})
        rest = rest[end:]
    if turns[-1]["role"] != "assistant":
        raise DataError(f"{where}: field {name!r}: HH transcript does not end with an Assistant turn")
    return turns[:-1], turns[-1]["content"]


def _split_implicit_messages(
    chosen: list[Message], rejected: list[Message], where: str
) -> tuple[list[Message], str, str]:
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    if n == 0:
        raise DataError(f"{where}: implicit-prompt record: 'chosen' and 'rejected' share no leading messages")
    return (
        chosen[:n],
        _response_text(chosen[n:], where, "chosen"),
        _response_text(rejected[n:], where, "rejected"),
    )


def _split_implicit_text(chosen: str, rejected: str, where: str) -> tuple[str, str, str]:
    """TRL's ``extract_prompt``: the prompt is the common prefix, except that a space just before the
    first difference goes to the responses (``'The sky is'`` + ``' blue.'``)."""
    n = len(os.path.commonprefix([chosen, rejected]))
    if n == 0 or n == len(chosen) or n == len(rejected):
        raise DataError(
            f"{where}: implicit-prompt record: 'chosen' and 'rejected' need a shared, proper prefix"
        )
    if chosen[n - 1] == " ":
        n -= 1
    if n == 0:
        raise DataError(f"{where}: implicit-prompt record: the shared prefix is only a space")
    return chosen[:n], chosen[n:], rejected[n:]


def _check_unicode(record: dict[str, Any], where: str) -> None:
    """Refuse text no tokenizer or UTF-8 file can hold: a lone surrogate (JSON's ``"\\ud800"``)."""
    stack: list[tuple[str, Any]] = list(record.items())
    while stack:
        name, value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as e:
                raise DataError(
                    f"{where}: field {name!r}: not valid Unicode text (a lone surrogate "
                    f"{value[e.start]!r} at character {e.start})"
                ) from None
        elif isinstance(value, dict):
            stack += [(name, v) for v in value.values()]
        elif isinstance(value, list):
            stack += [(name, v) for v in value]


def normalize_record(
    record: dict[str, Any],
    where: str,
    columns: dict[str, str] | None = None,
    has_prompt: bool | None = None,
) -> PreferencePair:
    """One raw record (any supported format) -> PreferencePair. ``where`` names it in errors.

    ``has_prompt``: whether records of this source carry a prompt field (the format, set by the first
    record). Only records of a source without prompts are split into prompt and responses (implicit
    prompt); a null prompt, or a missing one where the source has prompts, is an error.
    """
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    _check_unicode(record, where)
    cols = {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected", **(columns or {})}
    for key in ("chosen", "rejected"):
        if cols[key] not in record or record[cols[key]] is None:
            raise DataError(f"{where}: missing field {cols[key]!r}")
    raw_c, raw_r = record[cols["chosen"]], record[cols["rejected"]]
    meta = {k: v for k, v in record.items() if k not in (cols["prompt"], cols["chosen"], cols["rejected"])}
    if has_prompt is None:
        has_prompt = cols["prompt"] in record
    if cols["prompt"] in record and record[cols["prompt"]] is None:
        raise DataError(f"{where}: field {cols['prompt']!r} is null")
    if has_prompt and cols["prompt"] not in record:
        raise DataError(f"{where}: missing field {cols['prompt']!r} (the other records have one)")
    if not has_prompt and cols["prompt"] in record:
        raise DataError(
            f"{where}: field {cols['prompt']!r} present, but the first record had none (implicit prompts); "
            "a source must use one format"
        )
    raw_p = record.get(cols["prompt"])

    if raw_p is not None:  # explicit prompt (string or conversational)
        if isinstance(raw_p, str):
            prompt: Prompt = raw_p
        else:
            prompt = _check_messages(raw_p, where, cols["prompt"])
        return PreferencePair(
            prompt,
            _response_text(raw_c, where, cols["chosen"]),
            _response_text(raw_r, where, cols["rejected"]),
            meta,
        )

    if isinstance(raw_c, list) and isinstance(raw_r, list):  # implicit prompt, conversational
        c = _check_messages(raw_c, where, cols["chosen"])
        r = _check_messages(raw_r, where, cols["rejected"])
        prompt, chosen, rejected = _split_implicit_messages(c, r, where)
        return PreferencePair(prompt, chosen, rejected, meta)

    if isinstance(raw_c, str) and isinstance(raw_r, str):
        if raw_c.startswith(_HH_HUMAN) and _HH_ASSISTANT in raw_c:  # HH-RLHF transcripts
            p_c, chosen = _parse_hh(raw_c, where, cols["chosen"])
            p_r, rejected = _parse_hh(raw_r, where, cols["rejected"])
            if p_c != p_r:
                raise DataError(
                    f"{where}: HH record: 'chosen' and 'rejected' transcripts differ before the last answer"
                )
            return PreferencePair(p_c, chosen, rejected, meta)
        prompt, chosen, rejected = _split_implicit_text(raw_c, raw_r, where)
        return PreferencePair(prompt, chosen, rejected, meta)

    raise DataError(
        f"{where}: fields {cols['chosen']!r}/{cols['rejected']!r}: expected strings or message lists, "
        f"got {type(raw_c).__name__}/{type(raw_r).__name__}"
    )


KNOWN_ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "function", "ipython"})


def degenerate(pair: PreferencePair) -> list[str]:
    """Kinds of degeneracy of one pair: data that loads but likely means something else than intended."""
    kinds = []
    if pair.chosen == pair.rejected:
        kinds.append("chosen == rejected")
    if not pair.chosen.strip() or not pair.rejected.strip():
        kinds.append("an empty or whitespace-only response")
    if isinstance(pair.prompt, str):
        if not pair.prompt.strip():
            kinds.append("an empty or whitespace-only prompt")
    else:
        if not any(m["content"].strip() for m in pair.prompt):
            kinds.append("an empty or whitespace-only prompt")
        roles = {m["role"] for m in pair.prompt} - KNOWN_ROLES
        if roles:
            kinds.append(f"unknown role(s) {sorted(roles)}")
        if pair.prompt[-1]["role"] == "assistant":
            kinds.append("a prompt ending with an assistant turn")
    return kinds


