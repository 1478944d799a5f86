"""The analyst notebooks, executed end to end by nbclient against the local servers (scratch
MongoDB database, DynamoDB table and PostgreSQL databases), with assertions on what they show."""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

import nbformat
import psycopg
import pytest
from nbclient import NotebookClient

from tests.conftest import DYNAMODB_ENDPOINT, pg_dsn, unique_name
from tests.integration.run_helpers import HMAC_KEY, chinook_documents, demo_mapping, write_job

pytestmark = pytest.mark.integration

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CELL_TIMEOUT = 300
"""Seconds any one cell may take (a run or a validation of the demo takes well under a minute)."""


def execute(name: str, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], folder: Path) -> dict[str, str]:
    """Run a notebook in a fresh kernel started in `folder` (an empty scratch folder: a notebook must
    run anywhere, needing no file beside it); returns cell id -> everything the cell printed or
    displayed as text (text/plain, text/html, errors)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # the kernel imports etl from this checkout, not from wherever the virtualenv installed it
    monkeypatch.setenv("PYTHONPATH", str(NOTEBOOKS.parent))
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert book.cells[0].cell_type == "markdown" and "How to run it" in book.cells[0].source
    assert all(not cell.get("outputs") for cell in book.cells if cell.cell_type == "code"), \
        f"{name} is committed with outputs"
    NotebookClient(book, timeout=CELL_TIMEOUT, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute()
    shown: dict[str, str] = {}
    for cell in book.cells:
        if cell.cell_type != "code":
            continue
        parts = []
        for output in cell.outputs:
            if output.output_type == "stream":
                parts.append(output.text)
            elif output.output_type in ("execute_result", "display_data"):
                data = output.data
                parts += [data.get("text/plain", ""), data.get("text/html", "")]
                if "image/png" in data:
                    parts.append("<image/png>")
        shown[cell.id] = "\n".join(parts)
    return shown


def test_validate_migration_finds_the_planted_key(tmp_path, monkeypatch, mongo_db, pg_database,
                                                 dynamodb_table_prefix):
    documents = chinook_documents()
    mongo_db.customers.insert_many(documents)
    table = f"{dynamodb_table_prefix}_chinook"
    (tmp_path / "elsewhere").mkdir()
    job = write_job(tmp_path, name="notebook", database=mongo_db.name, collection="customers",
                    mapping=demo_mapping(tmp_path, table), pg_dsn=pg_database, after_run=False)
    shown = execute("validate_migration.ipynb", monkeypatch, {
        "ETL_NOTEBOOK_JOB": str(job), "ETL_DYNAMODB_ENDPOINT": DYNAMODB_ENDPOINT,
        "ETL_DEMO_HMAC_KEY": HMAC_KEY, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1"}, tmp_path / "elsewhere")

    assert shown["job"].startswith(f"<MigrationJob 'notebook' from {job}; sources: mongo (mongo: customers)")
    assert "mongo.customers#0/2" in shown["plan"] and "mongo.customers#1/2" in shown["plan"]
    first = documents[0]
    email_hmac = hmac.new(HMAC_KEY.encode(), first["email"].encode(), hashlib.sha256).hexdigest()
    assert email_hmac[:50] in shown["preview-source"]  # long cells are shown cut to 60 characters
    everything = "\n".join(shown.values())
    for document in documents[:3]:  # previewed records: their raw e-mail and phone never appear
        assert document["email"] not in everything and document["phone"] not in everything
    assert re.search(r"mongo\.customers\s+59\s+59\s+0\s+0", shown["run"])
    assert "<image/png>" in shown["rows-per-second"] and "<image/png>" in shown["reject-reasons"]
    assert shown["validate"].count(">pass</td>") == 4 and "all tables equal" in shown["validate"]

    city = next(d for d in documents if d["_id"] == 7)["address"]["city"]
    assert shown["plant"] == f"{table}: city of CUSTOMER#7/PROFILE changed from {city!r} to 'Nowhere'\n"
    after = shown["validate-after"]
    assert after.count(">FAIL</td>") == 1 and "differences found" in after
    planted = rf"0\s+{table}\s+pk='CUSTOMER#7', sk='PROFILE'\s+changed\s+city\s+{city}\s+Nowhere\s+\d+\n"
    assert re.search(planted, shown["planted-differences"])
    assert shown["planted-differences"].count("CUSTOMER#") == 2  # the one row, in text and in HTML
    assert "<image/png>" in shown["plot-per-table"] and "<image/png>" in shown["plot-per-bucket"]
    assert shown["put-back"] == "all tables equal again: True\n"


def _databases(prefix: str) -> list[str]:
    with psycopg.connect(pg_dsn("postgres")) as admin:
        rows = admin.execute("SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1",
                             (prefix + "%",)).fetchall()
    return [row[0] for row in rows]


def test_verify_restore_plans_breaks_and_localises_the_changed_row(tmp_path, monkeypatch):
    database = unique_name("etl_nb")
    (tmp_path / "elsewhere").mkdir()
    try:
        shown = execute("verify_restore.ipynb", monkeypatch, {"ETL_NOTEBOOK_PG_DATABASE": database},
                        tmp_path / "elsewhere")
        assert _databases(database) == []  # the notebook drops its scratch databases
    finally:
        with psycopg.connect(pg_dsn("postgres"), autocommit=True) as admin:
            for name in (database + "_restored", database):
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    assert "diff-tue" in shown["history"] and "full-sun" in shown["history"]
    assert shown["plan"] == ("1. full         full-sun\n2. differential diff-tue\n3. log          log-0400\n"
                             "4. log          log-0500\nnot used (3):\n"
                             "  log-0200: superseded by diff-tue, which already reaches 37000000036000001\n"
                             "  diff-mon: superseded by diff-tue\n"
                             "  log-0300: superseded by diff-tue, which already reaches 37000000036000001\n")
    assert shown["broken-base"].startswith(
        "BrokenChain: mssql: differential diff-mon is based on full backup_set_uuid "
        "11111111-1111-4111-8111-000000000009 at checkpoint_lsn 37000000021500001, "
        "which is not in the history")
    assert shown["broken-gap"].startswith(
        "PositionGap: mssql: gap between log-0200 (ends at 37000000020000001) and log-0400 "
        "(starts at 37000000030000001)")
    assert re.fullmatch(r"manifest at LSN [0-9A-F]+/[0-9A-F]+: 1000 rows in 4 segments, saved to "
                        r"patients-manifest.json\n", shown["pg-source"])
    assert "differences found" in shown["verify"]
    # numbers with thousands separators; the row counts without reference rows are left out
    assert re.search(r">patients</td><td[^>]*>FAIL</td><td[^>]*>1,000</td><td[^>]*>1,000</td><td[^>]*>4</td>"
                     r"<td[^>]*>1</td>", shown["verify"])
    assert re.search(r"restore verified against the manifest at lsn [0-9A-F]+/[0-9A-F]+: differences found",
                     shown["verify"])
    assert re.search(r"2\s+patients\s+2\s+\[500\]\s+\[750\]\s+250\s+250\s+1\s+0\s+mismatch",
                     shown["segments"])
    assert re.search(r"0\s+patients\s+id=617\s+changed\s+ward\s+B\s+MORGUE\s+\d+\s+2\n",
                     shown["restore-differences"])
    assert "<image/png>" in shown["plot-segments"]
    assert shown["cleanup"] == "scratch databases dropped\n"
