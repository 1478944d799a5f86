"""Bounded YAML composition for files that may be hostile (mapping files).

`yaml.compose` alone follows aliases, recursion and nesting wherever a document leads: a
"billion laughs" document expands to 10^9 values, `&a [*a]` never ends, 5,000 nested brackets
exhaust the stack, and unknown tags or 10,000-digit numbers fail later with exceptions that are
not the user's kind of error. `compose_bounded` refuses all of these with a position and a
reason before anything builds values from the document; time and memory stay bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

MAX_BYTES = 1024 * 1024
"""Largest file accepted; real mapping files are a few kilobytes."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists."""
MAX_VALUES = 100_000
"""Most values a document may expand to through aliases."""
MAX_INT_DIGITS = 4300
"""Python's own limit for converting text to int (sys.get_int_max_str_digits)."""

_SAFE_TAGS = frozenset(
    [*(tag for tag in yaml.SafeLoader.yaml_constructors if tag is not None), "tag:yaml.org,2002:merge"])
_INT_TAG = "tag:yaml.org,2002:int"


@dataclass(frozen=True)
class YamlRefused(Exception):
    """A document outside the limits, at a 1-based line and column."""

    line: int
    column: int
    reason: str


class DepthBoundLoader(yaml.SafeLoader):
    """A SafeLoader whose composer (which recurses) stops at MAX_DEPTH."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YamlRefused(mark.line + 1, mark.column + 1, f"nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def compose_bounded(text: str) -> yaml.Node | None:
    """`yaml.compose(text, SafeLoader)` within the limits above; raises `YamlRefused` or yaml errors."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise YamlRefused(1, 1, f"larger than {MAX_BYTES} bytes")
    check_flow_depth(text)
    loader = DepthBoundLoader(text)
    try:
        root = loader.get_single_node()
    finally:
        loader.dispose()
    if root is not None:
        _check_graph(root)
    return root


def check_flow_depth(text: str) -> None:
    """Refuse deeply nested `[`/`{` before PyYAML's scanner, whose time grows with the square of the
    flow depth, sees them. Quoted text and comments are skipped; plain text rarely opens 64 brackets."""
    depth, line, line_start, quote, previous = 0, 1, 0, "", "\n"
    for position, char in enumerate(text):
        if char == "\n":
            line, line_start = line + 1, position + 1
            if quote == "#":
                quote = ""
        elif quote:
            if char == quote and quote != "#":
                quote = ""
        elif char in "'\"" and previous in " \t\n[{,:":
            quote = char
        elif char == "#" and previous in " \t\n":
            quote = "#"
        elif char in "[{":
            depth += 1
            if depth >= MAX_DEPTH:  # the document itself is the first level
                column = position - line_start + 1
                raise YamlRefused(line, column, f"nested more than {MAX_DEPTH} levels deep")
        elif char in "]}":
            depth = max(depth - 1, 0)
        previous = char


def _check_graph(root: yaml.Node) -> None:
    """Count values as aliases expand them (shared nodes counted once per use, each computed once),
    and refuse recursive aliases, deep expansion, unknown tags and over-long integers."""
    sizes: dict[int, int] = {}
    # iterative post-order walk: (node, depth, children done?)
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    open_nodes: set[int] = set()
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            open_nodes.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            if total > MAX_VALUES:
                _refuse(node, f"expands to more than {MAX_VALUES} values (nested aliases?)")
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            _refuse(node, "a recursive alias (a node that contains itself)")
        if depth > MAX_DEPTH:
            _refuse(node, f"nested more than {MAX_DEPTH} levels deep (through aliases)")
        _check_scalar_and_tag(node)
        open_nodes.add(key)
        stack.append((node, depth, True))
        for child in _children(node):
            if id(child) in open_nodes:
                _refuse(child, "a recursive alias (a node that contains itself)")
            if id(child) not in sizes:
                stack.append((child, depth + 1, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_scalar_and_tag(node: yaml.Node) -> None:
    if node.tag not in _SAFE_TAGS:
        _refuse(node, f"unsupported YAML tag '{node.tag}'")
    if node.tag == _INT_TAG and sum(ch.isdigit() for ch in node.value) > MAX_INT_DIGITS:
        _refuse(node, f"a number with more than {MAX_INT_DIGITS} digits")


def _refuse(node: yaml.Node, reason: str) -> None:
    raise YamlRefused(node.start_mark.line + 1, node.start_mark.column + 1, reason)
