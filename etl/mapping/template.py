"""Key templates: `CUSTOMER#{customer_id}`, `INVOICE#{invoice_date:%Y-%m-%d}#{invoice_id}`, and the
AWS DMS spelling `${FirstName},${LastName}`.

A field may carry a format: dates and timestamps use strftime, numbers Python's format
mini-language. A missing or null field is an error for the record (a key such as `CUSTOMER#None`
would be silently wrong).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import bson

from etl.mapping.paths import MISSING, Path, PathSyntaxError, make_getter, parse_path
from etl.mapping.types import CastError, decimal128_to_decimal, to_string, type_name


class TemplateError(ValueError):
    pass


class TemplateValueError(Exception):
    """A template field is missing or cannot be formatted for one record."""

    def __init__(self, path: str, reason: str, value_type: str | None) -> None:
        super().__init__(reason)
        self.path, self.reason, self.value_type = path, reason, value_type


@dataclass(frozen=True)
class Part:
    literal: str
    path: Path | None = None
    format: str | None = None


@dataclass(frozen=True)
class Template:
    text: str
    parts: tuple[Part, ...]

    @property
    def paths(self) -> list[Path]:
        return [part.path for part in self.parts if part.path is not None]


def parse_template(text: str) -> Template:
    parts: list[Part] = []
    literal: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if text.startswith("{{", index) or text.startswith("}}", index):
            literal.append(char)
            index += 2
            continue
        dms = text.startswith("${", index)
        if char == "{" or dms:
            start = index + (2 if dms else 1)
            end = text.find("}", start)
            if end < 0:
                raise TemplateError(f"unclosed `{{` at character {index + 1}")
            body = text[start:end]
            path_text, _, fmt = body.partition(":") if not dms else (body, "", "")
            if dms and ":" in body:
                raise TemplateError(f"`${{{body}}}` looks like interpolation; templates take fields only")
            try:
                path = parse_path(path_text)
            except PathSyntaxError as exc:
                raise TemplateError(str(exc)) from None
            parts.append(Part("".join(literal), path, fmt or None))
            literal = []
            index = end + 1
            continue
        if char == "}":
            raise TemplateError(f"single `}}` at character {index + 1} (write `}}}}` for a literal brace)")
        literal.append(char)
        index += 1
    if literal:
        parts.append(Part("".join(literal)))
    if not any(part.path for part in parts):
        raise TemplateError("the template names no field (use `const:` for fixed text)")
    return Template(text, tuple(parts))


def _formatter(path: str, fmt: str | None) -> Callable[[Any], str]:
    def render(value: Any) -> str:
        if type(value) is str and fmt is None:
            return value
        try:
            if isinstance(value, bson.Decimal128):
                value = decimal128_to_decimal(value)
            if fmt is None:
                return to_string(value)
            if isinstance(value, (dt.date, dt.datetime, dt.time)):
                return value.strftime(fmt)
            if isinstance(value, (int, float, Decimal, str)) and not isinstance(value, bool):
                return format(value, fmt)
        except CastError as exc:
            raise TemplateValueError(path, f"template field `{path}`: {exc.reason}", exc.value_type) from None
        except (ValueError, TypeError):
            pass
        raise TemplateValueError(
            path, f"template field `{path}` cannot be formatted with `{fmt}`", type_name(value)
        )

    return render


def compile_template(template: Template, *, null_gives_none: bool = False) -> Callable[[tuple], str | None]:
    """A closure rendering the template from a scope tuple. A missing or null field is an error, or,
    with `null_gives_none`, makes the whole value None (AWS DMS leaves NULL data out of DynamoDB)."""
    steps = [
        (part.literal, make_getter(part.path), _formatter(part.path.text, part.format), part.path.text)
        if part.path is not None
        else (part.literal, None, None, "")
        for part in template.parts
    ]

    def render(ctx: tuple) -> str | None:
        out = []
        for literal, getter, fmt, path in steps:
            out.append(literal)
            if getter is not None and fmt is not None:  # both set for a field, neither for a literal
                value = getter(ctx)
                if value is None or value is MISSING:
                    if null_gives_none:
                        return None
                    raise TemplateValueError(
                        path, f"template field `{path}` is {'missing' if value is MISSING else 'null'}", None
                    )
                out.append(fmt(value))
        return "".join(out)

    return render
