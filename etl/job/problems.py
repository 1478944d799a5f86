"""What is wrong with a job file, said with file, line, column and the dotted path of the value.

`Problem` is one such thing; `JobFileProblems` reports every one at once, sorted by line. The
rest turns pydantic's validation errors into those messages: the expected value, what was written
(never a password or a value that came from a reference) and the nearest valid key.
"""

from __future__ import annotations

import difflib
import types
import typing
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError

from etl.errors import JobFileError
from etl.located import Document, PathKey, Problem, dotted
from etl.redact import redact
from etl.settings_types import DESCRIBED

_PASSWORD_KEYS = {"password", "passwd", "pwd"}


def _is_password_key(path: PathKey) -> bool:
    """`password:`, `pwd:`, and any `..._password:` such as Oracle's `wallet_password:`."""
    key = path[-1] if path else None
    return isinstance(key, str) and (key.lower() in _PASSWORD_KEYS or key.lower().endswith("_password"))


class JobFileProblems(JobFileError):
    """A job file with one or more problems; `problems` lists them sorted by line."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = sorted(problems, key=lambda p: (p.line, p.column, p.path))
        super().__init__(redact(problems_text(file, self.problems)))


def problems_text(file: str, problems: list[Problem]) -> str:
    """One problem as `file:line:column: path: message`, several as a count and one such line each."""
    lines = [p.format(file) for p in sorted(problems, key=lambda p: (p.line, p.column, p.path))]
    if len(lines) == 1:
        return lines[0]
    return f"{file} has {len(lines)} problems:\n" + "\n".join(lines)


def _model_at(model: Any, loc: tuple) -> type[BaseModel] | None:
    """The pydantic model reached by following `loc` through fields, dicts, lists and optionals."""
    annotation = model
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = _field_named(annotation, part)
            if field is None:
                return None
            annotation = field.annotation
        elif typing.get_origin(annotation) in (dict, list):
            annotation = typing.get_args(annotation)[-1]
        else:
            return None
    annotation = _unwrap(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            models = [a for a in members if isinstance(a, type) and issubclass(a, BaseModel)]
            annotation = (models or members)[0]
        else:
            return annotation


def _field_named(model: type[BaseModel], key: object) -> Any:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field
    return None


def _keys_of(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def nearest(word: str, choices: list[str]) -> str | None:
    """The choice closest to a misspelt `word` (for "did you mean"), or None."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return close[0] if close else None


_SIMPLE_EXPECTATIONS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "decimal_type": "a number",
    "decimal_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
}


def _expected(error: dict) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in _SIMPLE_EXPECTATIONS:
        return f"expected {_SIMPLE_EXPECTATIONS[kind]}"
    if kind == "literal_error":
        return f"expected {ctx['expected']}"
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"expected a number {bounds[kind]} {limit}"
    if kind == "string_pattern_mismatch":
        return f"expected text matching {ctx['pattern']}"
    if kind == "too_short":
        return f"expected at least {ctx.get('min_length', 1)} entry"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == DESCRIBED:
        return str(error["msg"])
    message = error["msg"]
    return message[0].lower() + message[1:]


def _shown(value: Any, path: PathKey, resolved: set[PathKey], doc: Document) -> str:
    """How an offending value is shown: literal short scalars as written, anything else by its kind."""
    if path in resolved or _is_password_key(path):
        return "a value from a reference" if path in resolved else "a password"
    if value is None:
        return "null"
    if isinstance(value, bool):
        word = "true" if value else "false"
        return f"{doc.boolean_words[path]} (YAML reads it as {word})" if path in doc.boolean_words else word
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else "a long string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _problems_from(
    error: ValidationError, model: type[BaseModel], prefix: PathKey, doc: Document, resolved: set[PathKey]
) -> list[Problem]:
    problems = []
    for item in error.errors():
        loc = tuple(item["loc"])
        path = (*prefix, *loc)
        kind = item["type"]
        if kind == "extra_forbidden":
            key = str(loc[-1])
            valid = _keys_of(_model_at(model, loc[:-1]))
            suggestion = nearest(key, valid)
            message = f"unknown key '{key}'"
            if suggestion:
                message += f"; did you mean '{suggestion}'?"
            elif valid:
                message += f"; valid keys: {', '.join(valid)}"
            line, column = doc.position(path, key=True)
            problems.append(Problem(line, column, dotted(path), message))
        elif kind == "missing":
            line, column = doc.position(path[:-1])
            problems.append(Problem(line, column, dotted(path[:-1]), f"missing required key '{loc[-1]}'"))
        else:
            line, column = doc.position(path)
            expected, shown = _expected(item), _shown(item.get("input"), path, resolved, doc)
            # a check of a whole section (a mapping) says itself what is wrong with it
            described = kind == DESCRIBED or shown in expected or shown == "a mapping"
            message = expected if described else f"{expected}, got {shown}"
            problems.append(Problem(line, column, dotted(path), message))
    return problems
