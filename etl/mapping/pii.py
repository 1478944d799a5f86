"""PII transforms, applied once to a copy of each source record before anything else reads it.

Because outputs, rejects and previews only ever see the transformed copy, a raw PII value cannot
reach a row, a dead letter or a log. HMAC keys come from `${secret:..}`/`${env:..}` and are held
in a `SecretKey`, whose repr never shows the key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from etl.mapping.paths import MISSING
from etl.mapping.types import CastError, to_string, type_name

REDACTED = "[REDACTED]"
DROP: Any = type("Drop", (), {"__repr__": lambda self: "DROP"})()
"""Returned by the `drop` transform: the field is removed from the record."""

Transform = Callable[[Any], Any]


PII_NAME_PARTS = ("email", "mail", "phone", "mobile", "ssn", "name", "birth", "dob", "address", "passport")
"""Parts of field names that suggest personal data: reports and proposals show such fields' types,
never their values."""


def looks_like_pii(name: str) -> bool:
    """Whether a field's name suggests it holds personal data (`email`, `home_phone`, `LastName`, `ssn`,
    `birth_date`)."""
    lowered = name.lower()
    return any(part in lowered for part in PII_NAME_PARTS)


class PiiError(Exception):
    """A PII transform could not apply; the field is removed from the record kept for the reject."""

    def __init__(self, path: str, reason: str, value_type: str) -> None:
        super().__init__(reason)
        self.path, self.reason, self.value_type = path, reason, value_type


class SecretKey:
    """Key bytes that never print."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "SecretKey(***)"

    @property
    def key(self) -> bytes:
        return self._key


def hmac_sha256(key: SecretKey) -> Transform:
    """Keyed HMAC-SHA256 of the value's text, as 64 hex digits: equal inputs stay joinable."""
    secret = key.key

    def transform(value: Any) -> Any:
        if value is None:
            return None
        text = value if isinstance(value, str) else to_string(value)
        return hmac.new(secret, text.encode("utf-8"), hashlib.sha256).hexdigest()

    return transform


MASK_MAX_KEEP = 64
"""The largest `mask: N` a mapping may write."""


def mask(keep: int, char: str = "*") -> Transform:
    """Replace every character but the last `keep` with `char` (length is kept).

    Never more than half of the value's characters show (rounding down), whatever `keep` is:
    a 1-character value is masked whole, a 6-character one shows at most its last 3."""

    def transform(value: Any) -> Any:
        if value is None:
            return None
        text = value if isinstance(value, str) else to_string(value)
        shown = min(keep, len(text) // 2)
        return char * (len(text) - shown) + (text[len(text) - shown:] if shown else "")

    return transform


def redact(value: Any) -> Any:
    return None if value is None else REDACTED


def year_only(value: Any) -> Any:
    """Generalise a date to its year (an int); ISO text dates are read too."""
    if value is None:
        return None
    if isinstance(value, dt.date):
        return value.year
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()[:10]).year
        except ValueError:
            pass
    raise CastError("year-only needs a date, a timestamp or ISO date text", value)


def drop(value: Any) -> Any:
    return DROP


@dataclass(frozen=True)
class PiiRule:
    """One `pii:` entry: a path (with `[]` for every element) and its transform."""

    path: str
    steps: tuple[str | int | None, ...]
    kind: str
    transform: Transform


def make_protector(rules: list[PiiRule]) -> Callable[[dict], dict]:
    """A function returning a copy of a record with every PII rule applied (inputs are not changed)."""
    if not rules:
        return lambda record: record
    if all(len(rule.steps) == 1 and isinstance(rule.steps[0], str) for rule in rules):
        return _top_level_protector(rules)

    def protect(record: dict) -> dict:
        safe = record
        problem: PiiError | None = None
        for rule in rules:
            try:
                safe = _apply(safe, rule.steps, rule, copied=safe is not record)
            except PiiError as exc:
                problem = problem or exc
                safe = _apply(
                    safe, rule.steps, PiiRule(rule.path, rule.steps, "drop", drop), copied=safe is not record
                )
        if problem is not None:
            raise Unprotectable(safe, problem)
        return safe

    return protect


def _top_level_protector(rules: list[PiiRule]) -> Callable[[dict], dict]:
    """The common case, every PII field at the top level: one shallow copy per record."""
    fields = [(str(rule.steps[0]), rule) for rule in rules]

    def protect(record: dict) -> dict:
        safe = dict(record)
        problem: PiiError | None = None
        for name, rule in fields:
            if name in safe:
                try:
                    value = rule.transform(safe[name])
                except CastError as exc:
                    problem = problem or PiiError(
                        rule.path, f"pii `{rule.kind}` cannot apply: {exc.reason}", type_name(safe[name])
                    )
                    value = DROP
                if value is DROP:
                    del safe[name]
                else:
                    safe[name] = value
        if problem is not None:
            raise Unprotectable(safe, problem)
        return safe

    return protect


class Unprotectable(Exception):
    """Carries the record made safe (failed fields dropped) and the first failure."""

    def __init__(self, safe: dict, problem: PiiError) -> None:
        super().__init__(problem.reason)
        self.safe, self.problem = safe, problem


def _apply(container: Any, steps: tuple, rule: PiiRule, *, copied: bool) -> Any:
    """Return `container` with the value at `steps` transformed, copying only what changes.

    A value of the wrong shape on the path (text where the path needs a map or a list) may hold
    the very value the rule protects: the rule fails (PiiError), and its `drop` fallback removes
    that value."""
    step, rest = steps[0], steps[1:]
    needed: Any = Mapping if isinstance(step, str) else list
    if not isinstance(container, needed):
        if container is None:
            return container
        if rule.kind == "drop":
            return DROP
        raise PiiError(
            rule.path,
            f"pii `{rule.kind}` cannot apply: the path meets a {type_name(container)} where it needs "
            f"{'a map' if needed is Mapping else 'a list'}",
            type_name(container),
        )
    if step is None:
        items = [_apply(item, rest, rule, copied=False) if rest else _leaf(item, rule) for item in container]
        return [None if item is DROP else item for item in items]
    if isinstance(step, int):
        if not -len(container) <= step < len(container):
            return container
        result: Any = list(container)
        result[step] = _apply(result[step], rest, rule, copied=False) if rest else _leaf(result[step], rule)
        if result[step] is DROP:
            result[step] = None
        return result
    value = container.get(step, MISSING)
    if value is MISSING:
        return container
    result = container if copied else dict(container)
    new = _apply(value, rest, rule, copied=False) if rest else _leaf(value, rule)
    if new is DROP:
        del result[step]
    else:
        result[step] = new
    return result


def _leaf(value: Any, rule: PiiRule) -> Any:
    try:
        return rule.transform(value)
    except CastError as exc:
        raise PiiError(rule.path, f"pii `{rule.kind}` cannot apply: {exc.reason}", type_name(value)) from None
