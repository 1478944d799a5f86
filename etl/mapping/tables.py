"""The target tables a mapping writes, as TableSpecs; several outputs writing one DynamoDB table merge.

Child tables get the parent's key columns (same names, same types) and, unless they declare
their own key, an `ordinal` column holding the element's index. Computed at validation time so a
type conflict between item types of one DynamoDB table is reported before any data moves.
"""

from __future__ import annotations

from dataclasses import dataclass

from etl.mapping.spec import MappingSpec, OutputSpec
from etl.records import Column, TableSpec

ORDINAL = "ordinal"


@dataclass(frozen=True)
class OutputShape:
    """What compile.py needs besides the output's own columns: inherited columns and the full key."""

    parent_columns: tuple[Column, ...]
    ordinal: str | None
    key: tuple[str, ...]


def output_shapes(spec: MappingSpec) -> dict[int, OutputShape]:
    """Shape of each output (by index in spec.outputs), parents before children."""
    by_table = {(output.target, output.table): index for index, output in enumerate(spec.outputs)}
    shapes: dict[int, OutputShape] = {}

    def shape(index: int) -> OutputShape:
        if index in shapes:
            return shapes[index]
        output = spec.outputs[index]
        if output.parent is None:
            result = OutputShape((), None, output.key)
        else:
            parent_index = by_table[(output.target, output.parent)]
            parent_shape = shape(parent_index)
            parent_types = _column_types(spec.outputs[parent_index], parent_shape)
            parent_columns = tuple(
                Column(name, parent_types[name], nullable=False) for name in parent_shape.key
            )
            own = {column.name for column in output.columns}
            clash = [column.name for column in parent_columns if column.name in own]
            if clash:
                raise output.node.error(
                    f"column `{clash[0]}` is filled with the parent's key automatically",
                    f"remove `{clash[0]}` from the columns of `{output.table}`",
                )
            ordinal = None
            key = output.key
            if not output.key_declared:
                ordinal = ORDINAL if ORDINAL not in parent_shape.key else f"{output.table}_{ORDINAL}"
                if ordinal in own:
                    raise output.node.error(
                        f"column `{ordinal}` is the element index of the default key",
                        "rename the column, or declare `key:`",
                    )
                key = (*parent_shape.key, ordinal)
            result = OutputShape(parent_columns, ordinal, key)
        shapes[index] = result
        return result

    for index in range(len(spec.outputs)):
        shape(index)
    return shapes


def _column_types(output: OutputSpec, shape: OutputShape) -> dict[str, str]:
    types = {column.name: column.type for column in shape.parent_columns}
    if shape.ordinal:
        types[shape.ordinal] = "int"
    types.update({column.name: column.type.text for column in output.columns})
    return types


def output_columns(output: OutputSpec, shape: OutputShape) -> list[Column]:
    key = set(shape.key)
    columns = list(shape.parent_columns)
    if shape.ordinal:
        columns.append(Column(shape.ordinal, "int", nullable=False))
    for column in output.columns:
        columns.append(
            Column(
                column.name,
                column.type.text,
                nullable=not (column.required or column.name in key),
                pii=column.pii,
            )
        )
    return columns


def table_specs(spec: MappingSpec) -> list[TableSpec]:
    """One TableSpec per (target, table); raises MappingError on a column type conflict."""
    shapes = output_shapes(spec)
    merged: dict[tuple[str, str], TableSpec] = {}
    count: dict[tuple[str, str], int] = {}
    presence: dict[tuple[str, str], dict[str, int]] = {}
    first_output: dict[tuple[str, str, str], OutputSpec] = {}
    for index, output in enumerate(spec.outputs):
        shape = shapes[index]
        ident = (output.target, output.table)
        columns = output_columns(output, shape)
        count[ident] = count.get(ident, 0) + 1
        seen = presence.setdefault(ident, {})
        for column in columns:
            seen[column.name] = seen.get(column.name, 0) + 1
        if ident not in merged:
            merged[ident] = TableSpec(
                output.target,
                output.table,
                shape.key,
                tuple(columns),
                output.parent,
                tuple(column.name for column in shape.parent_columns),
                output.condition,
            )
            for column in columns:
                first_output[(*ident, column.name)] = output
            continue
        if merged[ident].condition != output.condition:
            raise output.node.error(
                f"table `{output.table}` is written with another condition-expression by an earlier output",
                "every item type of one table is written under one condition",
            )
        existing = {column.name: column for column in merged[ident].columns}
        added = []
        for column in columns:
            before = existing.get(column.name)
            if before is None:
                added.append(column)
                first_output[(*ident, column.name)] = output
            elif before.type != column.type:
                other = first_output[(*ident, column.name)]
                node = next((c.node for c in output.columns if c.name == column.name), output.node)
                raise node.error(
                    f"attribute `{column.name}` of table `{output.table}` is {column.type} here but "
                    f"{before.type} in the output at line {other.node.line}",
                    "single-table design: give an attribute one type in every item type",
                )
            elif before.pii != column.pii or before.nullable != column.nullable:
                existing[column.name] = Column(
                    before.name, before.type, before.nullable or column.nullable, before.pii or column.pii
                )
        table = merged[ident]
        merged[ident] = TableSpec(
            table.target,
            table.table,
            table.key,
            tuple(existing[c.name] for c in table.columns) + tuple(added),
            table.parent,
            table.parent_key,
            table.condition,
        )
    result = []
    for ident, table in merged.items():
        key = set(table.key)
        # A column some item types do not write is absent from their items: nullable.
        table_columns = tuple(
            column
            if presence[ident][column.name] == count[ident] or column.name in key
            else Column(column.name, column.type, True, column.pii)
            for column in table.columns
        )
        result.append(
            TableSpec(table.target, table.table, table.key, table_columns, table.parent, table.parent_key,
                      table.condition)
        )
    return result
