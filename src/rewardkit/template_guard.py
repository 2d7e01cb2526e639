"""Chat templates come with downloaded models: each render is first run here, bounded, before the
tokenizer renders it for real.

The guard compiles the template in a sandbox that mirrors the one ``transformers`` renders in (its
extensions, filters and globals) with bounds added: string and list repetition (``*``) and powers
(``**``) whose result would pass :data:`MAX_CHARS` are refused before they allocate, as are filters and
string methods asked to pad or indent past it; ``range`` is lazy and shares an iteration budget
(:data:`MAX_STEPS`) over the whole render, and every call, attribute, item and loop step checks a
deadline (:data:`MAX_SECONDS`); the output is streamed and stops at :data:`MAX_CHARS`. A render that
passes runs unchanged in the tokenizer (whose token convention is therefore untouched); one that does
not is a :class:`~rewardkit.errors.ModelError` naming the template file. Everything stays in Python, so
Ctrl-C always stops it.
"""

from __future__ import annotations

import re
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from rewardkit.errors import ModelError

#: characters a render may produce, and any string or list a template builds may hold
MAX_CHARS = 4 * 2**20
#: loop steps over ``range`` in one render (nested loops multiply; a chat needs a few hundred)
MAX_STEPS = 1_000_000
#: seconds one render may take
MAX_SECONDS = 5.0
#: filters and str methods whose numeric arguments size their result
_SIZED = (
    "center",
    "ljust",
    "rjust",
    "zfill",
    "indent",
    "wordwrap",
    "truncate",
    "expandtabs",
    "format",
    "replace",
)
#: a printf / format width of seven or more digits
_WIDE = re.compile(r"%[-+ #0]*\d{7,}|\{[^{}]*:[^{}]*\d{7,}")


class TemplateBoundError(Exception):
    """A render passed one of the bounds."""


def _size(x: Any) -> int:
    return len(x) if isinstance(x, (str, bytes, list, tuple)) else 0


def _check_sized(name: str, args: tuple, kwargs: dict) -> None:
    """Refuse a call that would build more than MAX_CHARS: a huge width, a huge format width, a
    replacement whose result would pass the bound, or an argument already too long."""
    values = (*args, *kwargs.values())
    for a in values:
        if isinstance(a, int) and not isinstance(a, bool) and a > MAX_CHARS:
            raise TemplateBoundError(f"{name}({a}) would build more than {MAX_CHARS} characters")
        if _size(a) > MAX_CHARS:
            raise TemplateBoundError(f"{name}() was given more than {MAX_CHARS} characters")
        if name == "format" and isinstance(a, str) and _WIDE.search(a):
            raise TemplateBoundError(f"format width in {a[:40]!r} is too large")
    if name == "replace" and len(values) >= 3 and all(isinstance(v, str) for v in values[:3]):
        s, old, new = values[:3]
        grows = (s.count(old) if old else len(s) + 1) * max(len(new) - len(old), 0)
        if len(s) + grows > MAX_CHARS:
            raise TemplateBoundError(f"replace() would build more than {MAX_CHARS} characters")


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    """Jinja's ``lipsum`` global, refused past the bounds."""
    if not all(isinstance(v, int) for v in (n, min, max)) or n * max * 12 > MAX_CHARS:
        raise TemplateBoundError(f"lipsum({n}, max={max}) would build more than {MAX_CHARS} characters")
    from jinja2.utils import generate_lorem_ipsum

    return generate_lorem_ipsum(n, html, min, max)


def _sized_filter(fn, name: str, tick, internal: tuple):
    """Filter ``fn`` (one that builds strings) checked against the bounds at each call, after ``tick``
    (the render's deadline); jinja's own arguments (``internal`` types) are not counted."""

    def bounded(*args, **kwargs):
        tick()
        _check_sized(name, tuple(a for a in args if not isinstance(a, internal)), kwargs)
        return fn(*args, **kwargs)

    for attr in ("jinja_pass_arg",):  # keep jinja's pass_context / pass_environment markers
        if hasattr(fn, attr):
            setattr(bounded, attr, getattr(fn, attr))
    return bounded


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse a ``*``, ``**``, ``+`` or ``%`` whose result would pass the bounds, before it is built."""
    if operator == "*":
        n, seq = (right, left) if isinstance(right, int) else (left, right)
        if isinstance(n, int) and _size(seq) * max(n, 0) > MAX_CHARS:
            raise TemplateBoundError(f"a repetition would build more than {MAX_CHARS} items")
    elif operator == "**":
        if isinstance(right, (int, float)) and abs(right) > 64 and abs(left) > 1:
            raise TemplateBoundError(f"power {left!r} ** {right!r} is too large")
    elif operator == "+" and _size(left) + _size(right) > MAX_CHARS:
        raise TemplateBoundError(f"a concatenation would build more than {MAX_CHARS} items")
    elif operator == "%" and isinstance(left, str) and _WIDE.search(left):
        raise TemplateBoundError(f"format width in {left[:40]!r} is too large")


def _check_call(obj: Any, args: tuple, kwargs: dict) -> None:
    """Refuse a call whose arguments pass the bounds (a string method that builds strings, or any call
    given a value that is already too large, e.g. a macro called on a string that keeps doubling)."""
    name = getattr(obj, "__name__", "")
    owner = getattr(obj, "__self__", None)
    if isinstance(owner, str) and name in _SIZED:
        _check_sized(name, (owner, *args), kwargs)
    for a in (*args, *kwargs.values()):
        if _size(a) > MAX_CHARS:
            raise TemplateBoundError(f"a call was given more than {MAX_CHARS} characters")


@lru_cache(maxsize=32)
def _compiled(source: str):
    import jinja2
    from jinja2.nodes import EvalContext
    from jinja2.runtime import Context
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from transformers.utils.chat_template_utils import _compile_jinja_template

    # the tokenizer's own sandbox, as configured (an empty template: the untrusted one is never compiled
    # there before it passes, since jinja folds constant expressions such as 'x' * 3000000000 at compile)
    hf_env = _compile_jinja_template("").environment

    jinja_internal = (jinja2.Environment, EvalContext, Context)

    class Bounded(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**", "+", "%"})

        def __init__(self):
            super().__init__(
                trim_blocks=hf_env.trim_blocks,
                lstrip_blocks=hf_env.lstrip_blocks,
                extensions=[type(e) for e in hf_env.extensions.values()],
            )
            self.filters.update(hf_env.filters)
            self.globals.update(hf_env.globals)
            self.globals["range"] = self._range
            if "lipsum" in self.globals:
                self.globals["lipsum"] = _lipsum
            for name in _SIZED:
                if name in self.filters:
                    self.filters[name] = _sized_filter(self.filters[name], name, self.tick, jinja_internal)
            self.state = threading.local()  # one render's deadline and steps, per thread

        def start(self) -> None:
            self.state.deadline, self.state.steps = time.monotonic() + MAX_SECONDS, 0

        def tick(self) -> None:
            if time.monotonic() > getattr(self.state, "deadline", float("inf")):
                raise TemplateBoundError(f"render took longer than {MAX_SECONDS:g} s")

        def _range(self, *args: int):
            r = range(*args)
            if len(r) > MAX_STEPS:
                raise TemplateBoundError(f"range of {len(r)} items (at most {MAX_STEPS})")
            for i in r:
                self.state.steps = getattr(self.state, "steps", 0) + 1
                if self.state.steps > MAX_STEPS:
                    raise TemplateBoundError(f"more than {MAX_STEPS} loop steps")
                self.tick()
                yield i

        def call_binop(self, context, operator, left, right):
            self.tick()
            _check_binop(operator, left, right)
            return super().call_binop(context, operator, left, right)

        def call(self, context, obj, *args, **kwargs):
            self.tick()
            _check_call(obj, args, kwargs)
            return super().call(context, obj, *args, **kwargs)

        def getattr(self, obj, attribute):
            self.tick()
            return self._bounded(super().getattr(obj, attribute))

        def getitem(self, obj, argument):
            self.tick()
            return self._bounded(super().getitem(obj, argument))

        def _bounded(self, value):  # e.g. a namespace string that doubles each loop step
            if _size(value) > MAX_CHARS:
                raise TemplateBoundError(f"a value of more than {MAX_CHARS} items")
            return value

    env = Bounded()
    _static_check(env.parse(source))
    return env, env.from_string(source)


def _static_check(ast) -> None:
    """Refuse a constant expression the tokenizer's compiler would fold past the bounds (also in a
    branch that never runs): the folding happens when the template is compiled, before any render."""
    from jinja2 import nodes

    binops = {"Mul": "*", "Pow": "**", "Add": "+", "Mod": "%"}

    def value(node):  # the constant a node folds to (bounded), or None when it does not fold
        if isinstance(node, nodes.Const):
            return node.value
        if isinstance(node, (nodes.Tuple, nodes.List)):
            items = [value(x) for x in node.items]
            return None if any(x is None for x in items) else items
        name = type(node).__name__
        if name in binops:
            left, right = value(node.left), value(node.right)
            if left is None or right is None:
                return None
            op = binops[name]
            if op == "*":
                n, seq = (right, left) if isinstance(right, int) else (left, right)
                if isinstance(n, int) and _size(seq) * max(n, 0) > MAX_CHARS:
                    raise TemplateBoundError(f"a constant repetition of more than {MAX_CHARS} items")
            elif op == "**" and isinstance(right, (int, float)) and abs(right) > 64:
                raise TemplateBoundError(f"a constant power ** {right!r} is too large")
            elif op == "%" and isinstance(left, str) and _WIDE.search(left):
                raise TemplateBoundError(f"format width in {left[:40]!r} is too large")
            try:
                return {"*": lambda a, b: a * b, "**": lambda a, b: a**b, "+": lambda a, b: a + b,
                        "%": lambda a, b: a % b}[op](left, right)  # fmt: skip
            except Exception:
                return None
        if isinstance(node, nodes.Filter) and node.name in _SIZED:
            args = [value(node.node) if node.node is not None else None, *(value(a) for a in node.args)]
            _check_sized(node.name, tuple(a for a in args if a is not None), {})
        return None

    for node in ast.find_all((nodes.BinExpr, nodes.Filter)):
        value(node)


def template_file(tokenizer) -> str:
    """Where the tokenizer's chat template was read from (for messages)."""
    folder = Path(str(getattr(tokenizer, "name_or_path", "") or "."))
    for name in ("chat_template.jinja", "chat_template.json", "tokenizer_config.json"):
        if (folder / name).is_file():
            return str(folder / name)
    return f"{folder} (chat template)"


def check_render(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool) -> None:
    """Render the tokenizer's chat template on ``messages`` under the bounds; a template that does not
    parse, raises, or passes a bound is a one-line :class:`ModelError` naming its file."""
    import jinja2

    source = tokenizer.chat_template
    if isinstance(source, dict):  # named templates: the tokenizer renders "default"
        source = source.get("default")
    if not isinstance(source, str):
        return
    where = template_file(tokenizer)
    try:
        env, template = _compiled(source)
        env.start()
        kwargs = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
        n = 0
        for chunk in template.generate(
            messages=messages,
            tools=None,
            documents=None,
            add_generation_prompt=add_generation_prompt,
            **kwargs,
        ):
            n += len(chunk)
            if n > MAX_CHARS:
                raise TemplateBoundError(f"output longer than {MAX_CHARS} characters")
    except TemplateBoundError as e:
        raise ModelError(f"{where}: chat template refused: {e}") from None
    except jinja2.TemplateSyntaxError as e:
        raise ModelError(
            f"{where}: chat template line {e.lineno}: {' '.join(str(e).split())[:200]}"
        ) from None
    except (jinja2.TemplateError, RecursionError, TypeError, ValueError, KeyError, AttributeError) as e:
        msg = " ".join(str(e).split())[:200]
        raise ModelError(f"{where}: chat template failed: {type(e).__name__}: {msg}") from None
    finally:
        if "env" in locals():
            env.state.deadline = float("inf")


def probe(tokenizer) -> None:
    """Check the template on load: a two-turn probe chat, with and without the generation prompt."""
    chat = [{"role": "user", "content": "probe"}, {"role": "assistant", "content": "probe"}]
    check_render(tokenizer, chat[:1], True)
    check_render(tokenizer, chat, False)
