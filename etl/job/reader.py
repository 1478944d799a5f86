"""A job file read with the position of every value: plain values (safe_load semantics) and where
each was written, so every problem can name file:line:column.

A job file is user input and may be hostile: its size, nesting depth and alias expansion are
bounded (etl/yaml_limits.py) before anything else happens, so a bad file always ends in a
`JobFileProblems` quickly and in bounded memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from etl.errors import JobFileError
from etl.job.problems import JobFileProblems, PathKey, Problem, dotted
from etl.yaml_limits import MAX_BYTES, MAX_DEPTH, MAX_VALUES, DepthBoundLoader, YamlRefused, check_flow_depth

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Builder:
    """Turns composed nodes into plain values (safe_load semantics) and records where each value is."""

    def __init__(self, loader: DepthBoundLoader) -> None:
        self.loader = loader
        self.values = 0
        self.value_marks: dict[PathKey, yaml.Mark] = {}
        self.key_marks: dict[PathKey, yaml.Mark] = {}
        self.boolean_words: dict[PathKey, str] = {}
        self.problems: list[Problem] = []

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            where = self.value_marks.get(path[:1], node.start_mark)
            reason = f"expands to more than {MAX_VALUES} values (nested aliases?)"
            raise YamlRefused(where.line + 1, where.column + 1, reason)
        if len(path) > MAX_DEPTH:
            raise YamlRefused(
                node.start_mark.line + 1,
                node.start_mark.column + 1,
                f"nested more than {MAX_DEPTH} levels deep (recursive alias?)",
            )
        self.value_marks.setdefault(path, node.start_mark)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ_TAG:
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP_TAG:
            return self._mapping(node, path)
        self._problem(node.start_mark, path, f"unsupported YAML tag '{node.tag}'")
        return None

    def _scalar(self, node: yaml.ScalarNode, path: PathKey) -> Any:
        if node.tag not in self.loader.yaml_constructors:
            self._problem(node.start_mark, path, f"unsupported YAML tag '{node.tag}'")
            return None
        try:
            value = self.loader.construct_object(node)
        except (yaml.YAMLError, ValueError) as error:
            reason = getattr(error, "problem", None) or str(error).splitlines()[0]
            if "Exceeds the limit" in reason:
                reason = "a number with more than 4300 digits"
            self._problem(node.start_mark, path, f"invalid value: {reason}")
            return None
        if isinstance(value, bool) and node.value.lower() not in ("true", "false"):
            self.boolean_words[path] = node.value  # yes/no/on/off: YAML 1.1 reads them as booleans
        return value

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[str, Any]:
        result: dict[str, Any] = {}
        explicit: dict[str, yaml.Mark] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                self._merge(result, explicit, value_node, path)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._problem(key_node.start_mark, path, "a key must be plain text, not a mapping or list")
                continue
            key = str(key_node.value)
            if key in explicit:
                first = explicit[key].line + 1
                self._problem(
                    key_node.start_mark, (*path, key), f"duplicate key '{key}' (first at line {first})"
                )
                continue
            explicit[key] = key_node.start_mark
            self.key_marks[(*path, key)] = key_node.start_mark
            self.value_marks[(*path, key)] = value_node.start_mark
            result[key] = self.build(value_node, (*path, key))
        return result

    def _merge(self, result: dict, explicit: dict, value_node: yaml.Node, path: PathKey) -> None:
        """`<<: *base` / `<<: [*a, *b]`: keys not already set are taken from the merged mappings."""
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            if not (isinstance(source, yaml.MappingNode) and source.tag == _MAP_TAG):
                self._problem(source.start_mark, path, "'<<' merges only mappings")
                continue
            merged = self._mapping(source, path)
            for key, value in merged.items():
                if key not in explicit and key not in result:
                    result[key] = value

    def _problem(self, mark: yaml.Mark, path: PathKey, message: str) -> None:
        self.problems.append(Problem(mark.line + 1, mark.column + 1, dotted(path), message))


@dataclass
class _Document:
    data: Any
    value_marks: dict[PathKey, yaml.Mark]
    key_marks: dict[PathKey, yaml.Mark]
    boolean_words: dict[PathKey, str]

    def position(self, path: PathKey, *, key: bool = False) -> tuple[int, int]:
        """1-based line and column of the value (or key) at `path`, else of its nearest ancestor."""
        if key and path in self.key_marks:
            mark = self.key_marks[path]
            return mark.line + 1, mark.column + 1
        for end in range(len(path), -1, -1):
            mark = self.value_marks.get(path[:end])
            if mark is not None:
                return mark.line + 1, mark.column + 1
        return 1, 1


def _compose(text: str, file: str) -> _Document:
    try:
        check_flow_depth(text)
        loader = DepthBoundLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise JobFileProblems(file, [Problem(1, 1, "", "the job file is empty")])
            builder = _Builder(loader)
            data = builder.build(node, ())
        finally:
            loader.dispose()
    except YamlRefused as refused:
        problem = Problem(refused.line, refused.column, "", f"job file rejected: {refused.reason}")
        raise JobFileProblems(file, [problem]) from None
    except RecursionError:
        raise JobFileProblems(file, [Problem(1, 1, "", "job file rejected: nested too deeply")]) from None
    except yaml.MarkedYAMLError as error:
        raise JobFileProblems(file, [_syntax_problem(error)]) from None
    except yaml.reader.ReaderError as error:
        before = text[: error.position]
        line, column = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        code = error.character if isinstance(error.character, int) else ord(error.character)
        problem = Problem(line, column, "", f"invalid YAML: {error.reason} #x{code:04x}")
        raise JobFileProblems(file, [problem]) from None
    if builder.problems:
        raise JobFileProblems(file, builder.problems)
    if not isinstance(data, dict):
        raise JobFileProblems(
            file, [Problem(1, 1, "", "expected a mapping of job settings at the top level")]
        )
    return _Document(data, builder.value_marks, builder.key_marks, builder.boolean_words)


def _syntax_problem(error: yaml.MarkedYAMLError) -> Problem:
    mark = error.problem_mark or error.context_mark
    message = f"invalid YAML: {error.problem or 'syntax error'}"
    if isinstance(error, yaml.composer.ComposerError) and "another document" in (error.problem or ""):
        message = "invalid YAML: a job file holds one document, but a second one starts here"
    elif error.context and error.context_mark is not None:
        message += f" ({error.context} started at line {error.context_mark.line + 1})"
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return Problem(line, column, "", message)


def _read(job_path: Path, file: str) -> bytes:
    try:
        with job_path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as error:
        raise JobFileError(f"{file}: cannot read the job file: {error.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise JobFileProblems(
            file, [Problem(1, 1, "", f"job file rejected: larger than {MAX_BYTES} bytes")]
        )
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        before = raw[: error.start]
        line = before.count(b"\n") + 1
        column = len(before) - (before.rfind(b"\n") + 1) + 1
        raise JobFileProblems(file, [Problem(line, column, "", "the job file is not UTF-8 text")]) from None
    return raw
