"""Nested records from PostgreSQL end to end: Chinook's artist -> albums -> tracks and customer ->
invoices -> lines moved by `python -m etl.run` into DynamoDB items (nested lists and exploded items)
and PostgreSQL tables (jsonb and exploded child tables), and a `query:` table (a join of lines,
invoices, tracks and genres), validated equal, killed and resumed."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from tests.conftest import DYNAMODB_ENDPOINT
from tests.integration.chinook import load_chinook
from tests.integration.run_helpers import ROOT, dynamo_count, pg_scalar, run_cli, saved_report

pytestmark = pytest.mark.integration


SALES_QUERY = (
    "SELECT l.invoice_line_id, i.customer_id, g.name AS genre, l.unit_price * l.quantity AS amount"
    " FROM invoice_line l JOIN invoice i USING (invoice_id) JOIN track t USING (track_id)"
    " JOIN genre g USING (genre_id)"
)


def nested_job(folder: Path, dsn: str, table: str, *, incremental: bool = False) -> Path:
    for name in ("chinook_artists", "chinook_customer_invoices", "chinook_sales"):
        text = (ROOT / "mappings" / f"{name}.yaml").read_text()
        (folder / f"{name}.yaml").write_text(text.replace("table: chinook_music", f"table: {table}"))
    job = folder / "nested.yaml"
    job.write_text(textwrap.dedent(f"""\
        version: 1
        name: nested_chinook
        incremental: {str(incremental).lower()}
        sources:
          chinook:
            type: postgres
            dsn: "{dsn}"
            page_rows: 50
            tables:
              artist:
                mapping: chinook_artists.yaml
                partitions: 3
                children:
                  albums:
                    table: album
                    parent_key: [artist_id]
                    children:
                      tracks: {{table: track, parent_key: [album_id]}}
              customer:
                mapping: chinook_customer_invoices.yaml
                partitions: 2
                children:
                  invoices:
                    table: invoice
                    parent_key: [customer_id]
                    children:
                      lines: {{table: invoice_line, parent_key: [invoice_id]}}
              sales:
                mapping: chinook_sales.yaml
                partitions: 2
                key: [invoice_line_id]
                query: "{SALES_QUERY}"
        targets:
          pg: {{type: postgres, dsn: "{dsn}", schema: public, create: if_missing}}
          dynamo:
            {{type: dynamodb, endpoint_url: "{DYNAMODB_ENDPOINT}", region: us-east-1, create: if_missing}}
        batch: {{records: 150}}
        parallelism: 2
        executor: {{type: local}}
        state: {{type: sqlite, path: .etl/state.sqlite}}
        dead_letter: {{path: .etl/dead_letter.jsonl}}
        max_rejects: 0
        validation: {{after_run: true, consistent_reads: true}}
        report: {{dir: .etl/reports}}
        """))
    return job


@pytest.fixture
def chinook(pg_database):
    load_chinook(pg_database)
    return pg_database


def assert_everything_moved(dsn: str, client, table: str, stdout: str) -> None:
    report = saved_report(stdout)
    figures = {
        t["table"]: (t["extracted"], t["loaded"], t["rejected"], t["filtered"]) for t in report["tables"]
    }
    assert figures == {"chinook.artist": (275, 275, 0, 0), "chinook.customer": (59, 59, 0, 0),
                       "chinook.sales": (2240, 2240, 0, 0)}
    counts = {
        name: pg_scalar(dsn, f"SELECT count(*) FROM {name}")
        for name in ("artists", "albums", "tracks", "customers", "invoices", "invoice_lines", "sales")
    }
    assert counts == {"artists": 275, "albums": 347, "tracks": 3503, "customers": 59, "invoices": 412,
                      "invoice_lines": 2240, "sales": 2240}
    assert pg_scalar(dsn, "SELECT sum(amount) FROM sales") == Decimal("2328.60")
    # jsonb holds the whole tree: every album and track of every artist, every line of every invoice.
    assert pg_scalar(dsn, "SELECT sum(jsonb_array_length(albums)) FROM artists") == 347
    assert pg_scalar(dsn, "SELECT count(*) FROM artists, jsonb_array_elements(albums) a,"
                          " jsonb_array_elements(a->'tracks')") == 3503
    assert pg_scalar(dsn, "SELECT count(*) FROM customers, jsonb_array_elements(invoices) i,"
                          " jsonb_array_elements(i->'lines')") == 2240
    assert pg_scalar(dsn, "SELECT count(*) FROM tracks t JOIN albums a USING (album_id)"
                          " JOIN track s USING (track_id) WHERE s.album_id = a.album_id") == 3503
    assert pg_scalar(dsn, "SELECT sum(total) FROM invoices") == Decimal("2328.60")
    # DynamoDB: 275 artist + 347 album + 3,503 track items, 59 customer + 412 invoice items.
    assert dynamo_count(client, table) == 275 + 347 + 3503 + 59 + 412
    item = client.get_item(TableName=table, Key={"pk": {"S": "ARTIST#1"}, "sk": {"S": "PROFILE"}})["Item"]
    albums = item["albums"]["L"]
    assert [album["M"]["title"]["S"] for album in albums] == [
        "For Those About To Rock We Salute You", "Let There Be Rock"]
    assert [len(album["M"]["tracks"]["L"]) for album in albums] == [10, 8]


def test_nested_chinook_into_dynamodb_and_jsonb_validated_equal(tmp_path, chinook, dynamodb_client,
                                                                dynamodb_table_prefix):
    table = f"{dynamodb_table_prefix}_music"
    job = nested_job(tmp_path, chinook, table)
    plan = run_cli(job, "--plan")
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
    # --plan previews the nested record the run maps: the children come with their parent.
    assert (
        'source record artist_id=1:\n    {"artist_id": 1, "name": "AC/DC", "albums": [{"album_id": 1,'
        ' "title": "For Those About To Rock We Salute You", "artist_id": 1, "tracks": [{"track_id": 1,'
    ) in plan.stdout
    assert plan.stdout.count("source columns no output uses (catalogue): none") == 2  # artist, sales
    result = run_cli(job)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert_everything_moved(chinook, dynamodb_client, table, result.stdout)


def test_nested_chinook_killed_after_a_batch_resumes_with_exact_counts(tmp_path, chinook, dynamodb_client,
                                                                       dynamodb_table_prefix):
    table = f"{dynamodb_table_prefix}_music"
    job = nested_job(tmp_path, chinook, table)
    killed = run_cli(job, fault="kill:batch:2")
    assert killed.returncode == -9, killed.stdout[-3000:] + killed.stderr[-3000:]
    assert 0 < pg_scalar(chinook, "SELECT count(*) FROM artists") + pg_scalar(
        chinook, "SELECT count(*) FROM customers") < 275 + 59
    # Batches end on a parent: every artist written has all its albums and tracks, and nothing else is.
    assert pg_scalar(chinook, "SELECT count(*) FROM tracks") == pg_scalar(
        chinook, "SELECT count(*) FROM track JOIN album USING (album_id) JOIN artists USING (artist_id)")
    assert pg_scalar(chinook, "SELECT count(*) FROM albums") == pg_scalar(
        chinook, "SELECT count(*) FROM album JOIN artists USING (artist_id)")
    final = run_cli(job)
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    assert_everything_moved(chinook, dynamodb_client, table, final.stdout)


def test_an_incremental_run_reads_parents_and_children_again_and_applies_child_changes(
        tmp_path, chinook, dynamodb_client, dynamodb_table_prefix):
    table = f"{dynamodb_table_prefix}_music"
    job = nested_job(tmp_path, chinook, table, incremental=True)
    full = run_cli(job)
    assert full.returncode == 0, full.stdout[-3000:] + full.stderr[-3000:]
    with psycopg.connect(chinook) as connection:  # child rows change; no parent row does
        connection.execute("UPDATE track SET name = 'Renamed' WHERE track_id = 1")
        connection.execute("DELETE FROM invoice_line WHERE invoice_line_id IN (1, 2)")  # invoice 1's lines
    caught_up = run_cli(job, "--incremental")
    assert caught_up.returncode == 0, caught_up.stdout[-3000:] + caught_up.stderr[-3000:]
    assert pg_scalar(chinook, "SELECT name FROM tracks WHERE track_id = 1") == "Renamed"
    first_track = "SELECT albums->0->'tracks'->0->>'name' FROM artists WHERE artist_id = 1"
    assert pg_scalar(chinook, first_track) == "Renamed"
    assert pg_scalar(chinook, "SELECT count(*) FROM invoice_lines") == 2238
    assert pg_scalar(chinook, "SELECT count(*) FROM sales") == 2238
    assert pg_scalar(chinook, "SELECT count(*) FROM customers, jsonb_array_elements(invoices) i,"
                              " jsonb_array_elements(i->'lines')") == 2238
    item = dynamodb_client.get_item(
        TableName=table, Key={"pk": {"S": "CUSTOMER#2"}, "sk": {"S": "INVOICE#2021-01-01#1"}})["Item"]
    assert item["lines"] == {"L": []}
    track = dynamodb_client.get_item(
        TableName=table, Key={"pk": {"S": "ARTIST#1"}, "sk": {"S": "TRACK#1#1"}})["Item"]
    assert track["name"] == {"S": "Renamed"}
