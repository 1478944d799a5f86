"""Source paths (`address.city`, `phones[0].number`, `$root._id`, `invoices[].lines[]`) and their accessors.

A path is parsed once; `make_getter` turns it into a closure over precomputed steps so that
reading a field costs dictionary lookups only. Missing fields read as MISSING (not None):
a mapping tells "absent" from "null".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING", "__bool__": lambda self: False})()
"""Marks a field that is absent from the record (a null field reads as None)."""

SCOPES = {"$root": 0, "$parent": -2, "$this": -1}
"""Scope words: the whole record, the enclosing element, the current element (explode outputs)."""

Getter = Callable[[tuple], Any]
_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_INDEX = re.compile(r"\[(-?\d*)\]")


class PathSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Path:
    """`scope` indexes the scope tuple (-1 current element, 0 the record, -2 the parent element);
    `steps` are dict keys (str), list indexes (int) or None for `[]` (every element)."""

    scope: int
    steps: tuple[str | int | None, ...]
    text: str


def parse_path(text: str, *, allow_every: bool = False) -> Path:
    """Parse `a.b[0].c`, `` `odd key`.x ``, `$root.a`; `[]` (every element) only when `allow_every`."""
    source = text.strip()
    if not source:
        raise PathSyntaxError("a path cannot be empty")
    steps: list[str | int | None] = []
    position = 0
    scope = -1
    expect_name = True
    while position < len(source):
        char = source[position]
        if expect_name:
            if char == "`":
                end = source.find("`", position + 1)
                if end < 0:
                    raise PathSyntaxError(f"unclosed ` in path `{text}`")
                steps.append(source[position + 1 : end])
                position = end + 1
            else:
                match = _NAME.match(source, position)
                if not match:
                    raise PathSyntaxError(f"expected a field name at character {position + 1} of `{text}`")
                name = match.group(0)
                if name.startswith("$"):
                    if steps or name not in SCOPES or scope != -1:
                        raise PathSyntaxError(
                            f"`{name}` is not a scope word (write $root, $parent or $this first)"
                        )
                    scope = SCOPES[name]
                else:
                    check_name(name)
                    steps.append(name)
                position = match.end()
            expect_name = False
        elif char == ".":
            expect_name = True
            position += 1
        elif char == "[":
            match = _INDEX.match(source, position)
            if not match:
                raise PathSyntaxError(f"expected [N] or [] at character {position + 1} of `{text}`")
            if match.group(1) == "":
                if not allow_every:
                    raise PathSyntaxError(
                        f"`[]` (every element) is only allowed in explode and pii paths: `{text}`"
                    )
                steps.append(None)
            else:
                steps.append(int(match.group(1)))
            position = match.end()
        else:
            raise PathSyntaxError(f"unexpected `{char}` at character {position + 1} of `{text}`")
    if expect_name:
        raise PathSyntaxError(f"path `{text}` ends with a dot")
    return Path(scope, tuple(steps), source)


def check_name(name: str) -> None:
    """Refuse Python's special names outright, although paths only ever index dictionaries."""
    if name.startswith("__") and name.endswith("__"):
        raise PathSyntaxError(f"the name `{name}` is refused (names like __x__ are reserved)")


def make_getter(path: Path) -> Getter:
    """A closure reading `path` from a scope tuple; MISSING when any step is absent."""
    scope, steps = path.scope, path.steps
    if not steps:
        return lambda ctx: ctx[scope] if len(ctx) >= -scope else MISSING
    if len(steps) == 1 and isinstance(steps[0], str):
        key = steps[0]

        def get_one(ctx: tuple) -> Any:
            doc = ctx[scope]
            return doc.get(key, MISSING) if isinstance(doc, dict) else MISSING

        return get_one
    if len(steps) == 2 and isinstance(steps[0], str) and isinstance(steps[1], str):
        first, second = steps

        def get_two(ctx: tuple) -> Any:
            doc = ctx[scope]
            if not isinstance(doc, dict):
                return MISSING
            inner = doc.get(first, MISSING)
            return inner.get(second, MISSING) if isinstance(inner, dict) else MISSING

        return get_two

    def get_many(ctx: tuple) -> Any:
        value = ctx[scope]
        for step in steps:
            if isinstance(step, str):
                if not isinstance(value, dict):
                    return MISSING
                value = value.get(step, MISSING)
                if value is MISSING:
                    return MISSING
            else:
                assert step is not None, "a getter's path has no `[]`: explode levels are read one by one"
                if not isinstance(value, list) or not -len(value) <= step < len(value):
                    return MISSING
                value = value[step]
        return value

    return get_many
