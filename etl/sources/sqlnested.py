"""Nested records from a relational source: a table with `children:` read as parallel ordered streams.

The parent table is read as any table is (keyset pages in key order). Each child table, at any depth,
is one more stream in the same transaction: its rows joined to their ancestors (each ancestor a
derived table of its key, its link to its own parent and its `where:`; the root one also holds the
partition's key range and the resume position) and ordered by the ancestors' keys, root first, then
by its own key. Every stream is therefore in the order of the parent stream, and the distinct
ancestor paths a child stream holds are those of the parent stream, in the same order: the merge only
compares values for equality (the source's collation decides the order, never Python). Memory holds
one batch of parents with their children and, per stream, one fetch ahead; a parent's children are
held whole, so one parent's children bound what one record takes.

Only generic SQL is built here (through the source's dialect methods: quoting, FROM clause, page
limit, keyset condition); the dialect modules override those, never this file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from etl.errors import EtlError
from etl.records import Batch, Json, Partition, Reject
from etl.sources.sqltypes import encode_key

if TYPE_CHECKING:
    from etl.sources.sql import Params, ReadPlan, SqlChild, SqlSource, TableMeta


@dataclass
class Level:
    """One table of the tree: the root (no `name`) or a child read into field `name` of its parent."""

    meta: TableMeta
    where: str | None
    link: tuple[str, ...] = ()
    """The columns holding the parent's key (a child's `parent_key`; none for the root)."""
    name: str = ""
    """The list field of the parent's record that holds this child's records."""
    children: list[Level] = field(default_factory=list)
    plan: ReadPlan | None = None
    """How the rows of a child's stream come back (set when its stream opens)."""


def tree(source: SqlSource, table: str, fields: Sequence[str] | None) -> Level:
    """The root table of `table` and the children the mapping reads (`fields`; None: all)."""
    options = source.config.tables[table]
    root = Level(source.describe(table), options.where)
    root.children = [
        _level(source, table, name, child, root.meta)
        for name, child in options.children.items()
        if fields is None or name in fields
    ]
    return root


def _level(source: SqlSource, path: str, name: str, child: SqlChild, parent: TableMeta) -> Level:
    if any(column.name == name for column in parent.columns):
        raise EtlError(
            f"{source.engine} source {source.name!r}, {parent.name!r}: child {name!r} has the name of one of"
            " its columns; the list of children would replace the column in each record",
            hint=f"name the child otherwise: `children: {{{name}_list: ...}}`",
        )
    meta = source.describe_child(f"{path}.{name}", child)
    by_lower = {column.name.lower(): column.name for column in meta.columns}
    missing = [column for column in child.parent_key if column.lower() not in by_lower]
    if missing or len(child.parent_key) != len(parent.key):
        raise EtlError(
            f"{source.engine} source {source.name!r}, child {meta.name!r} (table {meta.table!r}):"
            f" `parent_key` {child.parent_key} must name {len(parent.key)} column(s) of the child,"
            f" matching the parent's key {list(parent.key)}"
            + (f"; not columns: {', '.join(missing)}" if missing else ""),
            hint=f"columns of {meta.table!r}: {', '.join(column.name for column in meta.columns)}",
        )
    link = tuple(
        column if column in by_lower.values() else by_lower[column.lower()] for column in child.parent_key
    )
    level = Level(meta, child.where, link, name)
    level.children = [_level(source, meta.name, n, c, meta) for n, c in child.children.items()]
    return level


def field_names(source: SqlSource, table: str) -> tuple[str, ...]:
    """The list fields the table's records carry for its children."""
    return tuple(source.config.tables[table].children)


class Stream:
    """The rows of one child table in the order of its ancestors' keys; `take(path)` gives the rows
    of the parent whose key path (root key first) is `path`."""

    def __init__(self, source: SqlSource, connection: Any, chain: list[Level], level: Level,
                 partition: Partition, after: tuple | None) -> None:
        self.level = level
        depth = len(chain)
        aliases = [source.quote(f"etl_a{index}") for index in range(depth)]
        widths = [len(ancestor.meta.key) for ancestor in chain]
        ancestor_keys = [
            f"{aliases[index]}.{source.quote(f'etl_k{j}')}"
            for index in range(depth)
            for j in range(widths[index])
        ]
        self.plan: ReadPlan = source.read_plan(level.meta, None, ancestor_keys)
        level.plan = self.plan
        self.path_at = self.plan.extra_positions
        self.order = [*self.path_at, *self.plan.key_positions]
        self._aliases = aliases
        self._source, self._partition, self._after, self._chain = source, partition, after, chain
        self._order_sql = ", ".join(str(position + 1) for position in self.order)
        self._order_columns = [*ancestor_keys, *(source.quote(name) for name in level.meta.key)]
        self._rows = self._all(connection)
        self._head: Any = next(self._rows, None)

    def _query(self, after: tuple | None) -> tuple[str, Params]:
        """One keyset page: the child joined to each ancestor's derived table, from its parent up
        to the root's, which holds the partition's range and the resume position."""
        source, chain, at = self._source, self._chain, _at(self._partition)
        params = source.new_params()
        child = source.quote("etl_c")
        joins = [f"{source.from_clause(self.level.meta, at)} {child}"]
        below, below_link = child, self.level.link
        for index in range(len(chain) - 1, -1, -1):
            ancestor, alias = chain[index], self._aliases[index]
            bounds = [] if index else source.range_conditions(ancestor.meta, self._partition, self._after,
                                                                params)
            on = " AND ".join(
                f"{below}.{source.quote(column)} = {alias}.{source.quote(f'etl_k{j}')}"
                for j, column in enumerate(below_link)
            )
            joins.append(f"JOIN ({_ancestor_sql(source, ancestor, at, bounds)}) {alias} ON {on}")
            below, below_link = alias, tuple(f"etl_l{j}" for j in range(len(ancestor.link)))
        own = [f"({source.user_sql(self.level.where)})"] if self.level.where else []
        if after is not None:
            own.append(source.after_condition(self._order_columns, after, params))
        sql = source.select_sql(", ".join(self.plan.expressions), " ".join(joins), own, self._order_sql,
                                source.config.page_rows)
        return sql, params

    def _all(self, connection: Any) -> Iterator[Any]:
        order = self.plan.fields(self.order)
        for chunk in self._source.pages(connection, self.plan, self._query, order, None):
            yield from chunk

    def take(self, path: tuple) -> list:
        """The rows of the parent at `path`. The head left is a later parent's: where the keys are
        numbers or times (ordered alike in SQL and Python), one before `path` stops the read at once,
        before a batch missing its children is written; text keys are checked by `finish`."""
        rows = []
        at = self.plan.fields(self.path_at)
        while self._head is not None and (head := tuple(self._head[i] for i in at)) == path:
            rows.append(self._head)
            self._head = next(self._rows, None)
        if self._head is not None and _ordered_alike(path) and _ordered_alike(head) and head < path:
            self._out_of_step()
        return rows

    def finish(self) -> None:
        """The stream must be used up once the last parent is merged: anything left belongs to no
        parent that was read, which only a stream out of step with its parent can hold."""
        if self._head is not None:
            self._out_of_step()

    def _out_of_step(self) -> None:
        raise EtlError(
            f"{self._source.engine} source {self._source.name!r}, child {self.level.meta.name!r}: rows"
            " match no parent read before them: the child stream was not read at the same point in time"
            " as its parent (the tables changed between the two reads)",
            hint="read with `consistent: true` (the default) so that every stream reads one snapshot",
        )


def _ordered_alike(values: tuple) -> bool:
    """Whether Python orders these key values as every SQL engine does (no text, no bytes)."""
    return all(isinstance(value, int | Decimal | float | dt.date | dt.time) for value in values)


def _ancestor_sql(source: SqlSource, ancestor: Level, at: Json, bounds: list[str]) -> str:
    """The derived table of one ancestor: its key as etl_k0.., its link to its parent as etl_l0..,
    the rows its `where:` and `bounds` (SQL conditions) keep."""
    quote = source.quote
    columns = [f"{quote(name)} AS {quote(f'etl_k{j}')}" for j, name in enumerate(ancestor.meta.key)]
    columns += [f"{quote(name)} AS {quote(f'etl_l{j}')}" for j, name in enumerate(ancestor.link)]
    conditions = [f"({source.user_sql(ancestor.where)})"] if ancestor.where else []
    conditions += bounds
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"SELECT {', '.join(columns)} FROM {source.from_clause(ancestor.meta, at)}{where}"


def _at(partition: Partition) -> Json:
    return (partition.lower or {}).get("at")


@dataclass
class _Node:
    """A row read and the rows of its children, by level."""

    row: Any
    children: list[list[_Node]]


def read_nested(
    source: SqlSource, connection: Any, root: Level, partition: Partition, after: tuple | None,
    plan: ReadPlan, parents: Iterator[list],
) -> Iterator[Batch]:
    """Batches of root records each holding its children, from the root's chunks of driver rows
    (`parents`); a batch ends on a parent, before the one whose rows (of all levels) would take it past
    `limits.records` rows or `limits.bytes` (a parent whose rows alone do is a batch of its own)."""
    streams: dict[int, Stream] = {}

    def open_streams(chain: list[Level], level: Level) -> None:
        for child in level.children:
            streams[id(child)] = Stream(source, connection, [*chain, level], child, partition, after)
            open_streams([*chain, level], child)

    open_streams([], root)
    limits = source.limits
    held: list[_Node] = []
    rows = size = 0
    for chunk in parents:
        for row in chunk:
            node, count, bytes_ = _gather(streams, root, plan, row, ())
            if held and (rows + count > limits.records or size + bytes_ > limits.bytes):
                yield _batch(source, root, plan, held)
                held, rows, size = [], 0, 0
            held.append(node)
            rows, size = rows + count, size + bytes_
    for stream in streams.values():
        stream.finish()
    if held:
        yield _batch(source, root, plan, held)


def _gather(streams: dict[int, Stream], level: Level, plan: ReadPlan, row: Any, above: tuple
            ) -> tuple[_Node, int, int]:
    """The node of `row` (of `level`) with its descendants taken from their streams; rows and bytes held."""
    path = above + tuple(row[i] for i in plan.fields(plan.key_positions))
    node = _Node(row, [])
    count, size = 1, plan.row_size(row)
    for child in level.children:
        stream = streams[id(child)]
        nodes = []
        for child_row in stream.take(path):
            child_node, child_count, child_size = _gather(streams, child, stream.plan, child_row, path)
            nodes.append(child_node)
            count, size = count + child_count, size + child_size
        node.children.append(nodes)
    return node, count, size


def _batch(source: SqlSource, root: Level, plan: ReadPlan, nodes: list[_Node]) -> Batch:
    last = tuple(nodes[-1].row[index] for index in plan.fields(plan.key_positions))
    records, failed = source.convert_rows(root.meta, plan, [node.row for node in nodes])
    for index, (record, node) in enumerate(zip(records, nodes, strict=True)):
        if index in failed:
            continue
        problem = _attach(source, root, record, node)
        if problem is not None:
            failed[index] = source.child_reject(root.meta, plan, node.row, problem)
    if failed:
        records = [record for index, record in enumerate(records) if index not in failed]
    return Batch(records, encode_key(last), list(failed.values()))


def _attach(source: SqlSource, level: Level, record: dict, node: _Node) -> tuple[str, Reject] | None:
    """Put the converted children of `node` in `record`; the first child value that could not be
    converted, as (field path, its reject), when one could not."""
    for child, nodes in zip(level.children, node.children, strict=True):
        assert child.plan is not None  # its stream is open
        records, failed = source.convert_rows(child.meta, child.plan, [n.row for n in nodes])
        for index in sorted(failed):
            return f"{child.name}[{index}]", failed[index]
        for index, (child_record, child_node) in enumerate(zip(records, nodes, strict=True)):
            problem = _attach(source, child, child_record, child_node)
            if problem is not None:
                return f"{child.name}[{index}].{problem[0]}", problem[1]
        record[child.name] = records
    return None

