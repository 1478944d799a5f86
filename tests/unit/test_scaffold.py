"""The pieces of `--scaffold`, `--scaffold-job` and `--profile` that need no server: the loss-free
mapping type each engine gives its column types, what sampled values propose, names, the job skeleton
of every source type, and how reject reasons are counted."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from bson.decimal128 import Decimal128
from bson.int64 import Int64

from etl.coltypes import parse_type
from etl.engine.profile import reject_kind
from etl.errors import JobFileError
from etl.job import load_job
from etl.mapping import parse_mapping
from etl.mapping.scaffold import (
    column_name,
    element_key,
    observe,
    path_text,
    propose_columns,
    propose_documents,
)
from etl.run import main
from etl.sources import SOURCE_TYPES
from etl.sources.base import Catalogue
from etl.sources.sql import SqlColumn
from tests.unit.test_mssql_types import source_and_table as mssql_table
from tests.unit.test_oracle_types import source_and_table as oracle_table

ORACLE_TYPES = {
    "ID": "int", "AMOUNT": "decimal(10,2)", "RATIO": "decimal", "NOTE": "string", "PHOTO": "bytes",
    "CODE": "string", "GUID": "uuid", "TAKEN": "timestamp(6)", "SEEN": "timestamptz(6)",
    "BORN": "timestamp(0)", "WEIGHT": "float", "TERM": "string", "STAY": None, "NICK": "string",
}
SQL_SERVER_TYPES = {
    "Id": "uuid", "Total": "decimal(10,2)", "Fee": "decimal(19,4)", "Score": "float", "Active": "bool",
    "Created": "timestamp(3)", "Measured": "timestamp(6)", "Seen": "timestamptz(6)", "Day": "date",
    "At": "time", "Code": "string", "Notes": "string", "Scan": "bytes", "Version": "int",
    "Doc": "string", "Extra": "json",
}


@pytest.mark.parametrize(("source_and_table", "expected"),
                         [(oracle_table, ORACLE_TYPES), (mssql_table, SQL_SERVER_TYPES)],
                         ids=["oracle", "mssql"])
def test_catalogue_columns_map_to_loss_free_types(source_and_table, expected):
    source, meta = source_and_table()
    assert {column.name: source.mapping_type(column) for column in meta.columns} == expected
    assert all(parse_type(text) for text in expected.values() if text is not None)  # each a valid type


def test_postgres_columns_map_to_loss_free_types():
    from etl.sources.base import BatchLimits
    from etl.sources.postgres import Config, PostgresSource

    source = PostgresSource("pg", Config(type="postgres", dsn="host=x", tables={}), BatchLimits())
    columns = [SqlColumn("a", "INT4"), SqlColumn("b", "NUMERIC", 12, 3), SqlColumn("c", "NUMERIC"),
               SqlColumn("d", "TIMESTAMPTZ", None, 3), SqlColumn("e", "_NUMERIC", 5, 2),
               SqlColumn("f", "_JSONB"), SqlColumn("g", "VARCHAR", length=20),
               SqlColumn("h", "NUMERIC", 60, 2), SqlColumn("i", "INTERVAL"), SqlColumn("j", "_INTERVAL")]
    assert [source.mapping_type(column) for column in columns] == [
        "int", "decimal(12,3)", "decimal", "timestamptz(3)", "list(decimal)", "list", "string", "decimal",
        None, None]
    assert all(parse_type(text) for text in [source.mapping_type(column) for column in columns] if text)


def test_a_catalogue_proposal_leaves_out_what_no_type_holds_and_parses():
    catalogue = Catalogue(("Id", "Total", "Stay"), "PostgreSQL table public.t of source 'src'",
                          lambda written, column: written == column, frozenset({"Id", "Total"}), ("Id",),
                          {"Id": "int", "Total": "decimal(10,2)", "Stay": None})
    text = propose_columns("public.T", catalogue, {"pg": "postgres", "dynamo": "dynamodb"}, ["# proposed"])
    assert text.splitlines() == [
        "# proposed",
        "# columns of PostgreSQL table public.t of source 'src', typed to hold their values without loss",
        "version: 1",
        "source:",
        "  key: [Id]",
        "  ignore: [Stay]   # no mapping type holds these exactly (intervals): read them through a view that "
        "casts them to text to keep them",
        "targets:",
        "  pg: postgres",
        "  dynamo: dynamodb",
        "outputs:",
        "  - target: pg",
        "    table: t",
        "    key: [id]",
        "    columns:",
        '      id: {from: Id, type: "int"}  # bigint; key',
        '      total: {from: Total, type: "decimal(10,2)"}  # numeric(10,2)',
        "  - target: dynamo",
        "    table: t",
        "    key: [pk, sk]",
        "    columns:",
        '      pk: {template: "T#{Id}"}  # S; from the key',
        "      sk: {const: ROW}  # S",
        '      id: {from: Id, type: "int"}  # N; key',
        '      total: {from: Total, type: "decimal(10,2)"}  # N',
    ]
    spec = parse_mapping(text, "t.yaml")
    assert [(o.target, o.table) for o in spec.outputs] == [("pg", "t"), ("dynamo", "t")]


def test_sampled_values_propose_the_type_that_holds_them_all():
    records = [{"a": 1, "b": 1, "c": 1.5, "d": Decimal128("1.5"), "e": "x", "f": [{"k": 1}], "g": None,
                "h": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)},
               {"a": Int64(2), "b": 2.5, "c": "", "d": Decimal("2"), "f": [{"k": 2}], "h": None}]
    seen, fields = observe(records)
    assert seen == 2
    assert {name: found.mapping_type for name, found in fields.items()} == {
        "a": "int", "b": "decimal", "c": "json", "d": "decimal", "e": "string", "f": "list", "g": "json",
        "h": "timestamptz(3)"}
    assert (fields["e"].present, fields["g"].nulls, fields["f"].documents) == (1, 1, True)
    assert fields["c"].comment(2) == ("in 2 of 2: float 1, str 1; mixed types: kept as they are (json); "
                                      'pick one type and `--profile` the rejects; e.g. 1.5, ""')
    elements = fields["f"].elements
    assert element_key(observe(elements)[1], elements) is None  # `k` is not named like a key
    elements = [{"line_id": 1}, {"line_id": 2}, {"line_id": 1}]
    assert element_key(observe(elements)[1], elements) is None  # not distinct
    assert element_key(observe(elements[:2])[1], elements[:2]) == "line_id"


def test_pii_named_fields_show_no_values():
    _, fields = observe([{"home_phone": "555-0100", "LastName": "Doe", "birth_date": "1980-01-01"}])
    assert [found.comment(1) for found in fields.values()] == [
        "in 1 of 1: str 1; values not shown (the name suggests personal data)"] * 3


def test_names_and_paths():
    taken: set[str] = set()
    assert [column_name(name, taken) for name in ["_id", "Id", "odd key", "9lives", "id"]] == [
        "id", "Id_2", "odd_key", "f_9lives", "id_3"]
    assert [path_text(name) for name in ["a", "odd key", "__x__", "a`b"]] == ["a", "`odd key`", None, None]


@pytest.mark.parametrize("source_type", sorted(SOURCE_TYPES))
def test_a_job_skeleton_loads_once_its_variables_are_set(tmp_path, source_type, capsys):
    path = tmp_path / "new.yaml"
    assert main([str(path), "--scaffold-job", source_type]) == 0
    environ = {name: "x" for name in ("ETL_SOURCE_URI", "ETL_SOURCE_DATABASE", "ETL_SOURCE_DUMP",
                                      "ETL_SOURCE_DSN", "ETL_SOURCE_USER", "ETL_SOURCE_PASSWORD",
                                      "ETL_SOURCE_SERVER", "ETL_AWS_REGION", "ETL_TARGET_DSN")}
    environ["ETL_SOURCE_URI"] = "mongodb://127.0.0.1:27017/?directConnection=true"
    if source_type == "oracle":
        environ["ETL_SOURCE_DSN"] = "tcps://db.example:2484/service"
    job = load_job(path, environ=environ)
    found = (job.name, job.sources["source"].type, sorted(job.targets))
    assert found == ("new", source_type, ["dynamo", "pg"])
    text = path.read_text()
    assert main([str(path), "--scaffold-job", source_type]) == 2
    assert path.read_text() == text
    assert "the file exists; --scaffold-job never overwrites a file" in capsys.readouterr().err


def test_reject_reasons_are_counted_by_kind():
    assert [reject_kind(reason) for reason in [
        "key attribute 'pk' is missing or null",
        "item is 419993 bytes; DynamoDB's item size limit is 409600 bytes (400 KB)",
        "number 1E+200 is outside DynamoDB's range",
        "BSON date outside the range Python can hold (years 1 to 9999)",
        "`score` as float: cannot read a str as a number",
    ]] == ["null in a key", "size", "range", "range", "type"]


def test_an_empty_collection_cannot_be_scaffolded():
    with pytest.raises(JobFileError, match="people has no documents with _id to sample"):
        propose_documents("people", [], {"pg": "postgres"}, ["_id"], [])
