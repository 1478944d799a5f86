"""Compile a MappingSpec once into plain closures and apply them to batches of records.

Paths, casts, templates and expressions are turned into closures when the mapping is compiled;
applying a batch only calls them. Each record is mapped, filtered or rejected exactly once: a
record that fails in any output is rejected whole and none of its rows are emitted.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from etl.coltypes import ColumnType
from etl.mapping.columnar import columnar_plan
from etl.mapping.expr import compile_expr
from etl.mapping.functions import EvalError
from etl.mapping.paths import MISSING, Path, make_getter
from etl.mapping.pii import Unprotectable, make_protector
from etl.mapping.reads import ReadPath, read_paths
from etl.mapping.spec import ColumnSpec, MappingSpec, OutputSpec
from etl.mapping.tables import OutputShape, output_shapes, table_specs
from etl.mapping.template import TemplateValueError, compile_template
from etl.mapping.types import CastError, make_cast, to_plain, type_name
from etl.records import Reject, TableRows, TableSpec, nested_path
from etl.sinks.base import TargetRules

TableKey = tuple[str, str]
ColumnFn = Callable[[tuple], Any]



class RowProblem(Exception):
    """Why one record cannot be mapped: the field at fault, the reason, the offending value's type."""

    def __init__(self, field_path: str, reason: str, value_type: str | None) -> None:
        super().__init__(reason)
        self.field_path, self.reason, self.value_type = field_path, reason, value_type


@dataclass
class MappedBatch:
    rows: dict[TableKey, TableRows] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)
    filtered: int = 0


@dataclass
class Preview:
    """One source record (PII already transformed) beside what the mapping made of it."""

    record: dict
    rows: dict[TableKey, list[dict]]
    rejects: list[Reject]
    filtered: bool


@dataclass
class _Output:
    table: TableKey
    columns: list[tuple[str, ColumnFn]]
    levels: list[Callable[[tuple], Any]]
    level_texts: list[str]
    where: Callable[[tuple], Any] | None
    parent_names: tuple[str, ...]
    ordinal: str | None
    key: tuple[str, ...]
    children: list[_Output]
    omit: bool = False
    """`nulls: omit`: null values are left out of the row (the item has no such attribute)."""


def _empty(column: ColumnSpec, field_path: str) -> Callable[[Any], Any]:
    """What a missing or null value becomes: the default, None, or a reject when required."""
    default = column.default
    if default is not MISSING:
        if isinstance(default, (dict, list, set)):
            return lambda value: copy.deepcopy(default)
        return lambda value: default
    if column.required:

        def refuse(value: Any) -> Any:
            raise RowProblem(
                field_path,
                f"required field `{field_path}` is {'missing' if value is MISSING else 'null'}",
                None,
            )

        return refuse
    return lambda value: None


def _column_fn(column: ColumnSpec, rest_used: frozenset[str], omit: bool = False) -> ColumnFn:
    """`omit` (an output with `nulls: omit`): a template with a null field, and a null member of a
    map or of the remaining fields, are left out (None for the column) instead of rejected or kept."""
    cast = make_cast(column.type, rounding=column.rounding, tz=column.tz, items=column.items)
    label = _label(column)
    on_empty = _empty(column, label)
    if column.kind == "from":
        assert column.path is not None
        return _read_fn(column, cast, on_empty, label)
    if column.kind == "const":
        return _const_fn(column.const)
    if column.kind == "template":
        return _template_fn(column, _finish_fn(column, cast, on_empty, label), omit)
    if column.kind == "expr":
        return _expr_fn(column, _finish_fn(column, cast, on_empty, label))
    if column.kind == "map":
        assert column.map_tree is not None
        build = _map_fn(column.map_tree, omit)
        return lambda ctx: build(ctx)
    if column.kind == "rest":
        return _rest_fn(column, rest_used, omit)
    raise ValueError(f"unknown column kind {column.kind}")


def _finish_fn(
    column: ColumnSpec, cast: Callable[[Any], Any], on_empty: Callable[[Any], Any], label: str
) -> Callable[[Any], Any]:
    """A computed value made the column's: empty values as the column says, others cast."""

    def finish(value: Any) -> Any:
        if value is None or value is MISSING:
            return on_empty(value)
        try:
            return cast(value)
        except CastError as exc:
            raise _cast_problem(label, column.type.text, exc) from None

    return finish


def _const_fn(value: Any) -> ColumnFn:
    """A constant; a document or array is copied for each row, so that no two rows share one."""
    if isinstance(value, (dict, list, set)):
        return lambda ctx: copy.deepcopy(value)
    return lambda ctx: value


def _template_fn(column: ColumnSpec, finish: Callable[[Any], Any], omit: bool) -> ColumnFn:
    assert column.template is not None
    render = compile_template(column.template, null_gives_none=omit)

    def fill(ctx: tuple) -> Any:
        try:
            text = render(ctx)
        except TemplateValueError as exc:
            raise RowProblem(exc.path, f"column `{column.name}`: {exc.reason}", exc.value_type) from None
        return text if column.type.base == "string" or text is None else finish(text)

    return fill


def _expr_fn(column: ColumnSpec, finish: Callable[[Any], Any]) -> ColumnFn:
    evaluate = compile_expr(column.expr)

    def compute(ctx: tuple) -> Any:
        try:
            value = evaluate(ctx)
        except EvalError as exc:
            raise RowProblem(
                column.name, f"column `{column.name}`: {exc.reason}", exc.value_type
            ) from None
        return finish(value)

    return compute


def _rest_fn(column: ColumnSpec, rest_used: frozenset[str], omit: bool) -> ColumnFn:
    """The record's fields that no other column reads (or all of them, `rest: all`), less the excluded."""
    skip = column.exclude if column.rest_all else column.exclude | rest_used

    def remaining(ctx: tuple) -> Any:
        record = ctx[0]
        try:
            return {
                name: to_plain(value)
                for name, value in record.items()
                if name not in skip and not (omit and value is None)
            }
        except CastError as exc:
            problem = exc
        for name, value in record.items():  # find the field at fault, to name it
            if name not in skip:
                try:
                    to_plain(value)
                except CastError as exc:
                    problem = exc.within(name)
                    break
        path = nested_path(column.name, problem.path)
        raise RowProblem(path, f"column `{column.name}`, at {path}: {problem.reason}", problem.value_type)

    return remaining


def _read_fn(
    column: ColumnSpec, cast: Callable[[Any], Any], on_empty: Callable[[Any], Any], label: str
) -> ColumnFn:
    """Read one source path and cast it. The common case (one field name) reads the dict directly,
    and text columns skip the cast call when the value already is text."""
    path = column.path
    assert path is not None
    getter = make_getter(path)
    type_text = column.type.text

    def failed(exc: CastError) -> RowProblem:
        return _cast_problem(label, type_text, exc)

    if len(path.steps) != 1 or not isinstance(path.steps[0], str):

        def read(ctx: tuple) -> Any:
            value = getter(ctx)
            if value is None or value is MISSING:
                return on_empty(value)
            try:
                return cast(value)
            except CastError as exc:
                raise failed(exc) from None

        return read
    key, scope = path.steps[0], path.scope
    if column.type.base == "string":

        def read_text(ctx: tuple) -> Any:
            doc = ctx[scope]
            value = doc.get(key, MISSING) if type(doc) is dict else getter(ctx)
            if type(value) is str:
                return value
            if value is None or value is MISSING:
                return on_empty(value)
            try:
                return cast(value)
            except CastError as exc:
                raise failed(exc) from None

        return read_text

    def read_field(ctx: tuple) -> Any:
        doc = ctx[scope]
        value = doc.get(key, MISSING) if type(doc) is dict else getter(ctx)
        if value is None or value is MISSING:
            return on_empty(value)
        try:
            return cast(value)
        except CastError as exc:
            raise failed(exc) from None

    return read_field


def _map_fn(tree: dict[str, Any], omit: bool = False) -> ColumnFn:
    """A map column's builder; with `omit`, null members are left out and a map left empty is null."""
    members = [
        (name, _map_fn(value, omit) if isinstance(value, dict) else _column_fn(value, frozenset(), omit))
        for name, value in tree.items()
    ]
    if not omit:
        return lambda ctx: {name: member(ctx) for name, member in members}

    def build(ctx: tuple) -> dict | None:
        built = {name: value for name, member in members if (value := member(ctx)) is not None}
        return built or None

    return build


def _cast_problem(label: str, type_text: str, exc: CastError) -> RowProblem:
    """A failed cast of the value at `label`; inside a document or array, the path names the member."""
    if not exc.path:
        return RowProblem(label, f"`{label}` as {type_text}: {exc.reason}", exc.value_type)
    path = nested_path(label, exc.path)
    return RowProblem(path, f"`{label}` as {type_text}, at {path}: {exc.reason}", exc.value_type)


def _label(column: ColumnSpec) -> str:
    if column.path is not None:
        return column.path.text
    return column.name


def key_size(value: Any) -> int:
    """The bytes of a key value that count against a target's key size limit (text as UTF-8, bytes as
    they are; numbers are bounded by their digits instead and count 0)."""
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    return len(value) if isinstance(value, bytes) else 0


def _key_guard(fn: ColumnFn, name: str, position: int, rules: TargetRules) -> ColumnFn:
    """Refuse a null key value, and, where the target limits key sizes (DynamoDB), key values above
    those limits and empty text."""
    limit = rules.key_bytes[position] if rules.key_bytes is not None else None
    engine = rules.engine

    def guarded(ctx: tuple) -> Any:
        value = fn(ctx)
        if value is None:
            raise RowProblem(name, f"key column `{name}` is null", None)
        if limit is not None:
            size = key_size(value)
            if size > limit:
                raise RowProblem(
                    name, f"key attribute `{name}` is {size} bytes; {engine} allows {limit}", type_name(value)
                )
            if isinstance(value, str) and not value:
                raise RowProblem(name, f"key attribute `{name}` is empty text; {engine} refuses it", "str")
        return value

    return guarded


def _top_fields(depth: int, paths: list[Path]) -> set[str] | None:
    """Top-level record fields read by paths used at scope depth `depth` (None: the whole record)."""
    found: set[str] = set()
    for path in paths:
        if path.scope == 0 or (path.scope == -1 and depth == 0) or (path.scope == -2 and depth == 1):
            if not path.steps or not isinstance(path.steps[0], str):
                return None
            found.add(path.steps[0])
    return found


class CompiledMapping:
    """A mapping ready to apply: `tables`, `fields`, `source_key`, `reads`, `apply`, `preview`."""

    def __init__(self, spec: MappingSpec) -> None:
        self.spec = spec
        self.tables: list[TableSpec] = table_specs(spec)
        self.source_key: list[str] = list(spec.source_key)
        shapes = output_shapes(spec)
        self._protect = make_protector(spec.pii)
        key_rules = [rule for rule in spec.pii if str(rule.steps[0]) in set(spec.source_key)]
        self._protect_key = make_protector(key_rules) if key_rules else None
        self._where = compile_expr(spec.where) if spec.where is not None else None
        self._compiled: list[_Output] = []
        self._roots = self._build(spec, shapes)
        self.fields: list[str] | None = self._fields(spec)
        self._columnar = columnar_plan(spec, [output.columns for output in self._compiled],
                                       [output.parent_names for output in self._compiled],
                                       [output.ordinal for output in self._compiled])
        self.reads: list[ReadPath] = read_paths(spec)
        """Every source path the mapping reads, with its place in the file (see `etl.mapping.reads`)."""

    def copies(self, target: str, table: str) -> dict[str, tuple[str, ColumnType]] | None:
        """When every row of (target, table) is one source record's top-level fields copied as they
        are: target column -> (source field, column type); else None. No explode, filter, PII rule,
        default, `required`, rounding, time zone, constant, template or expression: each row is then
        the record's fields under new names, each cast to its type (a cast that may still refuse a
        value or change it, which the source checks against its own column types:
        `PostgresSource.checksum_side`). Validation uses it to compare such a table where both sides
        live (SQL pushdown) instead of mapping the source in Python."""
        if self.spec.where is not None or self.spec.pii:
            return None
        outputs = [o for o in self.spec.outputs if (o.target, o.table) == (target, table)]
        if len(outputs) != 1 or outputs[0].explode or outputs[0].where is not None or outputs[0].parent:
            return None
        found: dict[str, tuple[str, ColumnType]] = {}
        for column in outputs[0].columns:
            path = column.path
            if (column.kind != "from" or path is None or path.scope not in (0, -1) or len(path.steps) != 1
                    or not isinstance(path.steps[0], str) or column.default is not MISSING
                    or column.required or column.rounding is not None or column.tz is not None
                    or column.items is not None or column.pii is not None):
                return None
            found[column.name] = (path.steps[0], column.type)
        return found

    @property
    def by_column(self) -> bool:
        """Whether `apply` maps batches of dict records column by column (`columnar.py`)."""
        return self._columnar is not None

    def _build(self, spec: MappingSpec, shapes: dict[int, OutputShape]) -> list[_Output]:
        compiled: dict[int, _Output] = {}
        index_of = {
            (output.target, output.table): index
            for index, output in enumerate(spec.outputs)
            if output.rules.child_tables
        }
        roots: list[_Output] = []
        for index, output in enumerate(spec.outputs):
            compiled[index] = self._output(output, shapes[index], spec)
        self._compiled = [compiled[index] for index in range(len(spec.outputs))]
        for index, output in enumerate(spec.outputs):
            if output.parent is None:
                roots.append(compiled[index])
            else:
                compiled[index_of[(output.target, output.parent)]].children.append(compiled[index])
        return roots

    def _output(self, output: OutputSpec, shape: OutputShape, spec: MappingSpec) -> _Output:
        parent_depth = 0
        if output.parent is not None:
            parent = next(o for o in spec.outputs if (o.target, o.table) == (output.target, output.parent))
            parent_depth = len(parent.explode)
        own_levels = output.explode[parent_depth:]
        used = _top_fields(0, [p for c in output.columns if c.kind != "rest" for p in c.paths()]) or set()
        columns = []
        omit = output.nulls == "omit"
        for column in output.columns:
            fn = _column_fn(column, frozenset(used), omit and column.name not in shape.key)
            if column.name in shape.key:
                fn = _key_guard(fn, column.name, shape.key.index(column.name), output.rules)
            columns.append((column.name, fn))
        for column in output.condition_values:  # carried by each row under the placeholder's name
            columns.append((column.name, _column_fn(column, frozenset(), omit)))
        return _Output(
            table=(output.target, output.table),
            columns=columns,
            levels=[make_getter(level) for level in own_levels],
            level_texts=[level.text for level in own_levels],
            where=compile_expr(output.where) if output.where is not None else None,
            parent_names=tuple(column.name for column in shape.parent_columns),
            ordinal=shape.ordinal,
            key=shape.key,
            children=[],
            omit=omit,
        )

    def _fields(self, spec: MappingSpec) -> list[str] | None:
        from etl.mapping.expr import field_paths

        fields: set[str] = set(spec.source_key)
        fields.update(str(rule.steps[0]) for rule in spec.pii)
        if spec.where is not None:
            top = _top_fields(0, field_paths(spec.where))
            if top is None:
                return None
            fields |= top
        for output in spec.outputs:
            depth = len(output.explode)
            if output.explode:
                fields.add(str(output.explode[0].steps[0]))
            paths = [path for column in output.columns for path in column.paths()]
            if output.where is not None:
                paths += field_paths(output.where)
            if any(column.kind == "rest" for column in output.columns):
                return None
            top = _top_fields(depth, paths)
            if top is None:
                return None
            fields |= top
        return sorted(fields)

    def apply(
        self, records: list[dict], key_text: Callable[[dict], str], *, source_table: str = ""
    ) -> MappedBatch:
        """Map a batch. `source_table` fills Reject.table (the engine knows the source's name).

        A mapping of the shape `columnar.py` describes is mapped column by column, with the
        same result as `apply_by_record`. Source keys (of rejects and rows) are `keyed(key_text)`'s."""
        key_text = self.keyed(key_text)
        if self._columnar is not None and set(map(type, records)) == {dict}:
            def by_record(some: list[dict]) -> MappedBatch:
                return self._map_records(some, key_text, source_table)

            return self._columnar.apply(records, key_text, by_record)
        return self._map_records(records, key_text, source_table)

    def keyed(self, key_text: Callable[[dict], str]) -> Callable[[dict], str]:
        """The source key text of a record as dead letters, reports and validation see it: `key_text` of
        the record with the PII rules on the mapping's `source.key` fields applied, so a key that is
        itself PII (an email) is never written raw; `key_text` itself when no key field is PII."""
        protect = self._protect_key
        if protect is None:
            return key_text

        def text(record: dict) -> str:
            try:
                return key_text(protect(record))
            except Unprotectable as exc:
                try:
                    return key_text(exc.safe)
                except (KeyError, IndexError, TypeError, ValueError):
                    return "<key withheld: its PII transform failed>"

        return text

    def apply_by_record(
        self, records: list[dict], key_text: Callable[[dict], str], *, source_table: str = ""
    ) -> MappedBatch:
        """Map a batch one record at a time (any mapping)."""
        return self._map_records(records, self.keyed(key_text), source_table)

    def _map_records(self, records: list[dict], key_text: Callable[[dict], str], source_table: str
                     ) -> MappedBatch:
        batch = MappedBatch(rows={(table.target, table.table): TableRows() for table in self.tables})
        outputs = batch.rows
        protect, where, roots = self._protect, self._where, self._roots
        for record in records:
            try:
                safe = protect(record)
            except Unprotectable as exc:
                batch.rejects.append(
                    Reject(
                        table=source_table,
                        source_key=key_text(record),
                        reason=exc.problem.reason,
                        stage="map",
                        field_path=exc.problem.path,
                        value_type=exc.problem.value_type,
                        record=exc.safe,
                    )
                )
                continue
            ctx = (safe,)
            try:
                if where is not None and not where(ctx):
                    batch.filtered += 1
                    continue
                emitted: list[tuple[TableKey, dict]] = []
                for output in roots:
                    _emit(output, ctx, (), emitted)
            except RowProblem as problem:
                batch.rejects.append(
                    Reject(
                        table=source_table,
                        source_key=key_text(record),
                        reason=problem.reason,
                        stage="map",
                        field_path=problem.field_path,
                        value_type=problem.value_type,
                        record=safe,
                    )
                )
                continue
            except EvalError as exc:
                batch.rejects.append(
                    Reject(
                        table=source_table,
                        source_key=key_text(record),
                        reason=f"filter: {exc.reason}",
                        stage="map",
                        value_type=exc.value_type,
                        record=safe,
                    )
                )
                continue
            source_key = key_text(record)
            for table, row in emitted:
                target = outputs[table]
                target.rows.append(row)
                target.source_keys.append(source_key)
        return batch

    def preview(self, records: list[dict], key_text: Callable[[dict], str] | None = None) -> list[Preview]:
        """For `--plan`: each record (PII transformed) beside its rows and rejects."""
        key_text = key_text or (lambda record: "")
        previews = []
        for record in records:
            batch = self.apply([record], key_text)
            rows = {
                table: list(table_rows.rows) for table, table_rows in batch.rows.items() if table_rows.rows
            }
            previews.append(Preview(self.safe_record(record), rows, batch.rejects, batch.filtered == 1))
        return previews

    def safe_record(self, record: dict) -> dict:
        """A copy of `record` with the `pii:` transforms applied, safe to show or log; never raises
        (a field a transform cannot handle is dropped)."""
        try:
            return self._protect(record)
        except Unprotectable as exc:
            return exc.safe


def _emit(output: _Output, ctx: tuple, parent_values: tuple, emitted: list) -> None:
    if not output.levels:
        _build_row(output, ctx, parent_values, None, emitted)
    else:
        _explode(output, 0, ctx, parent_values, emitted)


def _explode(output: _Output, depth: int, ctx: tuple, parent_values: tuple, emitted: list) -> None:
    array = output.levels[depth](ctx)
    here = output.level_texts[depth]
    if array is None or array is MISSING:
        return
    if not isinstance(array, list):
        raise RowProblem(here, f"`{here}` is exploded but is not an array", type_name(array))
    last = depth == len(output.levels) - 1
    for index, element in enumerate(array):
        inner = ctx + (element,)
        try:
            if last:
                _build_row(output, inner, parent_values, index, emitted)
            else:
                _explode(output, depth + 1, inner, parent_values, emitted)
        except RowProblem as problem:
            problem.field_path = f"{here}[{index}].{problem.field_path}"
            raise


def _build_row(output: _Output, ctx: tuple, parent_values: tuple, ordinal: int | None, emitted: list) -> None:
    if output.where is not None:
        try:
            if not output.where(ctx):
                return
        except EvalError as exc:
            raise RowProblem(
                f"{output.table[1]}.where", f"where of `{output.table[1]}`: {exc.reason}", exc.value_type
            ) from None
    if output.parent_names:
        row = dict(zip(output.parent_names, parent_values, strict=True))
        if output.ordinal:
            row[output.ordinal] = ordinal
        for name, fn in output.columns:
            row[name] = fn(ctx)
    else:
        row = {name: fn(ctx) for name, fn in output.columns}
    if output.omit:
        row = {name: value for name, value in row.items() if value is not None}
    emitted.append((output.table, row))
    if output.children:
        values = tuple(row[name] for name in output.key)
        for child in output.children:
            _emit(child, ctx, values, emitted)


def compile_mapping(spec: MappingSpec) -> CompiledMapping:
    """Compile once; the result's `apply` is called per batch."""
    return CompiledMapping(spec)
