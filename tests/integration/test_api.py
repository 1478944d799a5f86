"""The notebook job object on the real servers: plan and preview DataFrames, a run with its batch
timings, and a validation that names a changed and a deleted PostgreSQL row by key and field."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest

import etl
from etl.api import PLAN_COLUMNS
from etl.report import plots
from tests.integration.run_helpers import HMAC_KEY, chinook_documents, demo_mapping, pg_scalar, write_job

pytestmark = pytest.mark.integration


@pytest.fixture
def demo(tmp_path, mongo_db, pg_database, dynamodb_table_prefix, monkeypatch):
    """The demo job on scratch databases: (job object, documents, DynamoDB table, PostgreSQL DSN)."""
    for name, value in {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    documents = chinook_documents()
    mongo_db.customers.insert_many(documents)
    table = f"{dynamodb_table_prefix}_chinook"
    path = write_job(tmp_path, name="api", database=mongo_db.name, collection="customers",
                     mapping=demo_mapping(tmp_path, table), pg_dsn=pg_database, after_run=False)
    return etl.load_job(path, environ={"ETL_DEMO_HMAC_KEY": HMAC_KEY}), documents, table, pg_database


def test_plan_and_preview_show_partitions_and_mapped_rows_with_pii_transformed(demo):
    job, documents, table, _ = demo
    plan = job.plan()
    assert list(plan.columns) == PLAN_COLUMNS
    assert plan[["table", "partition", "partitions", "id"]].values.tolist() == [
        ["mongo.customers", 0, 2, "mongo.customers#0/2"], ["mongo.customers", 1, 2, "mongo.customers#1/2"]]
    assert plan["lower"][0] is None and plan["upper"][1] is None and plan["upper"][0] == plan["lower"][1]
    assert plan["from"][0] is None and plan["to"][1] is None and plan["to"][0] == plan["from"][1]
    assert re.fullmatch(r"_id=\d+", plan["to"][0])  # the key range as keys are shown

    preview = job.preview("mongo.customers", 2)
    first, second = documents[0], documents[1]
    assert preview.source["source_key"].tolist() == ["_id=1", "_id=2"]
    assert preview.source["email"].tolist() == [
        hmac.new(HMAC_KEY.encode(), d["email"].encode(), hashlib.sha256).hexdigest() for d in (first, second)]
    assert preview.source["phone"].tolist() == [
        "*" * (len(d["phone"]) - 4) + d["phone"][-4:] for d in (first, second)]
    invoices = len(first["invoices"]) + len(second["invoices"])
    lines = sum(len(i["lines"]) for d in (first, second) for i in d["invoices"])
    assert {name: frame.shape for name, frame in preview.rows.items()} == {
        f"dynamo.{table}": (2 + invoices, 16), "pg.customers": (2, 10), "pg.invoices": (invoices, 6),
        "pg.invoice_lines": (lines, 7)}
    assert (invoices, lines) == (14, 76)
    customers = preview["pg.customers"]
    assert list(customers.columns) == ["source_key", "customer_id", "first_name", "last_name", "company",
                                       "city", "country", "email_hmac", "phone_masked", "address"]
    assert customers["email_hmac"].tolist() == preview.source["email"].tolist()
    assert preview["pg.invoices"]["source_key"].value_counts().to_dict() == {
        "_id=1": len(first["invoices"]), "_id=2": len(second["invoices"])}
    assert preview.rejects.empty
    page = preview._repr_html_()
    assert first["email"] not in page and first["phone"] not in page


def test_run_then_validate_names_the_changed_and_the_deleted_row(demo):
    job, documents, table, dsn = demo
    report = job.run(full_refresh=True)
    assert report.status == "unproven" and report.validation is None  # validated below
    assert [(t.table, t.extracted, t.loaded, t.rejected, t.filtered) for t in report.tables] == [
        ("mongo.customers", 59, 59, 0, 0)]
    assert report.totals().rows == {f"dynamo.{table}": 471, "pg.customers": 59, "pg.invoices": 412,
                                    "pg.invoice_lines": 2240}
    progress = job.progress()
    assert progress["table"].unique().tolist() == ["mongo.customers"]
    assert progress["extracted"].sum() == 59 and progress["seconds"].is_monotonic_increasing
    assert job.report() is report

    pg_scalar(dsn, "UPDATE customers SET city = 'Nowhere' WHERE customer_id = 7 RETURNING customer_id")
    pg_scalar(dsn, "DELETE FROM invoice_lines WHERE invoice_line_id = 100 RETURNING invoice_line_id")
    validation = job.validate()
    summary = validation.summary()
    assert summary[["table", "target", "ok", "rows_source", "rows_target", "missing", "extra", "changed"]
                   ].values.tolist() == [
        [table, "dynamo", True, 471, 471, 0, 0, 0],
        ["customers", "pg", False, 59, 59, 0, 0, 1],
        ["invoices", "pg", True, 412, 412, 0, 0, 0],
        ["invoice_lines", "pg", False, 2240, 2239, 1, 0, 0],
    ]
    city = next(d for d in documents if d["_id"] == 7)["address"]["city"]
    columns = ["table", "key", "kind", "field", "source_value", "target_value"]
    assert validation.differences("customers")[columns].values.tolist() == [
        ["customers", "customer_id=7", "changed", "city", city, "Nowhere"]]
    assert validation.differences("invoice_lines")[columns].values.tolist() == [
        ["invoice_lines", "invoice_line_id=100", "missing", None, None, None]]
    assert len(validation.to_pandas()) == 2

    figure = plots.differences_per_table(validation)
    widths = {c.get_label(): [p.get_width() for p in c.patches] for c in figure.axes[0].containers}
    assert widths["missing"] == [0, 0, 0, 1] and widths["changed"] == [0, 1, 0, 0]
    reopened = etl.load_job(job.path, environ={"ETL_DEMO_HMAC_KEY": HMAC_KEY})
    assert reopened.report().to_dict() == report.to_dict()  # read back from the saved JSON
