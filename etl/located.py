"""YAML read with the place of every value, for job files and mapping files, so every error can say
file:line:column.

PyYAML's plain loader forgets positions and silently keeps the last of two duplicate keys, so both
kinds of file are composed here, within the limits of etl/yaml_limits.py (size, nesting, alias
expansion, tags, long integers), and walked once (`_Walk`: keys, duplicates, merges, paths) into one
of two shapes:

- `read_document(text)`: plain values (safe_load semantics, `<<` merges included) and where each was
  written, by path. A job file is validated by pydantic as plain values, and every problem is
  reported at once (`Document.problems`).
- `load_nodes(text, file)`: a tree of `Node`s, each value with its place and path. A mapping file is
  validated node by node, and the first problem raises a `MappingError`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import yaml

from etl.errors import MappingError
from etl.yaml_limits import (
    MAX_DEPTH,
    MAX_VALUES,
    DepthBoundLoader,
    YamlRefused,
    check_flow_depth,
    compose_bounded,
)

PathKey = tuple[str | int, ...]
"""Where a value is in a document: keys and list indexes from the top."""


def position(mark: yaml.Mark) -> tuple[int, int]:
    """1-based line and column of a PyYAML mark (which counts from 0)."""
    return mark.line + 1, mark.column + 1


def text_position(text: str | bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of a character (or byte) offset into `text`."""
    before = text[:offset]
    newline = "\n" if isinstance(before, str) else b"\n"
    return before.count(newline) + 1, len(before) - (before.rfind(newline) + 1) + 1  # type: ignore[arg-type]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a job file, at a 1-based line and column."""

    line: int
    column: int
    path: str
    message: str

    def format(self, file: str) -> str:
        where = f"{file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


def dotted(path: PathKey) -> str:
    """`('sources', 'mongo', 'tables', 'x', 'partitions')` -> `sources.mongo.tables.x.partitions`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# ---------------------------------------------------- one walk over composed YAML, for both shapes


_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def construct_scalar(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    """The value of a scalar node as `yaml.safe_load` reads it; ValueError saying why when its text is
    not what its tag says (`!!int abc`, `!!bool maybe`) or is beyond a limit."""
    try:
        return loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, KeyError, TypeError, OverflowError) as error:
        reason = getattr(error, "problem", None) or str(error).splitlines()[0]
        if "Exceeds the limit" in reason:
            reason = "a number with more than 4300 digits"
        elif not isinstance(error, yaml.YAMLError):
            text = str(getattr(node, "value", ""))[:40]
            reason = f"{text!r} does not read as !!{node.tag.rsplit(':', 1)[-1]}"
        raise ValueError(reason) from None


class _Walk:
    """One walk over a composed document: scalars, lists item by item, mappings key by key with
    duplicate keys found, and the path of every value. A subclass gives what differs between the two
    shapes: what a value becomes, how a key is read, what a problem does (job files collect every one,
    mapping files raise the first), and whether `<<` merges mappings (job files only)."""

    merges = False

    def value(self, node: yaml.Node, path: PathKey) -> Any:
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path, self.entries(node, path))
        if isinstance(node, yaml.SequenceNode):
            items = [self.value(item, (*path, index)) for index, item in enumerate(node.value)]
            return self.sequence(node, path, items)
        return self.scalar(node, path)

    def entries(self, node: yaml.MappingNode, path: PathKey) -> dict[str, Any]:
        """The mapping's values by key; a key written twice is a problem, its second value is dropped."""
        result: dict[str, Any] = {}
        explicit: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if self.merges and key_node.tag == _MERGE_TAG:
                self._merge(result, explicit, value_node, path)
                continue
            key = self.key(key_node, path)
            if key is None:
                continue
            if key in explicit:
                self.duplicate(key, key_node, explicit[key], (*path, key))
                continue
            explicit[key] = key_node, value_node
            result[key] = self.entry(key_node, value_node, (*path, key))
        return result

    def _merge(self, result: dict, explicit: dict, value_node: yaml.Node, path: PathKey) -> None:
        """`<<: *base` / `<<: [*a, *b]`: keys not already set are taken from the merged mappings."""
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            if not (isinstance(source, yaml.MappingNode) and source.tag == _MAP_TAG):
                self.problem(source.start_mark, path, "'<<' merges only mappings")
                continue
            merged = self.entries(source, path)
            for key, value in merged.items():
                if key not in explicit and key not in result:
                    result[key] = value

    def entry(self, key_node: yaml.Node, value_node: yaml.Node, path: PathKey) -> Any:
        """The value of one key."""
        return self.value(value_node, path)

    def mapping(self, node: yaml.MappingNode, path: PathKey, entries: dict[str, Any]) -> Any:
        raise NotImplementedError

    def sequence(self, node: yaml.SequenceNode, path: PathKey, items: list[Any]) -> Any:
        raise NotImplementedError

    def scalar(self, node: yaml.Node, path: PathKey) -> Any:
        raise NotImplementedError

    def key(self, key_node: yaml.Node, path: PathKey) -> str | None:
        """The key's text, or None once a key that is not text has been made a problem."""
        raise NotImplementedError

    def duplicate(
        self, key: str, key_node: yaml.Node, first: tuple[yaml.Node, yaml.Node], path: PathKey
    ) -> None:
        """`key` written again at `key_node`; `first` is (key, value) where it was written first."""
        raise NotImplementedError

    def problem(self, mark: yaml.Mark, path: PathKey, message: str, hint: str | None = None) -> None:
        raise NotImplementedError


# ---------------------------------------------------- plain values and their places (job files)


class _Builder(_Walk):
    """Turns composed nodes into plain values (safe_load semantics) and records where each value is."""

    merges = True

    def __init__(self, loader: DepthBoundLoader) -> None:
        self.loader = loader
        self.values = 0
        self.value_marks: dict[PathKey, yaml.Mark] = {}
        self.key_marks: dict[PathKey, yaml.Mark] = {}
        self.boolean_words: dict[PathKey, str] = {}
        self.problems: list[Problem] = []

    def value(self, node: yaml.Node, path: PathKey) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            where = self.value_marks.get(path[:1], node.start_mark)
            reason = f"expands to more than {MAX_VALUES} values (nested aliases?)"
            raise YamlRefused(*position(where), reason)
        if len(path) > MAX_DEPTH:
            reason = f"nested more than {MAX_DEPTH} levels deep (recursive alias?)"
            raise YamlRefused(*position(node.start_mark), reason)
        self.value_marks.setdefault(path, node.start_mark)
        if (isinstance(node, yaml.SequenceNode) and node.tag != _SEQ_TAG) or (
            isinstance(node, yaml.MappingNode) and node.tag != _MAP_TAG
        ):
            self.problem(node.start_mark, path, f"unsupported YAML tag '{node.tag}'")
            return None
        return super().value(node, path)

    def mapping(self, node: yaml.MappingNode, path: PathKey, entries: dict[str, Any]) -> Any:
        return entries

    def sequence(self, node: yaml.SequenceNode, path: PathKey, items: list[Any]) -> Any:
        return items

    def scalar(self, node: yaml.Node, path: PathKey) -> Any:
        if node.tag not in self.loader.yaml_constructors:
            self.problem(node.start_mark, path, f"unsupported YAML tag '{node.tag}'")
            return None
        try:
            value = construct_scalar(self.loader, node)
        except ValueError as error:
            self.problem(node.start_mark, path, f"invalid value: {error}")
            return None
        if isinstance(value, bool) and node.value.lower() not in ("true", "false"):
            self.boolean_words[path] = node.value  # yes/no/on/off: YAML 1.1 reads them as booleans
        return value

    def key(self, key_node: yaml.Node, path: PathKey) -> str | None:
        if not isinstance(key_node, yaml.ScalarNode):
            self.problem(key_node.start_mark, path, "a key must be plain text, not a mapping or list")
            return None
        return str(key_node.value)

    def duplicate(
        self, key: str, key_node: yaml.Node, first: tuple[yaml.Node, yaml.Node], path: PathKey
    ) -> None:
        first_line = position(first[0].start_mark)[0]
        self.problem(key_node.start_mark, path, f"duplicate key '{key}' (first at line {first_line})")

    def entry(self, key_node: yaml.Node, value_node: yaml.Node, path: PathKey) -> Any:
        self.key_marks[path] = key_node.start_mark
        self.value_marks[path] = value_node.start_mark
        return self.value(value_node, path)

    def problem(self, mark: yaml.Mark, path: PathKey, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(*position(mark), dotted(path), message))


@dataclass
class Document:
    """Plain values (safe_load semantics) and where each was written, by path."""

    data: Any
    value_marks: dict[PathKey, yaml.Mark]
    key_marks: dict[PathKey, yaml.Mark]
    boolean_words: dict[PathKey, str]
    """`yes`/`no`/`on`/`off` as written where YAML 1.1 read a boolean."""
    problems: list[Problem] = field(default_factory=list)
    """What could not be read (duplicate keys, unsupported tags, bad values, ...), each at its place."""

    def position(self, path: PathKey, *, key: bool = False) -> tuple[int, int]:
        """1-based line and column of the value (or key) at `path`, else of its nearest ancestor."""
        if key and path in self.key_marks:
            return position(self.key_marks[path])
        for end in range(len(path), -1, -1):
            mark = self.value_marks.get(path[:end])
            if mark is not None:
                return position(mark)
        return 1, 1


def read_document(text: str) -> Document | None:
    """The document in `text` with the place of every value; None when it is empty. Raises `YamlRefused`
    past the limits, PyYAML's errors for text that is not YAML, RecursionError past Python's stack."""
    check_flow_depth(text)
    loader = DepthBoundLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        builder = _Builder(loader)
        data = builder.value(node, ())
    finally:
        loader.dispose()
    return Document(data, builder.value_marks, builder.key_marks, builder.boolean_words, builder.problems)


# ---------------------------------------------------- a tree of located nodes (mapping files)


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
        line, column = position(mark) if mark else (1, 1)
        raise MappingError(
            f"{file}:{line}:{column}: YAML syntax error: {exc.problem}",
            hint="check indentation and quoting at that place (quote text that contains ': ' or '#')",
        ) from None
    except yaml.reader.ReaderError as exc:
        line, column = text_position(text, exc.position)
        raise MappingError(
            f"{file}:{line}:{column}: the file is not valid YAML text ({exc.reason})",
            hint="remove control characters; save the file as UTF-8",
        ) from None
    if root is None:
        raise MappingError(
            f"{file}:1:1: the mapping file is empty", hint="see docs/mapping.md for an example"
        )
    return _NodeWalk(file).value(root, ())


class _NodeWalk(_Walk):
    """Turns composed nodes (already within the limits, tags checked) into `Node`s; the first problem
    raises a MappingError."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.constructor = yaml.SafeLoader("")

    def _node(self, value: Any, node: yaml.Node, path: PathKey, text_offset: int = 0) -> Node:
        line, column = position(node.start_mark)
        return Node(value, self.file, line, column, dotted(path) or "(top)", text_offset=text_offset)

    def mapping(self, node: yaml.MappingNode, path: PathKey, entries: dict[str, Any]) -> Any:
        return self._node(entries, node, path)

    def sequence(self, node: yaml.SequenceNode, path: PathKey, items: list[Any]) -> Any:
        return self._node(items, node, path)

    def scalar(self, node: yaml.Node, path: PathKey) -> Any:
        quoted = 1 if isinstance(node, yaml.ScalarNode) and node.style in ("'", '"') else 0
        try:
            value = construct_scalar(self.constructor, node)
        except ValueError as error:
            raise self._error(node.start_mark, path, f"invalid value: {error}") from None
        return self._node(value, node, path, quoted)

    def key(self, key_node: yaml.Node, path: PathKey) -> str | None:
        if key_node.tag == _MERGE_TAG:
            self.problem(key_node.start_mark, path, "'<<' merges are not read in mapping files",
                         hint="write the keys out")
        try:
            key = construct_scalar(self.constructor, key_node)
        except ValueError as error:
            raise self._error(key_node.start_mark, path, f"invalid key: {error}", hint="quote it") from None
        if not isinstance(key, str):
            self.problem(key_node.start_mark, path, f"key {key!r} must be text", hint="quote it")
        return key

    def duplicate(
        self, key: str, key_node: yaml.Node, first: tuple[yaml.Node, yaml.Node], path: PathKey
    ) -> None:
        first_line = position(first[1].start_mark)[0]
        self.problem(key_node.start_mark, path, f"duplicate key `{key}` (first written at line {first_line})",
                     hint="keep one of them")

    def entry(self, key_node: yaml.Node, value_node: yaml.Node, path: PathKey) -> Any:
        node = self.value(value_node, path)
        node.key_line, node.key_column = position(key_node.start_mark)
        return node

    def problem(self, mark: yaml.Mark, path: PathKey, message: str, hint: str | None = None) -> None:
        raise self._error(mark, path, message, hint)

    def _error(self, mark: yaml.Mark, path: PathKey, message: str, hint: str | None = None) -> MappingError:
        line, column = position(mark)
        return MappingError(f"{self.file}:{line}:{column}: {dotted(path) or '(top)'}: {message}", hint=hint)
