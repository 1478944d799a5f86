"""Column-wise mapping: one bulk cast per column instead of one call per value.

A mapping whose outputs are each made either from each record or from each element of one array
of the record (`explode: orders[]`, under a `parent:` made from the record or none), with no
filters, no PII rules and no `nulls: omit`, is mapped a column at a time: the values a path reads
are read for the whole batch (the elements of every record's array laid end to end) and cast by
`bulk.py`, and the rows stay columns (`ColumnRows`) for a sink that reads them so. A child row's
parent key values are taken from the parent's columns. A column whose bulk cast needs a closer
look, and a column that is not a path (a constant, template, expression, map or the remaining
fields), is made value by value with the very column function the row path uses. Outputs made
from the record or from one array may write one table (a DynamoDB single-table design): that
table's rows are then dicts, each record's in the order the row path makes them.
Records for which any column (or an array that is not one) fails are mapped again by the row
path, which rejects them with exactly the reason, field and value type it always gives; so the
rows, rejects and source keys are the row path's, only made faster.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from etl.mapping.bulk import CloserLook, bulk_cast
from etl.mapping.paths import MISSING, Path, make_getter
from etl.mapping.spec import ColumnSpec, MappingSpec, OutputSpec
from etl.records import ColumnRows, TableRows

TableKey = tuple[str, str]
ColumnFn = Callable[[tuple], Any]


class _Scopes:
    """The scope tuples an output's rows are made from: `(record,)` for each record, or
    `(record, element)` for each element of an exploded array; `owners[i]` is row i's record."""

    def __init__(self, records: list[dict], owners: list[int] | None = None, elements: list | None = None):
        self.records = records
        self.owners = owners
        self.elements = elements
        self._tuples: list[tuple] | None = None
        self._owner_records: list[dict] | None = None
        self._elements_are_dicts: bool | None = None

    def tuples(self) -> list[tuple]:
        if self._tuples is None:
            if self.owners is None:
                self._tuples = [(record,) for record in self.records]
            else:
                assert self.elements is not None
                self._tuples = list(zip(self.of_owners(), self.elements, strict=True))
        return self._tuples

    def of_owners(self) -> list[dict]:
        """The record of each row."""
        if self.owners is None:
            return self.records
        if self._owner_records is None:
            records = self.records
            self._owner_records = [records[owner] for owner in self.owners]
        return self._owner_records

    def dicts(self, scope: int) -> list[dict] | None:
        """What a path of `scope` starts at, for each row, when every one is a dict (the records
        are: `ColumnarPlan.apply` is only given dict records); else None."""
        if self.owners is None or scope in (0, -2):
            return self.of_owners()
        if self._elements_are_dicts is None:
            self._elements_are_dicts = set(map(type, self.elements or ())) <= {dict}
        return self.elements if self._elements_are_dicts else None

    def record_of(self, row: int) -> int:
        return row if self.owners is None else self.owners[row]

    def record_of_each(self) -> list[int] | range:
        """Each row's record (its index in the batch)."""
        return range(len(self.records)) if self.owners is None else self.owners


@dataclass(frozen=True)
class _Column:
    path: Path | None
    """What the column reads; None: the row function for every row (a column that is not a path)."""
    getter: Callable[[tuple], Any] | None
    """The row path's reader of `path`."""
    bulk: Callable[[list], list] | None
    row_fn: ColumnFn
    """The row path's compiled function of this column (cast, default, key guard)."""

    def values(self, scopes: _Scopes, failed: set[int]) -> list:
        """This column's value in every row; the indexes of records it fails go to `failed`."""
        if self.path is not None and self.getter is not None and self.bulk is not None:
            try:
                return self.bulk(_read(self.path, self.getter, scopes))
            except CloserLook:
                pass
        row_fn, values = self.row_fn, []
        for index, scope in enumerate(scopes.tuples()):
            try:
                values.append(row_fn(scope))
            except Exception:  # the row path decides what this record becomes
                failed.add(scopes.record_of(index))
                values.append(None)
        return values


def _read(path: Path, getter: Callable[[tuple], Any], scopes: _Scopes) -> list:
    """`path`'s value (MISSING when absent) in every row, as `getter` (the row path's) reads it."""
    steps = path.steps
    if len(steps) == 1 and isinstance(steps[0], str):
        docs = scopes.dicts(path.scope)
        if docs is not None:
            count = len(docs)
            return list(map(dict.get, docs, repeat(steps[0], count), repeat(MISSING, count)))
    return list(map(getter, scopes.tuples()))


@dataclass(frozen=True)
class _Explode:
    array: Callable[[tuple], Any]
    """The exploded array's getter, from `(record,)`."""
    parent: int | None
    """Index (in the plan) of the output whose rows the child rows belong to, made from the record."""
    parent_key: tuple[str, ...]
    ordinal: str | None

    def scopes(self, records: list[dict], failed: set[int]) -> _Scopes:
        """Every element of every record's array; a record whose array is not one fails."""
        owners: list[int] = []
        elements: list = []
        array_of = self.array
        for index, record in enumerate(records):
            array = array_of((record,))
            if array is None or array is MISSING:
                continue
            if type(array) is not list:
                failed.add(index)
                continue
            owners.extend(repeat(index, len(array)))
            elements.extend(array)
        return _Scopes(records, owners, elements)


@dataclass(frozen=True)
class _Output:
    table: TableKey
    names: tuple[str, ...]
    columns: tuple[_Column, ...]
    explode: _Explode | None = None


class ColumnarPlan:
    """`apply` maps a batch of dict records column by column; made by `columnar_plan`."""

    def __init__(self, outputs: list[_Output]) -> None:
        self._outputs = outputs
        self._tables: dict[TableKey, list[int]] = {}
        """Each table's outputs in the file's order: for a table several write (`columnar_plan` then
        allows no `parent:`), the order in which the row path makes a record's rows."""
        for index, output in enumerate(outputs):
            self._tables.setdefault(output.table, []).append(index)

    def apply(
        self, records: list[dict], key_text: Callable[[dict], str], by_record: Callable[[list[dict]], Any]
    ) -> Any:
        """The MappedBatch of `records`; `by_record(records)` is the row path, which maps (rejects) the
        records some column failed, and gives the batch every table's rows go into."""
        failed: set[int] = set()
        made: list[tuple[_Output, dict[str, list], _Scopes]] = []
        for output in self._outputs:
            scopes = _Scopes(records) if output.explode is None else output.explode.scopes(records, failed)
            by_name: dict[str, list] = {}
            explode = output.explode
            if explode is not None and explode.parent is not None:
                parent = made[explode.parent][1]
                owners = scopes.owners
                assert owners is not None
                for name in explode.parent_key:
                    values = parent[name]
                    by_name[name] = [values[owner] for owner in owners]
            if explode is not None and explode.ordinal is not None:
                by_name[explode.ordinal] = _ordinals(scopes)
            for name, column in zip(output.names, output.columns, strict=True):
                by_name[name] = column.values(scopes, failed)
            made.append((output, by_name, scopes))
        source_keys = list(map(key_text, records))
        batch = by_record([records[index] for index in sorted(failed)])  # their rejects
        if any(rows.rows for rows in batch.rows.values()):
            return by_record(records)  # not expected: the row path maps what a column refused
        for table, indexes in self._tables.items():
            if len(indexes) > 1:
                batch.rows[table] = _interleaved([made[index][1:] for index in indexes], source_keys, failed)
                continue
            _, by_name, scopes = made[indexes[0]]
            records_of_rows = scopes.record_of_each()
            keys = [source_keys[owner] for owner in records_of_rows]
            if failed:
                keep = [row for row, owner in enumerate(records_of_rows) if owner not in failed]
                keys = [keys[row] for row in keep]
                by_name = {name: [values[row] for row in keep] for name, values in by_name.items()}
            batch.rows[table] = ColumnRows(by_name, keys)
        return batch


def _interleaved(parts: list[tuple[dict[str, list], _Scopes]], source_keys: list[str], failed: set[int]
                 ) -> TableRows:
    """The rows of several outputs writing one table, as the row path orders them: record by record,
    and within a record output by output (`parts` are in that order)."""
    rows: list[dict] = []
    owners: list[int] = []
    for by_name, scopes in parts:
        made = list(map(dict, map(zip, repeat(tuple(by_name)), zip(*by_name.values(), strict=True))))
        owned = scopes.record_of_each()
        if len(made) != len(owned):  # raised, not asserted: `python -O` must not pair rows with other records
            raise AssertionError("an output's columns and rows disagree")
        rows.extend(made)
        owners.extend(owned)
    order = sorted(range(len(rows)), key=owners.__getitem__)  # stable: a record's rows keep `parts`' order
    if failed:
        order = [row for row in order if owners[row] not in failed]
    return TableRows([rows[row] for row in order], [source_keys[owners[row]] for row in order])


def _ordinals(scopes: _Scopes) -> list[int]:
    """Each element's index in its array."""
    ordinals: list[int] = []
    owners = scopes.owners or []
    previous, position = -1, 0
    for owner in owners:
        position = position + 1 if owner == previous else 0
        previous = owner
        ordinals.append(position)
    return ordinals


class _ByRecord(Exception):
    """The mapping has a part the columnar plan does not make: it is mapped record by record."""


def columnar_plan(spec: MappingSpec, row_columns: list[list[tuple[str, ColumnFn]]],
                  parent_keys: list[tuple[str, ...]], ordinals: list[str | None]) -> ColumnarPlan | None:
    """The columnar plan of a mapping, or None when it is not of the shape described above.

    Per output: `row_columns`, the row path's (name, compiled column function) pairs; `parent_keys`,
    the names of the parent key columns its rows start with; `ordinals`, its ordinal column."""
    if spec.pii or spec.where is not None:
        return None
    index_of = {(output.target, output.table): index for index, output in enumerate(spec.outputs)}
    written = Counter((output.target, output.table) for output in spec.outputs)
    shared = {table for table, outputs_writing in written.items() if outputs_writing > 1}
    if shared and any(output.parent is not None for output in spec.outputs):
        return None  # a parent is found by its table, which must then be one output's; and with no
        # children the row path makes a record's rows output by output in the file's order
    outputs = []
    try:
        for index, (output, compiled) in enumerate(zip(spec.outputs, row_columns, strict=True)):
            if output.where is not None or output.nulls == "omit" or output.condition is not None:
                raise _ByRecord
            explode = _explode(output, spec, index_of, parent_keys[index], ordinals[index])
            guarded = output.rules.key_bytes is not None
            columns = tuple(_bulk_column(column, row_fn, key=name in output.key, guarded=guarded,
                                         exploded=explode is not None)
                            for column, (name, row_fn) in zip(output.columns, compiled, strict=True))
            names = tuple(name for name, _ in compiled)
            outputs.append(_Output((output.target, output.table), names, columns, explode))
    except _ByRecord:
        return None
    return ColumnarPlan(outputs)


def _explode(output: OutputSpec, spec: MappingSpec, index_of: dict[TableKey, int],
             parent_key: tuple[str, ...], ordinal: str | None) -> _Explode | None:
    """How an exploded output finds its rows; None for an output made from each record."""
    if not output.explode:
        if output.parent is not None:
            raise _ByRecord
        return None
    if len(output.explode) != 1:
        raise _ByRecord
    parent = None
    if output.parent is not None:
        parent = index_of[(output.target, output.parent)]
        made_first = parent < index_of[(output.target, output.table)]
        if spec.outputs[parent].explode or spec.outputs[parent].parent is not None or not made_first:
            raise _ByRecord
    level = output.explode[0]
    if None in level.steps or level.scope not in (0, -1):
        raise _ByRecord
    return _Explode(make_getter(level), parent, parent_key, ordinal)


def _bulk_column(column: ColumnSpec, row_fn: ColumnFn, *, key: bool, guarded: bool,
                 exploded: bool) -> _Column:
    if column.kind != "from":  # a constant, template, expression, map or the remaining fields
        return _Column(None, None, None, row_fn)
    path = column.path
    if path is None:
        raise _ByRecord
    scopes = (0, -1, -2) if exploded else (0, -1)
    if not path.steps or not all(isinstance(step, str) for step in path.steps) or path.scope not in scopes:
        raise _ByRecord
    if key and guarded:  # key sizes (DynamoDB) are checked by the row function's key guard
        return _Column(path, None, None, row_fn)
    nullable = column.default is MISSING and not column.required and not key
    return _Column(path, make_getter(path), bulk_cast(column.type, tz=column.tz, nullable=nullable), row_fn)
