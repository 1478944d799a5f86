"""Validation of a PostgreSQL -> PostgreSQL job from the job file (`--validate-only`, and after a run)
hashes both sides where they live when the mapping copies columns: key ranges for an integer key,
SQL hash buckets otherwise. It must find exactly what the Python path (source mapped and hashed
here) finds, a 1-ulp float change and a fractional change in an unscaled numeric included; where
it cannot stand for the mapped rows (a value the mapping refuses, a cast that could change a
value) the table goes the Python way."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import psycopg
import pytest

from etl.checksum import diff
from etl.checksum.postgres_sql import PostgresTableSide
from etl.engine import validation
from etl.job import load_job
from tests.integration.run_helpers import run_cli, saved_report

pytestmark = pytest.mark.integration

MAPPING = """\
version: 1
source:
  key: [{key}]
targets:
  pg: postgres
outputs:
  - target: pg
    table: copied
    key: [{target_key}]
    columns:
      {target_key}: {{from: {key}, type: {key_type}}}
      qty: {{from: qty, type: int}}
      amount: {{from: amount, type: decimal}}
      price: {{from: price, type: "decimal(12,2)"}}
      score: {{from: score, type: float}}
      label: {{from: name, type: string}}
      born: {{from: born, type: date}}
      seen: {{from: seen, type: timestamptz}}
      flag: {{from: flag, type: bool}}
{extra}"""

SOURCE = """
CREATE TABLE src (
    {key} {key_sql} PRIMARY KEY, qty integer, amount numeric, price numeric(10,2), score double precision,
    name varchar(30), born date, seen timestamptz, flag boolean{extra_sql}
);
INSERT INTO src SELECT {key_value}, i % 97, (i * 7919 % 100000) / 1000.0, (i % 5000) / 100.0,
       i / 7.0, 'name ' || i, date '2000-01-01' + i % 9000,
       timestamptz '2020-01-01 00:00+00' + i * interval '1 s',
       i % 3 = 0{extra_value}
FROM generate_series(1, 3000) AS i;
"""


def setup_job(tmp_path: Path, dsn: str, *, key: str = "id", key_sql: str = "bigint", key_type: str = "int",
              key_value: str = "i", extra: str = "", extra_sql: str = "", extra_value: str = "") -> Path:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SOURCE.format(key=key, key_sql=key_sql, key_value=key_value, extra_sql=extra_sql,
                                   extra_value=extra_value))
    (tmp_path / "m.yaml").write_text(MAPPING.format(key=key, target_key="ident", key_type=key_type,
                                                    extra=extra))
    job = tmp_path / "job.yaml"
    job.write_text(f"""\
version: 1
name: pushdown
sources:
  pg_in: {{type: postgres, dsn: "{dsn}", tables: {{src: {{mapping: m.yaml, partitions: 2}}}}}}
targets:
  pg: {{type: postgres, dsn: "{dsn}", schema: out, create: if_missing}}
state: {{type: sqlite, path: "{tmp_path / 'state.sqlite'}"}}
validation: {{after_run: true}}
report: {{dir: "{tmp_path / 'reports'}"}}
""")
    loaded = run_cli(job)
    assert loaded.returncode == 0, loaded.stdout[-3000:] + loaded.stderr[-3000:]
    return job


def plant(dsn: str, key_of) -> None:
    """Five differences in the target: two that only exact hashing sees (a float 1 ulp away, a
    fractional change far below an unscaled numeric's shown digits), a changed text, a missing row
    and an extra one."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        (score,) = conn.execute(f"SELECT score FROM out.copied WHERE ident = {key_of(10)}").fetchone()
        conn.execute(f"UPDATE out.copied SET score = %s WHERE ident = {key_of(10)}",
                     (math.nextafter(score, 9),))
        conn.execute(f"UPDATE out.copied SET amount = amount + 0.000000000001 WHERE ident = {key_of(20)}")
        conn.execute(f"UPDATE out.copied SET label = 'changed' WHERE ident = {key_of(30)}")
        conn.execute(f"DELETE FROM out.copied WHERE ident = {key_of(40)}")
        conn.execute(f"INSERT INTO out.copied SELECT {key_of(9999)}, qty, amount, price, score, label, born,"
                     f" seen, flag FROM out.copied WHERE ident = {key_of(50)}")


def differences(job: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    validated = validation.validate_job(load_job(job))
    (table,) = validated.tables
    assert (table.missing, table.extra, table.changed) == (1, 1, 3)
    assert [(s.counted, s.read, s.ok) for s in validated.sources] == [(3000, 3000, True)]
    return sorted((d.kind, str(d.key), tuple(f.field for f in d.fields)) for d in table.differences)


def both_ways(job: Path, monkeypatch, caplog) -> tuple[list, list, bool]:
    """(differences hashed where the sides live, differences hashed in Python, whether the first
    pushed the source side down)."""
    with caplog.at_level(logging.INFO, logger="etl.engine.validation"):
        pushed = differences(job)
    used = any("hashed where both sides live" in r.getMessage() for r in caplog.records)
    monkeypatch.setattr(validation, "_pushed_source_side", lambda *args: None)
    return pushed, differences(job), used


EXPECTED = [("changed", "{'ident': 10}", ("score",)), ("changed", "{'ident': 20}", ("amount",)),
            ("changed", "{'ident': 30}", ("label",)), ("extra", "{'ident': 9999}", ()),
            ("missing", "{'ident': 40}", ())]


def test_integer_key_by_key_ranges_finds_what_python_finds(tmp_path, pg_database, monkeypatch, caplog):
    job = setup_job(tmp_path, pg_database)
    plant(pg_database, str)
    pushed, python, used = both_ways(job, monkeypatch, caplog)
    assert used
    assert pushed == python == EXPECTED


def test_a_wide_key_span_is_cut_into_more_ranges_and_finds_the_same(tmp_path, pg_database, monkeypatch,
                                                                    caplog):
    """Keys 1,000 apart (a span of 3,000,000): 4,096 key ranges instead of the 256 buckets asked
    for, so that pass 2 reads a few rows per changed row; the differences are the same."""
    job = setup_job(tmp_path, pg_database, key_value="i * 1000")
    plant(pg_database, lambda n: str(n * 1000))
    with caplog.at_level(logging.INFO, logger="etl.engine.validation"):
        (table,) = validation.validate_job(load_job(job)).tables
    assert any("hashed where both sides live" in r.getMessage() for r in caplog.records)
    assert (table.buckets, table.row_hashes, len(table.mismatched_buckets)) == (4096, "native", 5)
    pushed, python, used = both_ways(job, monkeypatch, caplog)
    assert used
    assert pushed == python == [("changed", "{'ident': 10000}", ("score",)),
                                ("changed", "{'ident': 20000}", ("amount",)),
                                ("changed", "{'ident': 30000}", ("label",)),
                                ("extra", "{'ident': 9999000}", ()), ("missing", "{'ident': 40000}", ())]


def test_text_key_by_key_ranges_finds_what_python_finds(tmp_path, pg_database, monkeypatch, caplog):
    job = setup_job(tmp_path, pg_database, key="code", key_sql="text", key_type="string",
                    key_value="'k' || i")
    plant(pg_database, lambda n: f"'k{n}'")
    ranges_read: list[str] = []
    by_ranges = PostgresTableSide.rows_in_ranges

    def rows_in_ranges(self, *args):
        ranges_read.append(self.table)
        return by_ranges(self, *args)

    monkeypatch.setattr(PostgresTableSide, "rows_in_ranges", rows_in_ranges)
    pushed, python, used = both_ways(job, monkeypatch, caplog)
    assert used
    assert sorted(ranges_read) == ["copied", "src"]  # quantiles of the source's text key, both sides
    assert pushed == python == [
        ("changed", "{'ident': 'k10'}", ("score",)), ("changed", "{'ident': 'k20'}", ("amount",)),
        ("changed", "{'ident': 'k30'}", ("label",)), ("extra", "{'ident': 'k9999'}", ()),
        ("missing", "{'ident': 'k40'}", ())]


def test_the_command_line_finds_them_and_says_so(tmp_path, pg_database):
    job = setup_job(tmp_path, pg_database)
    plant(pg_database, str)
    result = run_cli(job, "--validate-only")
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    (check,) = saved_report(result.stdout)["validation"]
    assert (check["ok"], check["rows_source"], check["rows_target"], check["missing"], check["extra"],
            check["changed"]) == (False, 3000, 3000, 1, 1, 3)
    assert "hashed where both sides live" in result.stdout + result.stderr


JSONB = {"extra": "      doc: {from: doc, type: json}\n", "extra_sql": ", doc jsonb",
         "extra_value": ", jsonb_build_object('n', i, 'tags', jsonb_build_array('a', i / 3.0, i % 2 = 0),"
                        " 'nested', jsonb_build_object('at', 'x' || i, 'none', null))"}


def test_a_jsonb_column_is_hashed_where_both_sides_live_and_finds_changes_inside_documents(
        tmp_path, pg_database, caplog):
    """Two PostgreSQL sides hash a jsonb column natively (its text, etl/checksum/native.py): a
    change deep in a document or in a number's last digit is found, while a number written with
    another scale is no change (the canonical hashes settle that bucket)."""
    job = setup_job(tmp_path, pg_database, **JSONB)
    plant(pg_database, str)
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("UPDATE out.copied SET doc = jsonb_set(doc, '{nested,at}', '\"y\"') WHERE ident = 60")
        conn.execute("UPDATE out.copied SET doc = jsonb_set(doc, '{n}', '70.0000000000001') WHERE ident = 70")
        conn.execute("UPDATE out.copied SET doc = jsonb_set(doc, '{n}', '80.000') WHERE ident = 80")
    with caplog.at_level(logging.INFO, logger="etl.engine.validation"):
        table = validation.validate_job(load_job(job)).tables[0]
    assert any("hashed where both sides live" in r.getMessage() for r in caplog.records)
    found = sorted((d.kind, str(d.key), tuple(f.field for f in d.fields)) for d in table.differences)
    assert found == sorted([*EXPECTED, ("changed", "{'ident': 60}", ("doc",)),
                            ("changed", "{'ident': 70}", ("doc",))])


REFUSED = {  # a value the mapping refuses, planted in the source after the load
    "nan": ("amount", "'NaN'"),
    "nan, text key": ("amount", "'NaN'"),
    "nan, canonical hashes": ("amount", "'NaN'"),
    "infinite float": ("score", "'-Infinity'"),
    "infinite timestamp": ("seen", "'infinity'"),
    "BC date": ("born", "'0044-03-15 BC'"),
    "date past 9999": ("born", "'10000-01-01'"),
}


@pytest.mark.parametrize("case", [*REFUSED, "rounding cast"])
def test_tables_it_cannot_stand_for_go_the_python_way(tmp_path, pg_database, monkeypatch, caplog, case):
    """A source side is offered only when it stands for the mapped rows: a cast that could change a
    value keeps it from being offered; a value the mapping refuses is found by the scan that hashes
    the rows (by key ranges, by native hash buckets of a text key, or by canonical hashes), and the
    table is then compared from the mapped rows, where that record is rejected."""
    text_key = case == "nan, text key"
    job = (setup_job(tmp_path, pg_database, key="code", key_sql="text", key_type="string",
                     key_value="'k' || i") if text_key else setup_job(tmp_path, pg_database))
    key_of = (lambda n: f"'k{n}'") if text_key else str
    if case == "nan, canonical hashes":
        monkeypatch.setattr(diff, "_native_plan", lambda *args: None)
    if case in REFUSED:
        column, value = REFUSED[case]
        with psycopg.connect(pg_database, autocommit=True) as conn:
            key = "code" if text_key else "id"
            conn.execute(f"UPDATE src SET {column} = {value} WHERE {key} = {key_of(77)}")
    if case == "rounding cast":
        (tmp_path / "m.yaml").write_text((tmp_path / "m.yaml").read_text().replace(
            'price: {from: price, type: "decimal(12,2)"}', 'price: {from: price, type: "decimal(12,3)"}'))
        with psycopg.connect(pg_database, autocommit=True) as conn:
            conn.execute("ALTER TABLE src ALTER COLUMN price TYPE numeric(10,4)")
    plant(pg_database, key_of)
    with caplog.at_level(logging.INFO, logger="etl.engine.validation"):
        validated = validation.validate_job(load_job(job))
    messages = [r.getMessage() for r in caplog.records]
    assert not any("hashed where both sides live" in message for message in messages)
    refused_found = any("src: rows with a value the mapping refuses: 1" in message for message in messages)
    assert refused_found == (case in REFUSED)
    (table,) = validated.tables
    found = sorted((d.kind, str(d.key)) for d in table.differences)
    expected = [(kind, key) for kind, key, _ in EXPECTED]
    if case in REFUSED:
        # the mapping refuses the record now, so its row in the target is extra, as in Python
        expected = sorted([*expected, ("extra", "{'ident': 77}")])
    if text_key:
        expected = sorted((kind, key.replace(": ", ": 'k").replace("}", "'}")) for kind, key in expected)
        assert validated.sources[0].rejected == 1
        assert validated.sources[0].counted == 3000
    assert found == expected
