"""Column-wise mapping of flat records: one bulk cast per column instead of one call per value.

A relational table copied column to column (every column reads one top-level field or is a
constant; no explode, no filters, no PII rules, each output a table of its own) is mapped a column
at a time: the field is read for the whole batch and cast by `bulk.py`, and the rows stay columns
(`ColumnRows`) for a sink that reads them so. A column whose bulk cast needs a closer look is
cast record by record with the very column function the row path uses.
Records for which any column fails are mapped again by the row path, which rejects them with
exactly the reason, field and value type it always gives; so the rows, rejects and source keys are
the row path's, only made faster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from etl.mapping.bulk import CloserLook, bulk_cast
from etl.mapping.paths import MISSING
from etl.mapping.spec import ColumnSpec, MappingSpec
from etl.sinks.base import ColumnRows

TableKey = tuple[str, str]
ColumnFn = Callable[[tuple], Any]


@dataclass(frozen=True)
class _Column:
    field: str | None
    """The top-level field read for the whole batch; None: the row function for every record."""
    bulk: Callable[[list], list] | None
    row_fn: ColumnFn
    """The row path's compiled function of this column (cast, default, key guard)."""

    def values(self, records: list[dict], failed: set[int]) -> list:
        """This column's values for every record; the indexes of records it fails go to `failed`."""
        if self.field is not None and self.bulk is not None:
            count = len(records)
            read = list(map(dict.get, records, repeat(self.field, count), repeat(MISSING, count)))
            try:
                return self.bulk(read)
            except CloserLook:
                pass
        row_fn, values = self.row_fn, []
        for index, record in enumerate(records):
            try:
                values.append(row_fn((record,)))
            except Exception:  # the row path decides what this record becomes
                failed.add(index)
                values.append(None)
        return values


@dataclass(frozen=True)
class _FlatOutput:
    table: TableKey
    names: tuple[str, ...]
    columns: tuple[_Column, ...]


class ColumnarPlan:
    """`apply` maps a batch of dict records column by column; made by `columnar_plan`."""

    def __init__(self, outputs: list[_FlatOutput]) -> None:
        self._outputs = outputs

    def apply(
        self, records: list[dict], key_text: Callable[[dict], str], by_record: Callable[[list[dict]], Any]
    ) -> Any:
        """The MappedBatch of `records`; `by_record(records)` is the row path, which maps (rejects) the
        records some column failed, and gives the batch every table's rows go into."""
        failed: set[int] = set()
        built = [(output, [column.values(records, failed) for column in output.columns])
                 for output in self._outputs]
        source_keys = list(map(key_text, records))
        batch = by_record([records[index] for index in sorted(failed)])  # their rejects
        if any(rows.rows for rows in batch.rows.values()):
            return by_record(records)  # not expected: the row path maps what a column refused
        if failed:
            keep = [index for index in range(len(records)) if index not in failed]
            source_keys = [source_keys[index] for index in keep]
            built = [(output, [[column[index] for index in keep] for column in columns])
                     for output, columns in built]
        for output, columns in built:
            by_name = dict(zip(output.names, columns, strict=True))
            batch.rows[output.table] = ColumnRows(by_name, list(source_keys))
        return batch


def columnar_plan(spec: MappingSpec, row_columns: list[list[tuple[str, ColumnFn]]]) -> ColumnarPlan | None:
    """The columnar plan of a flat mapping, or None when the mapping is not flat.

    `row_columns`: per output, the row path's (name, compiled column function) pairs."""
    if spec.pii or spec.where is not None:
        return None
    if len({(output.target, output.table) for output in spec.outputs}) != len(spec.outputs):
        return None
    outputs = []
    for output, compiled in zip(spec.outputs, row_columns, strict=True):
        if output.explode or output.parent is not None or output.where is not None:
            return None
        if output.nulls == "omit" or output.condition is not None:
            return None
        columns = []
        for column, (name, row_fn) in zip(output.columns, compiled, strict=True):
            flat = _flat_column(column, row_fn, key=name in output.key,
                                dynamodb=output.target_kind == "dynamodb")
            if flat is None:
                return None
            columns.append(flat)
        outputs.append(_FlatOutput((output.target, output.table), tuple(name for name, _ in compiled),
                                   tuple(columns)))
    return ColumnarPlan(outputs)


def _flat_column(column: ColumnSpec, row_fn: ColumnFn, *, key: bool, dynamodb: bool) -> _Column | None:
    if column.kind == "const":
        return _Column(None, None, row_fn)
    if column.kind != "from" or column.path is None:
        return None
    path = column.path
    if len(path.steps) != 1 or not isinstance(path.steps[0], str) or path.scope not in (0, -1):
        return None
    if key and dynamodb:  # DynamoDB key sizes are checked by the row function's key guard
        return _Column(path.steps[0], None, row_fn)
    nullable = column.default is MISSING and not column.required and not key
    return _Column(path.steps[0], bulk_cast(column.type, tz=column.tz, nullable=nullable), row_fn)
