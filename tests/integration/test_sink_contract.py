"""The contract every sink keeps (`etl.sinks.base.Sink`), run against every sink engine.

One suite, parametrized over the engines the way dlt runs one suite over every destination: a new
sink adds an entry to `ENGINES` (how to open it on a local server), not a test file. Tests of what
only one engine does (DynamoDB conditions and item sizes, PostgreSQL column types and COPY) stay in
that engine's own file.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal

import pytest

from etl.errors import EtlError
from etl.records import Column, TableRows, TableSpec
from etl.sinks import SINK_TYPES, module_for, rules_for
from etl.sinks.base import Sink
from tests.conftest import DYNAMODB_ENDPOINT

pytestmark = pytest.mark.integration

SHARDS = 6


@dataclass(frozen=True)
class SinkEngine:
    """How the suite reaches one sink engine on the local servers."""

    kind: str
    """The job file's `type:` (a key of `SINK_TYPES`)."""
    open: Callable[..., Sink]
    """`open(create=...)`: a new sink on the test's own scratch space (`create` as in the job file)."""
    table: Callable[[str], str]
    """A table name in the test's scratch space."""


def postgres_engine(request) -> SinkEngine:
    from etl.sinks import postgres

    dsn = request.getfixturevalue("pg_database")

    def open_sink(create="if_missing"):
        return postgres.open_sink("target", postgres.Config(type="postgres", dsn=dsn, create=create))

    return SinkEngine("postgres", open_sink, lambda name: name)


def dynamodb_engine(request) -> SinkEngine:
    from etl.sinks import dynamodb

    prefix = request.getfixturevalue("dynamodb_table_prefix")

    def open_sink(create="if_missing"):
        config = dynamodb.Config(type="dynamodb", endpoint_url=DYNAMODB_ENDPOINT, create=create,
                                 base_delay_ms=1)
        return dynamodb.open_sink("target", config)

    return SinkEngine("dynamodb", open_sink, lambda name: f"{prefix}_{name}")


ENGINES = {"postgres": postgres_engine, "dynamodb": dynamodb_engine}


def test_every_registered_sink_runs_the_contract():
    assert sorted(ENGINES) == sorted(SINK_TYPES)


@pytest.fixture(params=sorted(ENGINES))
def engine(request) -> SinkEngine:
    return ENGINES[request.param](request)


@pytest.fixture
def sink(engine):
    opened = engine.open()
    yield opened
    opened.close()


# Every column type of the mapping language (etl/mapping/types.py), with a value of each kind.
TYPED_VALUES = (
    ("string", "Zoë 🦀"),
    ("int", -(2**63)),
    ("float", 1 / 3),
    ("bool", True),
    ("decimal", Decimal("-12345678901234567890.123456789")),
    ("decimal(10,2)", Decimal("12345678.90")),
    ("date", dt.date(1969, 12, 31)),
    ("timestamp(6)", dt.datetime(2009, 1, 2, 3, 4, 5, 678901)),
    ("timestamptz(3)", dt.datetime(2009, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)),
    ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678")),
    ("bytes", b"\x00\xff\x01"),
    ("json", {"city": "Oslo", "lat": Decimal("59.913868"), "at": dt.date(2020, 1, 1), "none": None,
              "nested": [1, "two", {"id": uuid.UUID(int=1)}]}),
    ("list", [1, "two", None, {"k": [True]}]),
    ("list(int)", [3, 1, 2]),
    ("list(string)", ["b", "a"]),
    ("set(string)", {"vip", "new"}),
    ("set(int)", {1, 2, 3}),
)
ALL_TYPES = TableSpec(
    "target", "typed", ("id",),
    (Column("id", "int"), *(Column(f"c{n}", kind) for n, (kind, _) in enumerate(TYPED_VALUES))),
)


def typed_row(n: int) -> dict:
    return {"id": n, **{f"c{i}": value for i, (_, value) in enumerate(TYPED_VALUES)}}


def null_row(n: int) -> dict:
    return {"id": n, **{f"c{i}": None for i in range(len(TYPED_VALUES))}}


def exact(value):
    """A value with the type of everything in it, so 1 == 1.0 == Decimal(1) == True do not pass as equal."""
    if isinstance(value, dict):
        return {key: exact(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [exact(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted((exact(item) for item in value), key=repr)
    return (type(value).__name__, value)


def spec_in(engine: SinkEngine, spec: TableSpec, **changes) -> TableSpec:
    fields = {"table": engine.table(spec.table), **changes}
    return TableSpec(
        spec.target, fields["table"], fields.get("key", spec.key), fields.get("columns", spec.columns),
        parent=fields.get("parent", spec.parent), parent_key=fields.get("parent_key", spec.parent_key),
    )


def rows_in(spec: TableSpec, rows: list[dict]) -> dict[str, TableRows]:
    return {spec.table: TableRows(list(rows), [f"_id={row.get('id')}" for row in rows])}


def read_sorted(sink: Sink, spec: TableSpec, **options) -> list[dict]:
    return sorted(sink.read_back(spec, **options), key=lambda row: row["id"])


def stored(sink: Sink, spec: TableSpec, rows: list[dict]) -> list[dict]:
    form = sink.stored_form(spec) or (lambda row: row)
    return [form(row) for row in rows]


SIMPLE = TableSpec("target", "simple", ("id",), (Column("id", "int"), Column("name", "string")))


def simple_rows(ids, name="n") -> list[dict]:
    return [{"id": n, "name": f"{name}{n}"} for n in ids]


# prepare


def test_prepare_creates_a_missing_table_and_accepts_it_when_it_exists(engine, sink):
    spec = spec_in(engine, SIMPLE)
    sink.prepare([spec])
    assert list(sink.read_back(spec)) == []
    again = engine.open(create="never")
    again.prepare([spec])  # an existing table with the same key and columns is accepted
    assert again.write(rows_in(spec, simple_rows([1]))).loaded == {spec.table: 1}
    again.close()
    assert read_sorted(sink, spec) == simple_rows([1])


def test_prepare_without_create_refuses_a_missing_table_naming_it(engine):
    spec = spec_in(engine, SIMPLE)
    sink = engine.open(create="never")
    with pytest.raises(EtlError) as refused:
        sink.prepare([spec])
    message = refused.value.message
    assert message.startswith(f"{rules_for(engine.kind).engine} table ") and spec.table in message
    assert "does not exist" in message
    sink.close()


def test_prepare_refuses_an_existing_table_whose_key_differs(engine, sink):
    spec = spec_in(engine, SIMPLE)
    sink.prepare([spec])
    rekeyed = spec_in(engine, SIMPLE, table=spec.table, key=("id", "name"))
    with pytest.raises(EtlError) as refused:
        engine.open().prepare([rekeyed])
    assert refused.value.message.startswith(f"{rules_for(engine.kind).engine} table ")
    assert spec.table in refused.value.message


def test_shards_preparing_the_same_table_at_once_all_succeed(engine):
    spec = spec_in(engine, SIMPLE)
    sinks = [engine.open() for _ in range(SHARDS)]
    barrier = threading.Barrier(SHARDS, timeout=60)

    def prepare(sink):
        barrier.wait()
        sink.prepare([spec])

    with ThreadPoolExecutor(SHARDS) as pool:
        errors = [future.exception() for future in [pool.submit(prepare, sink) for sink in sinks]]
    assert errors == [None] * SHARDS
    results = [sink.write(rows_in(spec, simple_rows([n]))) for n, sink in enumerate(sinks)]
    assert [result.loaded for result in results] == [{spec.table: 1}] * SHARDS
    assert read_sorted(sinks[0], spec) == simple_rows(range(SHARDS))
    for sink in sinks:
        sink.close()


# write


def test_every_column_type_reads_back_as_its_stored_form(engine, sink):
    """Enough rows for several requests of every engine; values compared with their types."""
    spec = spec_in(engine, ALL_TYPES)
    sink.prepare([spec])
    rows = [typed_row(n) for n in range(1, 301)] + [null_row(n) for n in range(301, 311)]
    result = sink.write(rows_in(spec, rows))
    assert result.loaded == {spec.table: 310} and result.rejects == []
    expected = exact(stored(sink, spec, rows))
    assert exact(read_sorted(sink, spec)) == expected
    assert exact(read_sorted(sink, spec, segments=3, consistent=True)) == expected


def test_writing_a_batch_again_changes_nothing(engine, sink):
    spec = spec_in(engine, ALL_TYPES)
    sink.prepare([spec])
    rows = [typed_row(n) for n in range(1, 41)]
    first = sink.write(rows_in(spec, rows))
    before = exact(read_sorted(sink, spec))
    replay = sink.write(rows_in(spec, rows))
    assert replay.loaded == first.loaded == {spec.table: 40} and replay.rejects == []
    assert exact(read_sorted(sink, spec)) == before


def test_the_same_key_twice_in_a_batch_the_later_wins(engine, sink):
    spec = spec_in(engine, SIMPLE)
    sink.prepare([spec])
    rows = simple_rows(range(30)) + [{"id": 5, "name": "later"}]
    result = sink.write(rows_in(spec, rows))
    assert result.loaded == {spec.table: 30} and result.rejects == []
    back = read_sorted(sink, spec)
    assert len(back) == 30 and back[5] == {"id": 5, "name": "later"}


def test_a_refused_row_is_a_load_reject_with_its_reason_never_silent(engine, sink):
    spec = spec_in(engine, SIMPLE)
    sink.prepare([spec])
    rows = simple_rows(range(10))
    rows[3] = {"id": None, "name": "no key"}
    rows[7] = {"name": "no key at all"}
    result = sink.write({spec.table: TableRows(rows, [f"_id={n}" for n in range(10)])})
    assert result.loaded == {spec.table: 8}
    assert [(r.stage, r.table, r.source_key, r.field_path, r.record) for r in result.rejects] == [
        ("load", spec.table, "_id=3", "id", rows[3]), ("load", spec.table, "_id=7", "id", rows[7])]
    assert all(r.reason.endswith("'id' is missing or null") for r in result.rejects)
    assert [row["id"] for row in read_sorted(sink, spec)] == [0, 1, 2, 4, 5, 6, 8, 9]


# delete


def test_delete_by_key_removes_exactly_the_rows_named(engine, sink):
    """Keyed by two columns (every engine allows two). The count is of the deletes applied: a key that
    is not there is no error (PostgreSQL does not count it; DynamoDB's BatchWriteItem cannot tell, see
    test_postgres_sink.py for the exact count)."""
    spec = spec_in(engine, SIMPLE, key=("id", "name"))
    sink.prepare([spec])
    sink.write(rows_in(spec, simple_rows(range(40))))
    assert sink.delete(spec, simple_rows(range(30))) == 30
    assert read_sorted(sink, spec) == simple_rows(range(30, 40))
    assert sink.delete(spec, simple_rows([99])) in (0, 1)
    assert read_sorted(sink, spec) == simple_rows(range(30, 40))


# replaces_children


PARENT = TableSpec("target", "parents", ("id",), (Column("id", "int"), Column("name", "string")))
CHILD = TableSpec("target", "children", ("child_id",),
                  (Column("child_id", "int"), Column("id", "int"), Column("name", "string")))


def child_rows(parent: int, count: int) -> list[dict]:
    return [{"child_id": parent * 100 + n, "id": parent, "name": f"c{n}"} for n in range(count)]


def family(engine: SinkEngine) -> tuple[TableSpec, TableSpec]:
    parent = spec_in(engine, PARENT)
    if rules_for(engine.kind).child_tables:
        return parent, spec_in(engine, CHILD, parent=parent.table, parent_key=("id",))
    return parent, spec_in(engine, CHILD)


def write_family(sink: Sink, parent: TableSpec, child: TableSpec, counts: dict[int, int]):
    children = [row for n, count in counts.items() for row in child_rows(n, count)]
    return sink.write({parent.table: TableRows(simple_rows(counts), [f"_id={n}" for n in counts]),
                       child.table: TableRows(children, [f"_id={row['id']}" for row in children])})


def child_ids(sink: Sink, child: TableSpec) -> list[int]:
    return sorted(row["child_id"] for row in sink.read_back(child))


def test_replaces_children_is_what_the_rules_declare(engine, sink):
    assert sink.replaces_children is rules_for(engine.kind).child_tables


def test_writing_or_deleting_a_parent_replaces_its_children_exactly_when_the_sink_says_so(engine, sink):
    parent, child = family(engine)
    sink.prepare([parent, child])
    write_family(sink, parent, child, {1: 3, 2: 2})
    again = sink.write({parent.table: TableRows(simple_rows([1], "again"), ["_id=1"])})
    assert again.loaded == {parent.table: 1}
    after_write = [200, 201] if sink.replaces_children else [100, 101, 102, 200, 201]
    assert child_ids(sink, child) == after_write
    assert sink.delete(parent, [{"id": 2}]) == 1
    assert child_ids(sink, child) == ([] if sink.replaces_children else after_write)
    assert read_sorted(sink, parent) == simple_rows([1], "again")


# RULES: what the mapping layer allows is what the sink accepts


def keyed(engine: SinkEngine, table: str, key: dict[str, str]) -> TableSpec:
    """A table keyed by `key` (name -> type) with one more column, `v`."""
    columns = (*(Column(name, kind) for name, kind in key.items()), Column("v", "int"))
    return spec_in(engine, TableSpec("target", table, tuple(key), columns))


def test_every_key_type_the_rules_allow_is_written_and_read_back(engine, sink):
    rules = rules_for(engine.kind)
    kinds = sorted(rules.key_types or {"string", "int", "decimal", "float", "bytes", "date", "uuid"})
    values = {"string": "k", "int": 7, "decimal": Decimal("7.25"), "float": 7.5, "bytes": b"\x07",
              "date": dt.date(2007, 7, 7), "uuid": uuid.UUID(int=7)}
    for kind in kinds:
        spec = keyed(engine, f"key_{kind}", {"k": kind})
        sink.prepare([spec])
        row = {"k": values[kind], "v": 1}
        assert sink.write({spec.table: TableRows([row], ["_id=1"])}).loaded == {spec.table: 1}
        assert exact(list(sink.read_back(spec))) == exact(stored(sink, spec, [row]))


def test_keys_of_as_many_columns_as_the_rules_allow_and_no_more(engine, sink):
    rules = rules_for(engine.kind)
    most = 3 if rules.key_columns is None else rules.key_columns
    allowed = keyed(engine, "key_most", {f"k{n}": "string" for n in range(most)})
    sink.prepare([allowed])
    row = {**{f"k{n}": "k" for n in range(most)}, "v": 1}
    assert sink.write({allowed.table: TableRows([row], ["_id=1"])}).loaded == {allowed.table: 1}
    if rules.key_columns is not None:
        wide = keyed(engine, "key_wide", {f"k{n}": "string" for n in range(most + 1)})
        with pytest.raises(EtlError, match=wide.table):
            sink.prepare([wide])


def test_key_values_up_to_the_rules_limit_are_written_and_longer_ones_rejected(engine, sink):
    rules = rules_for(engine.kind)
    spec = keyed(engine, "long_key", {"k": "string"})
    sink.prepare([spec])
    limit = 4096 if rules.key_bytes is None else rules.key_bytes[0]
    rows = [{"k": "x" * limit, "v": 1}, {"k": "y" * (limit + 1), "v": 2}]
    result = sink.write({spec.table: TableRows(rows, ["_id=1", "_id=2"])})
    if rules.key_bytes is None:
        assert result.loaded == {spec.table: 2} and result.rejects == []
        assert sorted(row["v"] for row in sink.read_back(spec)) == [1, 2]
        return
    assert result.loaded == {spec.table: 1}
    assert [(r.stage, r.source_key, r.record) for r in result.rejects] == [("load", "_id=2", rows[1])]
    assert [row["v"] for row in sink.read_back(spec)] == [1]


def test_the_rules_are_the_sink_modules_own(engine):
    module = module_for(engine.kind)
    assert rules_for(engine.kind) is module.RULES and module.RULES.names is module.NAME_LIMITS


def test_names_as_long_as_the_rules_keep_whole_read_back_unchanged(engine, sink):
    """Longer names are the mapping layer's to refuse (`NameLimits.stored`, checked when a mapping
    file is loaded); every name it lets through is kept whole, in bytes of UTF-8 (`é` is two)."""
    limits = rules_for(engine.kind).names
    longest = "é" * ((limits.identifier_bytes or 255) // 2)
    assert limits.stored(longest) == longest
    if limits.identifier_bytes is not None:
        assert limits.stored(longest + "é") == longest  # one character more is cut, never inside one
    spec = keyed(engine, "long_names", {"id": "int"})
    spec = spec_in(engine, spec, table=spec.table, columns=(*spec.columns, Column(longest, "string")))
    sink.prepare([spec])
    row = {"id": 1, "v": 2, longest: "kept"}
    assert sink.write(rows_in(spec, [row])).loaded == {spec.table: 1}
    assert list(sink.read_back(spec)) == [row]
