"""The source paths a mapping reads, each with its place in the mapping file, and whether a record has it.

A mapping that names a path no record has writes NULL (or its default) in every row, which no
later comparison of source and target can see: both sides are made by the same mapping. The
engine therefore checks the paths listed here against what the source has (its catalogue, a
sample, and every record a run extracts). `present(reads, records)` is the per-batch check: each
path is looked for only until one record has it, and the engine asks only about paths not seen
yet, so a partition costs a few dictionary lookups per path, not one per value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from etl.located import Node
from etl.mapping.expr import field_paths
from etl.mapping.paths import MISSING, Path, make_getter, parse_path
from etl.mapping.spec import ColumnSpec, MappingSpec, OutputSpec, _walk_tree

RECORD = "(record)"
"""`ReadPath.table` of reads that belong to no output: the file's `where`, `pii` and `source.key`."""


@dataclass(frozen=True)
class ReadPath:
    """One source path a mapping reads, where it is written and how to tell a record has it."""

    id: str
    """Stable name of the read, `<document path>=<path>`; kept in checkpoints across runs."""
    file: str
    line: int
    column: int
    """1-based line and column of the text that names the path."""
    doc_path: str
    """Where in the mapping document, e.g. `outputs[0].columns.composer.from`."""
    table: str
    """The output table that reads it (RECORD for the file's `where`, `pii` and `source.key`)."""
    text: str
    """The path as written (`composer`, `address.city`, `$root._id`, `invoices[]`)."""
    top: str | None
    """The record's top-level field the path starts with when it is read from the record itself;
    None when it is read inside an exploded element (only records can show those)."""
    optional: bool
    """The mapping allows the source to lack this path in every record (`optional: true`)."""
    present: Callable[[dict], bool] = field(repr=False, compare=False, default=lambda record: True)
    """Whether a raw source record has the path (through arrays: whether some element has it)."""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


def read_paths(spec: MappingSpec) -> list[ReadPath]:
    """Every source path `spec` reads, in file order, once per place it is written."""
    reads: dict[str, ReadPath] = {}
    top = spec.root.value if spec.root is not None and isinstance(spec.root.value, dict) else {}

    def add(node: Node, table: str, path: Path, levels: tuple[Path, ...], optional: bool) -> None:
        key = f"{node.path}={path.text}"
        if key in reads:
            return
        if path.scope == 0:
            walk, read = (), path
        elif path.scope == -2:
            walk, read = levels[:-1], Path(-1, path.steps, path.text)
        else:
            walk, read = levels, path
        first = read.steps[0] if not walk and read.steps and isinstance(read.steps[0], str) else None
        reads[key] = ReadPath(key, node.file, node.line, node.column + node.text_offset, node.path, table,
                              path.text, first, optional, _present(walk, read))

    if "source" in top and isinstance(top["source"].value, dict) and "key" in top["source"].value:
        key_node = top["source"].value["key"]
        nodes = key_node.value if isinstance(key_node.value, list) else [key_node]
        for node in nodes:
            add(node, RECORD, parse_path(node.value), (), False)
    if spec.where is not None:
        for path in field_paths(spec.where):
            add(top["where"], RECORD, path, (), False)
    rule_nodes = top["pii"].value if "pii" in top else {}
    for rule in spec.pii:
        first = rule.steps[0]
        if isinstance(first, str) and rule.path in rule_nodes:
            node = rule_nodes[rule.path]
            place = Node(node.value, node.file, node.key_line or node.line, node.key_column or node.column,
                         node.path)
            add(place, RECORD, Path(-1, (first,), first), (), False)
    for output in spec.outputs:
        _output_reads(output, add)
    return list(reads.values())


def _output_reads(output: OutputSpec, add: Callable[..., None]) -> None:
    options = output.node.value if isinstance(output.node.value, dict) else {}
    levels = output.explode
    for depth, level in enumerate(levels):
        text = ".".join(str(step) for step in level.steps) + "[]"
        add(options.get("explode", output.node), output.table, Path(-1, level.steps, text), levels[:depth],
            False)
    if output.where is not None:
        for path in field_paths(output.where):
            add(options.get("where", output.node), output.table, path, levels, False)
    for column in output.columns:
        for leaf, optional in _leaves(column, column.optional):
            for path in leaf.paths():
                add(leaf.at or leaf.node, output.table, path, levels, optional)


def _leaves(column: ColumnSpec, optional: bool) -> Iterable[tuple[ColumnSpec, bool]]:
    """The column itself, or the members of a `map:` column (optional when the map is)."""
    if column.map_tree is None:
        yield column, optional
        return
    for child in _walk_tree(column.map_tree):
        yield from _leaves(child, optional or child.optional)


def _present(walk: tuple[Path, ...], read: Path) -> Callable[[dict], bool]:
    """A record has `read` when some context reached through the arrays of `walk` has it."""
    if not walk and len(read.steps) == 1 and isinstance(read.steps[0], str):
        name = read.steps[0]
        return lambda record: name in record
    getter = make_getter(read)
    if not walk:
        return lambda record: getter((record,)) is not MISSING
    arrays = [make_getter(level) for level in walk]

    def found(ctx: tuple, depth: int) -> bool:
        if depth == len(arrays):
            return getter(ctx) is not MISSING
        elements = arrays[depth](ctx)
        return isinstance(elements, list) and any(found((*ctx, element), depth + 1) for element in elements)

    return lambda record: found((record,), 0)


def present(reads: Iterable[ReadPath], records: list[dict]) -> set[str]:
    """Ids of the `reads` that some record of `records` has (each stops at the first that has it)."""
    return {read.id for read in reads if any(map(read.present, records))}
