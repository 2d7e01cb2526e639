"""Chat templates that come with a model are rendered under bounds (rewardkit.template_guard): a template
that would allocate gigabytes, loop for hours, raise or not parse is one line naming its file, exit 2,
both when it is checked on load (a probe render) and when the data drives it past a bound."""

from __future__ import annotations

import hashlib
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rewardkit import BradleyTerryRM, load_reward_model
from rewardkit.errors import ModelError
from rewardkit.template_guard import MAX_CHARS
from tests.cli_helpers import run_cli as _run

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def base(tiny_lm, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tpl")
    BradleyTerryRM.from_pretrained(tiny_lm, head_seed=0).save(d / "rm")
    assert (d / "rm" / "chat_template.jinja").is_file()
    rows = [
        {"prompt": [{"role": "user", "content": "hello there " * 10}], "chosen": " yes", "rejected": " no"},
        {"prompt": [{"role": "user", "content": "what is up"}], "chosen": " fine", "rejected": " bad"},
    ]
    (d / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def _model(base: Path, tmp_path: Path, template: str) -> Path:
    rm = tmp_path / "rm"
    shutil.copytree(base / "rm", rm)
    (rm / "chat_template.jinja").write_text(template)
    return rm


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()
    }


# (name, template, message): every one fails in well under a second, in one line naming the file
HOSTILE = [
    ("constant repetition", "{% set s = 'x' * 3000000000 %}{{ s }}", "constant repetition"),
    (
        "folded in a dead branch",
        "{% if false %}{{ 'x' | center(3000000000) }}{% endif %}",
        "center(3000000000)",
    ),
    ("repetition at render", "{% set n = 3000000000 %}{{ 'x' * n }}", "repetition"),
    (
        "nested loops",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "loop steps",
    ),
    ("one huge range", "{% for i in range(10**9) %}{% endfor %}", "range of"),
    ("str method width", "{{ 'x'.ljust(3000000000) }}", "ljust(3000000000)"),
    ("printf width", "{% set f = '%3000000000s' %}{{ f % 'x' }}", "format width"),
    (
        "doubling namespace",
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "more than",
    ),
    ("doubling macro", "{% macro d(s) %}{{ d(s ~ s) }}{% endmacro %}{{ d('x') }}", "more than"),
    ("lipsum", "{{ lipsum(n=1000000) }}", "lipsum"),
    ("replace growth", "{% set s = 'x' * 4000000 %}{{ s | replace('x', 'xx') }}", "replace()"),
    ("raises", "{{ raise_exception('no system prompt allowed') }}", "no system prompt allowed"),
    ("does not parse", "{% for m in messages %}{{ m['content'] }}", "chat template line 1"),
    ("data-driven", "{% for m in messages %}{{ m['content'] * 100000 }}{% endfor %}", "more than"),
]


@pytest.mark.parametrize("name,template,message", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_templates_are_one_line_errors(base, tmp_path, capsys, name, template, message):
    rm = _model(base, tmp_path, template)
    before = _digest(tmp_path) | _digest(base)
    t = time.perf_counter()
    code, err = _run(
        ["score", "--rm", rm, "--data", base / "data.jsonl", "--out", tmp_path / "o.jsonl"], capsys
    )
    assert time.perf_counter() - t < 20
    assert code == 2, err
    assert (
        err.startswith(f"error: {rm / 'chat_template.jinja'}: chat template") and len(err.splitlines()) == 1
    ), err
    assert message in err
    assert not (tmp_path / "o.jsonl").exists()
    assert _digest(tmp_path) | _digest(base) == before


def test_the_probe_runs_on_load_and_a_sound_template_scores_as_the_tokenizer_renders(base, tmp_path):
    bad = _model(base, tmp_path / "bad", "{% set s = 'x' * 3000000000 %}")
    with pytest.raises(ModelError, match="chat_template.jinja: chat template refused"):
        load_reward_model(bad)
    good = _model(base, tmp_path / "good", CHATML)
    rm = load_reward_model(good)
    conv = [{"role": "user", "content": "hi"}]
    enc = rm.formatter.encode(conv, " yes")
    ref = rm.tokenizer.apply_chat_template(
        [*conv, {"role": "assistant", "content": " yes"}], tokenize=True, return_dict=True
    )["input_ids"]
    assert list(enc.ids) == list(ref)


def _limited():
    resource.setrlimit(resource.RLIMIT_DATA, (2 * 2**30, 2 * 2**30))
    resource.setrlimit(resource.RLIMIT_CPU, (30, 30))


@pytest.mark.parametrize(
    "template", [HOSTILE[0][1], HOSTILE[3][1], HOSTILE[7][1]], ids=["repeat", "loops", "doubling"]
)
def test_peak_memory_and_time_are_bounded_in_a_real_process(base, tmp_path, template):
    """The whole command in a subprocess capped at 2 GB of data and 30 s of CPU: it fails in one line,
    its peak resident memory well under the cap (before the bounds: 12 GB and minutes)."""
    rm = _model(base, tmp_path, template)
    exe = Path(sys.executable).parent / "rewardkit"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    r = subprocess.run(
        [
            str(exe),
            "score",
            "--rm",
            str(rm),
            "--data",
            str(base / "data.jsonl"),
            "--out",
            str(tmp_path / "o"),
        ],
        preexec_fn=_limited,
        capture_output=True,
        text=True,
        timeout=60,
    )
    wall = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    assert wall < 30
    assert peak_mb < 2048 or before / 1024 >= 2048  # ru_maxrss of children is the largest so far


def test_bounds_are_generous_for_real_templates(base, tmp_path):
    """A long conversation (well past what a reward model reads) renders: the bounds only stop abuse."""
    rm = load_reward_model(_model(base, tmp_path, CHATML))
    conv = [{"role": "user" if i % 2 == 0 else "assistant", "content": "word " * 2000} for i in range(41)]
    enc = rm.formatter.encode(conv, " fine")
    assert len(enc.ids) > 0
    assert MAX_CHARS >= 4 * 2**20
