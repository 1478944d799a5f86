"""The SQL each dialect writes: quoting of hostile names, keyset conditions, limits, flashback."""

from __future__ import annotations

import pytest
import sqlglot
from pydantic import ValidationError
from sqlglot import exp

from etl.errors import EtlError, JobFileError
from etl.job import load_job
from etl.records import Partition
from etl.sources import mssql, oracle, postgres
from etl.sources.base import BatchLimits
from etl.sources.sql import SqlColumn, TableMeta
from etl.sources.sqltypes import encode_key

HOSTILE = 'we"ird]name; DROP TABLE patients; --'


def meta(name="t", table=HOSTILE, key=("a", "b", "c")) -> TableMeta:
    columns = (
        SqlColumn("a", "INT", nullable=False),
        SqlColumn("b", "INT", nullable=False),
        SqlColumn("c", "INT", nullable=False),
        SqlColumn("payload", "VARCHAR", length=10),
    )
    return TableMeta(name, "sch", table, columns, key)


def sources():
    tables = {"t": {"mapping": "m.yaml"}}
    return {
        "postgres": postgres.PostgresSource(
            "s", postgres.Config(type="postgres", dsn="host=x", tables=tables), BatchLimits()
        ),
        "oracle": oracle.OracleSource(
            "s",
            oracle.Config(type="oracle", dsn="h/s", user="u", password="p", tables=tables),
            BatchLimits(),
        ),
        "tsql": mssql.MssqlSource("s", mssql.Config(type="mssql", server="h", tables=tables), BatchLimits()),
    }


def page(dialect: str, partition: Partition, after=None, limit=100):
    source = sources()[dialect]
    table = meta()
    plan = source.read_plan(table, None)
    return source.page_query(table, plan, partition, after, limit)


@pytest.mark.parametrize("dialect", ["postgres", "oracle", "tsql"])
def test_hostile_table_name_is_one_quoted_identifier(dialect):
    sql, _ = page(dialect, Partition("s", "t", 0, 1))
    tree = sqlglot.parse_one(sql, read=dialect)  # one statement: the `;` stayed inside the quotes
    (table,) = list(tree.find_all(exp.Table))
    assert table.name == HOSTILE and table.db == "sch"
    assert len(sqlglot.parse(sql, read=dialect)) == 1


def test_postgres_pages_with_row_values():
    partition = Partition("s", "t", 1, 2, {"key": encode_key([10])}, encode_key([20]))
    sql, params = page("postgres", partition, after=(10, 2, 3))
    assert sql == (
        'SELECT "a", "b", "c", "payload" FROM "sch"."we""ird]name; DROP TABLE patients; --"'
        ' WHERE "a" >= %s AND "a" < %s AND ("a", "b", "c") > (%s, %s, %s) ORDER BY "a", "b", "c" LIMIT 100'
    )
    assert params.values == [10, 20, 10, 2, 3]


def test_oracle_expands_the_keyset_condition_and_binds_by_name():
    source = sources()["oracle"]
    sql, params = page("oracle", Partition("s", "t", 0, 1), after=(1, 2, 3))
    assert '(("a" > :p0) OR ("a" = :p1 AND "b" > :p2) OR ("a" = :p3 AND "b" = :p4 AND "c" > :p5))' in sql
    assert sql.endswith('ORDER BY "a", "b", "c" FETCH FIRST 100 ROWS ONLY')
    assert source.bind(params) == {"p0": 1, "p1": 1, "p2": 2, "p3": 1, "p4": 2, "p5": 3}


def test_oracle_reads_as_of_the_planned_scn():
    partition = Partition("s", "t", 0, 1, {"at": 4711, "key": encode_key([5])}, None)
    sql, _ = page("oracle", partition)
    assert 'FROM "sch"."we""ird]name; DROP TABLE patients; --" AS OF SCN 4711 WHERE "a" >= :p0' in sql


def test_sql_server_uses_top_brackets_and_question_marks():
    partition = Partition("s", "t", 0, 2, None, encode_key([7]))
    sql, params = page("tsql", partition, after=(1, 2, 3))
    assert sql.startswith('SELECT TOP (100) [a], [b], [c], [payload] FROM [sch].[we"ird]]name; DROP TABLE')
    assert "[a] < ? AND (([a] > ?) OR ([a] = ? AND [b] > ?) OR ([a] = ? AND [b] = ? AND [c] > ?))" in sql
    assert params.values == [7, 1, 1, 2, 1, 2, 3]


def test_projection_keeps_the_key():
    source = sources()["tsql"]
    plan = source.read_plan(meta(key=("b",)), ["payload"])
    assert plan.names == ["b", "payload"]
    assert plan.key_positions == [0]


def test_converted_key_columns_are_also_selected_raw():
    source = sources()["oracle"]
    table = TableMeta(
        "t",
        "S",
        "T",
        (SqlColumn("TS", "TIMESTAMP", scale=9, nullable=False), SqlColumn("V", "NUMBER")),
        ("TS",),
    )
    plan = source.read_plan(table, None)
    assert plan.expressions == [
        'TO_CHAR("TS", \'YYYY-MM-DD"T"HH24:MI:SS.FF9\') AS "TS"',
        '"V"',
        '"TS"',
    ]
    assert plan.key_positions == [2]
    sql, _ = source.page_query(table, plan, Partition("s", "t", 0, 1), None, 10)
    assert sql.endswith("ORDER BY 3 FETCH FIRST 10 ROWS ONLY")  # the raw "TS": the name is ambiguous


def test_only_postgres_has_the_driver_build_records_and_only_with_raw_key_columns():
    plans = {dialect: source.read_plan(meta(), None) for dialect, source in sources().items()}
    assert {dialect: plan.by_name for dialect, plan in plans.items()} == {
        "postgres": True,
        "oracle": False,
        "tsql": False,
    }
    assert plans["postgres"].fields(plans["postgres"].key_positions) == ["a", "b", "c"]
    assert plans["oracle"].fields(plans["oracle"].key_positions) == [0, 1, 2]
    char_key = TableMeta("t", "sch", "t", (SqlColumn("code", "BPCHAR", length=3, nullable=False),), ("code",))
    plan = sources()["postgres"].read_plan(char_key, None)
    assert plan.expressions == ['"code"::text AS "code"', '"code"']  # the raw key after the record
    assert not plan.by_name and plan.key_positions == [1]


def test_sql_server_special_types_are_selected_as_text():
    source = sources()["tsql"]
    expressions = {
        kind: source.column_expression(SqlColumn("c", kind, scale=scale))
        for kind, scale in [("DATETIME2", 7), ("TIME", 7), ("XML", None), ("DATETIME2", 3)]
    }
    assert expressions["DATETIME2"] == "[c]"
    assert expressions["TIME"] == "CONVERT(VARCHAR(16), [c])"
    assert expressions["XML"] == "CONVERT(NVARCHAR(MAX), [c])"
    variant = source.column_expression(SqlColumn("c", "SQL_VARIANT"))
    assert variant.startswith("CONVERT(NVARCHAR(128), SQL_VARIANT_PROPERTY([c], 'BaseType')) + N'|' + CASE")
    sqlglot.parse_one(f"SELECT {variant} FROM t", read="tsql")


def test_table_options_are_strict():
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        postgres.Config(type="postgres", dsn="x", tables={"t": {"mapping": "m", "primary": ["a"]}})
    config = oracle.Config(
        type="oracle",
        dsn="h/s",
        user="u",
        password="p",
        tables={
            "t": {"mapping": "m", "schema": "HR", "key": ["A"], "where": "X > 1", "watermark": "ORA_ROWSCN"}
        },
    )
    assert config.tables["t"].schema_ == "HR"
    assert "p" not in repr(config.password)
    with pytest.raises(ValidationError, match="set either `dsn`"):
        mssql.Config(type="mssql", tables={})


def test_odbc_connection_string_escapes_values():
    config = mssql.Config(
        type="mssql",
        driver="FreeTDS",
        server="db.example",
        port=1444,
        database="Chin;ook",
        user="etl",
        password="p}w;d",
        tables={},
    )
    assert mssql.connection_string(config) == (
        "DRIVER={FreeTDS};SERVER=db.example;PORT=1444;TDS_Version=7.4;Encryption=require;"
        "DATABASE={Chin;ook};UID={etl};PWD={p}}w;d}"
    )
    microsoft = mssql.Config(
        type="mssql", server="db", user="etl", password="x", trust_server_certificate=True, tables={}
    )
    assert mssql.connection_string(microsoft) == (
        "DRIVER={ODBC Driver 18 for SQL Server};SERVER=db,1433;Encrypt=yes;TrustServerCertificate=yes;"
        "UID={etl};PWD={x}"
    )


def test_since_is_refused_with_the_way_to_catch_up():
    with pytest.raises(ValidationError) as refused:
        table = {"mapping": "m", "watermark": "w", "since": 1}
        postgres.Config(type="postgres", dsn="x", tables={"t": table})
    assert "`since:` is no longer read" in str(refused.value)
    assert "python -m etl.run job.yaml --incremental" in str(refused.value)


def test_change_methods_are_those_of_the_engine():
    with pytest.raises(ValidationError, match="'watermark' or 'logical'"):
        postgres.Config(type="postgres", dsn="x", tables={"t": {"mapping": "m", "changes": "scn"}})
    with pytest.raises(ValidationError, match="needs `watermark:`"):
        oracle.Config(type="oracle", dsn="h/s", user="u", password="p",
                      tables={"t": {"mapping": "m", "changes": "watermark"}})
    config = mssql.Config(type="mssql", server="h", tables={"t": {"mapping": "m", "watermark": "ts"}})
    assert config.tables["t"].changes == "watermark"


def test_a_job_file_with_since_says_where_and_how_to_catch_up(tmp_path):
    (tmp_path / "m.yaml").write_text("{}\n")
    job = tmp_path / "job.yaml"
    job.write_text(
        "version: 1\nname: pg-job\nsources:\n  pg:\n    type: postgres\n    dsn: host=x\n    tables:\n"
        "      visit: {mapping: m.yaml, watermark: changed, since: {$datetime: '2026-11-01T00:00:00'}}\n"
        "targets:\n  out: {type: postgres, dsn: host=y}\n"
    )
    with pytest.raises(JobFileError) as refused:
        load_job(job, environ={}, secrets={})
    assert str(refused.value).replace(str(job), "job.yaml") == (
        "job.yaml:8:59: sources.pg.tables.visit.since: `since:` is no longer read: a full read of a slice"
        " was validated against the whole target; catch up with an incremental run instead: python -m"
        " etl.run job.yaml --incremental (set `changes:`/`watermark:` on the table, docs/relational.md)"
    )


def test_test_decoding_tuples_are_parsed_column_by_column():
    text = (
        'id[integer]:7 "Odd ""name"" [x]"[character varying]:\'it\'\'s [a]: b\' tags[text[]]:\'{a,b}\''
        " note[text]:null big[text]:unchanged-toast-datum"
        " at[timestamp with time zone]:'2026-12-06 15:00:00+00'"
    )
    assert postgres.decoded_columns(text) == {
        "id": "7",
        'Odd "name" [x]': "it's [a]: b",
        "tags": "{a,b}",
        "note": None,
        "big": "unchanged-toast-datum",
        "at": "2026-12-06 15:00:00+00",
    }


def test_rowversion_needs_a_rowversion_column_and_overlap_needs_a_watermark():
    source = mssql.MssqlSource(
        "s", mssql.Config(type="mssql", server="h", tables={"t": {"mapping": "m", "changes": "rowversion"}}),
        BatchLimits(),
    )
    with pytest.raises(EtlError, match="`changes: rowversion` needs a rowversion column"):
        source.capture(meta(), "rowversion")
    versioned = TableMeta("t", "dbo", "T", (*meta().columns, SqlColumn("RowVer", "TIMESTAMP")), ("a",))
    method = source.capture(versioned, "rowversion").method
    assert method == "rowversion RowVer (below MIN_ACTIVE_ROWVERSION())"
    assert source.key_parameter(SqlColumn("RowVer", "TIMESTAMP"), 2001) == b"\x00\x00\x00\x00\x00\x00\x07\xd1"
    with pytest.raises(ValidationError, match="`overlap:` is a setting of `changes: watermark` only"):
        table = {"mapping": "m", "changes": "rowversion", "overlap": 5}
        mssql.Config(type="mssql", server="h", tables={"t": table})


NESTED = {"invoices": {"table": "invoice", "parent_key": ["customer_id"],
                       "children": {"lines": {"table": "invoice_line", "parent_key": ["invoice_id"]}}}}


def test_a_table_with_children_refuses_every_change_method_at_load_time(tmp_path):
    for config, method in [
        (lambda tables: postgres.Config(type="postgres", dsn="x", tables=tables), "logical"),
        (lambda tables: oracle.Config(type="oracle", dsn="h/s", user="u", password="p", tables=tables),
         "scn"),
        (lambda tables: mssql.Config(type="mssql", server="h", tables=tables), "change_tracking"),
    ]:
        with pytest.raises(ValidationError, match=f"`changes: {method}` cannot be used on a table with"):
            config({"customer": {"mapping": "m", "changes": method, "children": NESTED}})
        with pytest.raises(ValidationError, match="`changes: watermark` cannot be used on a table with"):
            config({"customer": {"mapping": "m", "watermark": "updated", "children": NESTED}})
    (tmp_path / "m.yaml").write_text("{}\n")
    job = tmp_path / "job.yaml"
    job.write_text(
        "version: 1\nname: pg-job\nsources:\n  pg:\n    type: postgres\n    dsn: host=x\n    tables:\n"
        "      customer:\n        mapping: m.yaml\n        changes: logical\n        children:\n"
        "          invoices: {table: invoice, parent_key: [customer_id]}\n"
        "targets:\n  out: {type: postgres, dsn: host=y}\n"
    )
    with pytest.raises(JobFileError) as refused:
        load_job(job, environ={}, secrets={})
    assert str(refused.value).replace(str(job), "job.yaml").startswith(
        "job.yaml:9:9: sources.pg.tables.customer: `changes: logical` cannot be used on a table with"
        " `children:`: a changed child row must re-emit its parent's whole record"
    )


def test_child_and_query_options_are_checked():
    with pytest.raises(ValidationError, match="parent_key"):
        postgres.Config(type="postgres", dsn="x",
                        tables={"c": {"mapping": "m", "children": {"i": {"table": "i"}}}})
    with pytest.raises(ValidationError, match="takes no `changes:`, `watermark:` or `schema:`"):
        postgres.Config(type="postgres", dsn="x",
                        tables={"q": {"mapping": "m", "query": "SELECT 1 AS a", "key": ["a"], "schema": "s"}})


def test_sql_server_asks_for_mars_only_when_a_table_has_children():
    plain = mssql.MssqlSource("s", mssql.Config(type="mssql", server="h", tables={"t": {"mapping": "m"}}),
                              BatchLimits())
    nested = mssql.MssqlSource(
        "s", mssql.Config(type="mssql", server="h", tables={"c": {"mapping": "m", "children": NESTED}}),
        BatchLimits(),
    )
    assert "MARS" not in plain.connection_string()
    assert nested.connection_string() == mssql.connection_string(nested.config) + ";MARS_Connection=yes"


class DescribingCursor:
    """A DB-API cursor that records its statement and describes a result without rows."""

    def __init__(self, description, log):
        self.description, self._log = description, log

    def execute(self, sql, params=()):
        self._log.append((sql, tuple(params)))

    def fetchall(self):
        return []

    def close(self):
        pass


class _Recorder:
    """A DB-API connection that keeps the SQL it is given and has no rows."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def cursor(self):
        return self

    def execute(self, sql, *params):
        self.statements.append(sql)
        return self

    def fetchall(self):
        return []

    def close(self):
        pass


@pytest.mark.parametrize("dialect", ["postgres", "oracle", "tsql"])
def test_the_table_listing_for_patterns_is_one_statement_of_the_dialect_over_tables_and_views(dialect):
    connection = _Recorder()
    assert sources()[dialect].all_tables(connection) == []
    (sql,) = connection.statements
    tree = sqlglot.parse_one(sql, read=dialect)
    named = {table.name.lower() for table in tree.find_all(exp.Table)}
    assert named == {"postgres": {"tables"}, "oracle": {"all_tables", "all_views", "all_users"},
                     "tsql": {"objects", "schemas"}}[dialect]


def test_query_columns_are_typed_as_each_catalog_types_table_columns():
    import oracledb

    log = []
    description = [
        ("LINE_ID", oracledb.DB_TYPE_NUMBER, 11, 22, 10, 0, False),
        ("NAME", oracledb.DB_TYPE_VARCHAR, 200, 200, None, None, True),
        ("AT", oracledb.DB_TYPE_TIMESTAMP_TZ, 40, 13, 0, 9, True),
        ("SEEN", oracledb.DB_TYPE_TIMESTAMP, 30, 11, 0, None, True),
        ("NOTE", oracledb.DB_TYPE_CLOB, None, None, None, None, True),
        ("RATIO", oracledb.DB_TYPE_BINARY_DOUBLE, 127, None, None, None, True),
    ]
    connection = type("Connection", (), {"cursor": lambda self: DescribingCursor(description, log)})()
    source = sources()["oracle"]
    columns = source.query_columns(connection, "SELECT l.line_id, ... FROM lines l")
    assert log == [("SELECT * FROM (SELECT l.line_id, ... FROM lines l) WHERE 1 = 0", ())]
    assert columns == [
        SqlColumn("LINE_ID", "NUMBER", 10, 0, 22, True),
        SqlColumn("NAME", "VARCHAR2", None, None, 200, True),
        SqlColumn("AT", "TIMESTAMP WITH TIME ZONE", 0, 9, 13, True),
        SqlColumn("SEEN", "TIMESTAMP", 0, 9, 11, True),
        SqlColumn("NOTE", "CLOB", None, None, None, True),
        SqlColumn("RATIO", "BINARY_DOUBLE", None, None, None, True),
    ]
    # SQL Server describes the query without running it; the statement is T-SQL sqlglot accepts.
    rows = [("line_id", "INT", 10, 0, 4, False), ("name", "NVARCHAR", 0, 0, -1, True)]
    cursor = DescribingCursor(None, log)
    cursor.fetchall = lambda: rows
    mssql_source = sources()["tsql"]
    connection = type("Connection", (), {"cursor": lambda self: cursor})()
    assert mssql_source.query_columns(connection, "SELECT line_id, name FROM dbo.lines") == [
        SqlColumn("line_id", "INT", 10, 0, 4, False), SqlColumn("name", "NVARCHAR", 0, 0, None, True)]
    sql, params = log[-1]
    assert params == ("SELECT line_id, name FROM dbo.lines",)
    sqlglot.parse_one(sql, read="tsql")


@pytest.mark.parametrize("dialect, catalogue", [
    ("postgres", {"pg_class", "pg_namespace", "pg_stat_all_tables"}), ("oracle", {"all_tables"}),
    ("tsql", {"partitions", "tables", "schemas"})])
def test_version_and_estimate_queries_are_one_select_in_the_engines_dialect(dialect, catalogue):
    """`--check` and progress totals ask each engine's catalogue; never the table itself."""
    source = sources()[dialect]
    version = sqlglot.parse(source.version_sql, read=dialect)
    assert len(version) == 1 and isinstance(version[0], exp.Select)
    estimate = source.estimate_sql.format(schema=source.placeholder(0), table=source.placeholder(1))
    [tree] = sqlglot.parse(estimate, read=dialect)
    assert isinstance(tree, exp.Select)
    assert {t.name.lower() for t in tree.find_all(exp.Table)} == catalogue
