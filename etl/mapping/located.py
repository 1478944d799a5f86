"""YAML read into nodes that remember where they were written, so every error can say file:line:column.

PyYAML's plain loader forgets positions and silently keeps the last of two duplicate keys; a
mapping file is validated against its text, so we compose the node graph ourselves.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import yaml

from etl.errors import MappingError
from etl.yaml_limits import YamlRefused, compose_bounded


@dataclass
class Node:
    """A YAML value with its place: `value` is a dict[str, Node], a list[Node] or a plain scalar."""

    value: Any
    file: str
    line: int
    column: int
    path: str
    """Where in the document, e.g. `outputs[1].columns.total`."""
    key_line: int | None = None
    """For a mapping value: where its key was written (unknown-key errors point there)."""
    key_column: int | None = None
    text_offset: int = 0
    """1 when the scalar is quoted: its text starts one column after the node."""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    def error(self, what: str, hint: str | None = None) -> MappingError:
        """A MappingError placed at this node."""
        return MappingError(f"{self.where}: {self.path}: {what}", hint=hint)

    def plain(self) -> Any:
        """The value with every Node unwrapped."""
        if isinstance(self.value, dict):
            return {key: node.plain() for key, node in self.value.items()}
        if isinstance(self.value, list):
            return [node.plain() for node in self.value]
        return self.value

    def expect_dict(self, what: str) -> dict[str, Node]:
        if not isinstance(self.value, dict):
            raise self.error(f"{what} must be a mapping (key: value lines), found {_kind(self.value)}")
        return self.value

    def expect_list(self, what: str) -> list[Node]:
        if not isinstance(self.value, list):
            raise self.error(f"{what} must be a list (lines starting with '- '), found {_kind(self.value)}")
        return self.value

    def expect_str(self, what: str) -> str:
        if not isinstance(self.value, str) or not self.value:
            raise self.error(f"{what} must be a non-empty text, found {_kind(self.value)}")
        return self.value

    def check_keys(self, allowed: set[str] | frozenset[str], what: str) -> dict[str, Node]:
        """Refuse unknown keys, suggesting the nearest allowed one."""
        mapping = self.expect_dict(what)
        for key, node in mapping.items():
            if key not in allowed:
                raise node.key_error(key, allowed, what)
        return mapping

    def key_error(self, key: str, allowed: set[str] | frozenset[str], what: str) -> MappingError:
        near = difflib.get_close_matches(key, sorted(allowed), n=1)
        hint = f"write `{near[0]}` instead" if near else f"allowed keys: {', '.join(sorted(allowed))}"
        line, column = self.key_line or self.line, self.key_column or self.column
        return MappingError(
            f"{self.file}:{line}:{column}: {self.path}: unknown key `{key}` in {what}", hint=hint
        )


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def suggest(name: str, choices: list[str] | set[str]) -> str | None:
    """`did you mean X` text for the nearest choice, or None."""
    near = difflib.get_close_matches(name, sorted(choices), n=1)
    return f"did you mean `{near[0]}`?" if near else None


def load_nodes(text: str, file: str) -> Node:
    """Parse YAML text into Nodes; syntax errors and duplicate keys become MappingErrors."""
    try:
        root = compose_bounded(text)
    except YamlRefused as refused:
        raise MappingError(f"{file}:{refused.line}:{refused.column}: mapping file rejected: {refused.reason}",
                           hint="see docs/mapping.md for what a mapping file holds") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise MappingError(
            f"{file}:{line}:{column}: YAML syntax error: {exc.problem}",
            hint="check indentation and quoting at that place (quote text that contains ': ' or '#')",
        ) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise MappingError(
            f"{file}:{line}:{column}: the file is not valid YAML text ({exc.reason})",
            hint="remove control characters; save the file as UTF-8",
        ) from None
    if root is None:
        raise MappingError(
            f"{file}:1:1: the mapping file is empty", hint="see docs/mapping.md for an example"
        )
    constructor = yaml.SafeLoader("")
    return _convert(root, file, "", constructor)


def _convert(node: yaml.Node, file: str, path: str, constructor: yaml.SafeLoader) -> Node:
    line, column = node.start_mark.line + 1, node.start_mark.column + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            key_line, key_column = key_node.start_mark.line + 1, key_node.start_mark.column + 1
            if not isinstance(key, str):
                raise MappingError(
                    f"{file}:{key_line}:{key_column}: {path or '(top)'}: key {key!r} must be text",
                    hint="quote it",
                )
            child_path = f"{path}.{key}" if path else key
            if key in result:
                first = result[key]
                raise MappingError(
                    f"{file}:{key_line}:{key_column}: {child_path}: duplicate key `{key}` "
                    f"(first written at line {first.line})",
                    hint="keep one of them",
                )
            result[key] = _convert(value_node, file, child_path, constructor)
            result[key].key_line, result[key].key_column = key_line, key_column
        return Node(result, file, line, column, path or "(top)")
    if isinstance(node, yaml.SequenceNode):
        items = [
            _convert(item, file, f"{path}[{index}]", constructor) for index, item in enumerate(node.value)
        ]
        return Node(items, file, line, column, path or "(top)")
    quoted = 1 if isinstance(node, yaml.ScalarNode) and node.style in ("'", '"') else 0
    value = constructor.construct_object(node, deep=True)
    return Node(value, file, line, column, path or "(top)", text_offset=quoted)
