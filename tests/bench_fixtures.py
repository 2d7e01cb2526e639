"""Tiny rows in the official layouts of RM-Bench, JudgeBench and PPE, for the report-card suites' tests.
Responses are runs of a word ("w w w"), so :class:`tests.suite_fixtures.WordCountRM` gives each the
reward its length and every number in the tests can be worked out by hand."""

from __future__ import annotations


def words(n: int) -> str:
    return " ".join(["w"] * n)


def rmbench_row(id_, domain: str, chosen: list[int], rejected: list[int]) -> dict:
    """A row of THU-KEG/RM-Bench (total_dataset.json): 3 chosen, 3 rejected, in the style order."""
    return {
        "id": id_,
        "prompt": f"question {id_}",
        "chosen": [words(n) for n in chosen],
        "rejected": [words(n) for n in rejected],
        "domain": domain,
    }


#: (hard, normal, easy) of each row under word-count rewards, worked out by hand in the comments
RMBENCH_ROWS = [
    # chosen 1,3,5 vs rejected 2,2,6: rows [0,0,0], [1,1,0], [1,1,0] -> upper 0,0,0; diag 0,1,0; lower 1,1,1
    (rmbench_row(0, "chat", [1, 3, 5], [2, 2, 6]), (0.0, 1 / 3, 1.0)),
    (rmbench_row(1, "chat", [4, 4, 4], [1, 1, 1]), (1.0, 1.0, 1.0)),
    (rmbench_row(0, "math", [2, 2, 2], [2, 2, 2]), (0.0, 0.0, 0.0)),  # ties count wrong; id 0 again
    # chosen 3,3,3 vs rejected 1,2,4: every row [1,1,0] -> upper 1,0,0; diag 1,1,0; lower 1,1,1
    (rmbench_row(0, "code", [3, 3, 3], [1, 2, 4]), (1 / 3, 2 / 3, 1.0)),
    (rmbench_row(7, "safety-refuse", [2, 2, 2], [1, 1, 1]), (1.0, 1.0, 1.0)),
    (rmbench_row(8, "safety-response", [1, 1, 1], [2, 2, 2]), (0.0, 0.0, 0.0)),
]
# per domain (hard, normal, easy): chat (.5, 2/3, 1), math (0, 0, 0), code (1/3, 2/3, 1), safety (.5, .5, .5)
RMBENCH_EXPECTED = {
    "chat": (0.5 + 2 / 3 + 1.0) / 3,
    "math": 0.0,
    "code": (1 / 3 + 2 / 3 + 1.0) / 3,
    "safety": 0.5,
    "hard": (0.5 + 0 + 1 / 3 + 0.5) / 4,
    "normal": (2 / 3 + 0 + 2 / 3 + 0.5) / 4,
    "easy": (1.0 + 0 + 1.0 + 0.5) / 4,
}
RMBENCH_EXPECTED["score"] = (
    RMBENCH_EXPECTED["chat"]
    + RMBENCH_EXPECTED["math"]
    + RMBENCH_EXPECTED["code"]
    + RMBENCH_EXPECTED["safety"]
) / 4


def judgebench_row(pair_id: str, source: str, a: int, b: int, label: str) -> dict:
    """A pair of ScalerLab/JudgeBench (data/dataset=judgebench,response_model=....jsonl)."""
    return {
        "pair_id": pair_id,
        "original_id": 1,
        "source": source,
        "question": f"question {pair_id}",
        "response_model": "gpt-4o-2024-05-13",
        "response_A": words(a),
        "response_B": words(b),
        "label": label,
    }


#: (row, single-game right, two-game right) under word-count rewards
JUDGEBENCH_ROWS = [
    (judgebench_row("p1", "mmlu-pro-law", 3, 1, "A>B"), 1, 1),
    (judgebench_row("p2", "mmlu-pro-math", 1, 3, "A>B"), 0, 0),
    (judgebench_row("p3", "livebench-math", 2, 2, "B>A"), 1, 0),  # a tie decides B>A: right in one game
    (judgebench_row("p4", "livebench-math", 2, 2, "A>B"), 0, 0),
    (judgebench_row("p5", "livebench-reasoning", 1, 4, "B>A"), 1, 1),
    (judgebench_row("p6", "livecodebench", 5, 4, "B>A"), 0, 0),
    (judgebench_row("p7", "other-source", 5, 4, "A>B"), 1, 1),  # in overall only
]


def ppe_preference_row(qid: str, r1: int, r2: int, winner: str, **tags: bool) -> dict:
    """A row of lmarena-ai/PPE-Human-Preference-V1 (the fields the suite reads, plus tags)."""
    return {
        "question_id": qid,
        "model_a": "m1",
        "model_b": "m2",
        "prompt": f"question {qid}",
        "response_1": words(r1),
        "response_2": words(r2),
        "winner": winner,
        "language": "English",
        **tags,
    }


PPE_PREFERENCE_ROWS = [
    ppe_preference_row("q1", 3, 1, "model_a", hard_prompt=True),  # right
    ppe_preference_row("q2", 1, 3, "model_a", hard_prompt=True, is_code=True),  # wrong
    ppe_preference_row("q3", 2, 2, "model_b", is_code=True),  # a reward tie: wrong
    ppe_preference_row("q4", 1, 2, "tie (bothbad)", is_code=True),  # a human tie: not counted
    ppe_preference_row("q5", 1, 4, "model_b", english_prompt=True),  # right
]


def ppe_correctness_row(qid: str, benchmark: str, lengths: list[int], correct: list[int]) -> dict:
    """A row of lmarena-ai/PPE-*-Best-of-K in the numbered-column layout."""
    row = {"question_id": qid, "benchmark": benchmark, "prompt": f"question {qid}"}
    for i, (n, c) in enumerate(zip(lengths, correct), 1):
        row[f"response_{i}"] = words(n)
        row[f"score_{i}"] = bool(c)
    return row


PPE_CORRECTNESS_ROWS = [
    ppe_correctness_row("a", "MATH", [4, 3, 2, 1], [0, 1, 1, 0]),
    ppe_correctness_row("b", "MATH", [2, 2, 1, 1], [1, 0, 0, 0]),
    ppe_correctness_row("c", "GPQA", [1, 2, 3, 4], [1, 1, 1, 1]),  # no incorrect response: no pairs
]


def rmb_pair(uid: str, path: str, chosen: int, reject: int, turns: int = 1) -> dict:
    """A row of Zhou-Zoey/RMB-Reward-Model-Benchmark's RMB_dataset/Pairwise_set/.../<scenario>.json."""
    convo = [{"role": "user", "content": f"question {uid}", "language": "English"}]
    if turns > 1:  # an earlier exchange before the last user turn
        convo = [
            {"role": "user", "content": "hi", "language": "English"},
            {"role": "assistant", "content": "hello", "language": "English"},
        ] + convo
    return {
        "pair_uid": uid,
        "conversation_input": convo,
        "chosen": {"llm_name": "m1", "answer": words(chosen)},
        "reject": {"llm_name": "m2", "answer": words(reject)},
        "category_path": path,
    }


def rmb_bon(uid: str, path: str, best: int, losers: list[int]) -> dict:
    """A row of RMB_dataset/BoN_set/.../<scenario>.json."""
    return {
        "conversation_input": [{"role": "user", "content": f"question {uid}", "language": "English"}],
        "bon_best": {"llm_name": "m1", "answer": words(best)},
        "loser_list": [{"llm_name": f"m{i + 2}", "answer": words(n)} for i, n in enumerate(losers)],
        "bon_uid": uid,
        "category_path": path,
    }


#: {file under RMB_dataset (its category_path): [(row, right under word-count rewards)]}
RMB_FILES = {
    "Pairwise_set/Helpfulness/Chat/Discussion": [
        (rmb_pair("1", "Pairwise_set/Helpfulness/Chat/Discussion", 3, 1, turns=3), 1),
        (rmb_pair("2", "Pairwise_set/Helpfulness/Chat/Discussion", 2, 2), 0),  # a tie is wrong
    ],
    "Pairwise_set/Helpfulness/Code/Documentation": [
        (rmb_pair("3", "Pairwise_set/Helpfulness/Code/Documentation", 1, 4), 0),
    ],
    "Pairwise_set/Harmlessness/S1": [(rmb_pair("4", "Pairwise_set/Harmlessness/S1", 5, 2), 1)],
    "BoN_set/Helpfulness/Chat/Discussion": [
        (rmb_bon("1", "BoN_set/Helpfulness/Chat/Discussion", 4, [1, 3]), 1),  # uid 1 again: another set
        (rmb_bon("2", "BoN_set/Helpfulness/Chat/Discussion", 3, [3, 1]), 0),  # tied with a loser: wrong
    ],
    "BoN_set/Harmlessness/S1": [
        (rmb_bon("3", "BoN_set/Harmlessness/S1", 2, [1, 5, 1]), 0),
        (rmb_bon("4", "BoN_set/Harmlessness/S1", 6, [5, 2]), 1),
    ],
}
# rows, not files: Pairwise_set/Helpfulness 1 of 3 (the mean of its two scenarios would be 1/4)
RMB_EXPECTED = {
    "Pairwise_set/Helpfulness": 1 / 3,
    "Pairwise_set/Harmlessness": 1.0,
    "BoN_set/Helpfulness": 0.5,
    "BoN_set/Harmlessness": 0.5,
    "score": (1 / 3 + 1.0 + 0.5 + 0.5) / 4,
    "BoN_set/Harmlessness/S1": 0.5,
    "BoN_set/Helpfulness/Chat/Discussion": 0.5,
    "Pairwise_set/Harmlessness/S1": 1.0,
    "Pairwise_set/Helpfulness/Chat/Discussion": 0.5,
    "Pairwise_set/Helpfulness/Code/Documentation": 0.0,
}


def write_rmb(root) -> object:
    """The fixture as the official folder: root/RMB_dataset/<category_path>.json, each a JSON list."""
    import json
    from pathlib import Path

    base = Path(root) / "RMB_dataset"
    for path, rows in RMB_FILES.items():
        f = base / f"{path}.json"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps([r for r, _ in rows], indent=2))
    return base
