"""The notebook job object without servers: what its repr shows, and reports read back from files."""

from __future__ import annotations

import shutil
import typing
from pathlib import Path

import pytest

import etl
from etl.api import MigrationJob, open_job, report_from_json
from etl.errors import EtlError, JobFileError
from etl.job import Job
from etl.report.run_report import RunReport, TableCheck, TableReport

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-Pa55word"  # noqa: S105 - a test value that must never be shown

JOB = f"""\
version: 1
name: notebook-unit
sources:
  mongo:
    type: mongo
    uri: "mongodb://analyst:{PASSWORD}@mongo.internal:27017/?authSource=admin"
    database: chinook
    tables:
      customers: {{mapping: chinook_customers.yaml, partitions: 2}}
targets:
  pg: {{type: postgres, dsn: "host=pg.internal user=etl password={PASSWORD} dbname=clinic"}}
  dynamo: {{type: dynamodb, endpoint_url: "http://127.0.0.1:8001", region: us-east-1}}
report: {{dir: reports}}
"""


@pytest.fixture
def job_file(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "mappings" / "chinook_customers.yaml", tmp_path / "chinook_customers.yaml")
    path = tmp_path / "job.yaml"
    path.write_text(JOB)
    return path


def opened(job_file: Path) -> MigrationJob:
    return etl.load_job(job_file, environ={"ETL_DEMO_HMAC_KEY": "unit-hmac-key"})


def test_load_job_is_the_notebook_job_and_its_repr_shows_no_connection(job_file):
    job = opened(job_file)
    assert etl.load_job is open_job and isinstance(job, MigrationJob)
    assert repr(job) == (f"<MigrationJob 'notebook-unit' from {job_file}; sources: mongo (mongo: customers); "
                         "targets: pg (postgres), dynamo (dynamodb)>")
    assert PASSWORD not in repr(job) and "internal" not in repr(job)
    public = {name: getattr(job, name) for name in dir(job) if not name.startswith("_")}
    assert not [name for name, value in public.items() if not callable(value) and PASSWORD in repr(value)]


def test_config_is_the_validated_job_the_engine_functions_take(job_file):
    job = opened(job_file)
    assert isinstance(job.config, Job) and (job.config.name, job.config.path) == ("notebook-unit", job_file)
    for function in (etl.run_job, etl.validate_job, etl.plan_job):
        assert typing.get_type_hints(function)["job"] is Job
    assert PASSWORD not in repr(job.config) and PASSWORD not in repr(job.config.targets["pg"])


def test_target_tables_lists_every_table_the_mapping_writes(job_file):
    tables = opened(job_file).target_tables()
    assert list(tables.columns) == ["source_table", "target", "table", "key", "parent", "columns"]
    assert tables[["target", "table", "parent"]].values.tolist() == [
        ["dynamo", "chinook_demo", None], ["pg", "customers", None], ["pg", "invoices", "customers"],
        ["pg", "invoice_lines", "invoices"]]
    assert tables["key"].tolist() == [["pk", "sk"], ["customer_id"], ["invoice_id"], ["invoice_line_id"]]


def test_preview_of_an_unknown_table_names_the_tables(job_file):
    with pytest.raises(JobFileError) as raised:
        opened(job_file).preview("patients")
    assert str(raised.value) == ("preview 'patients': no such source table in the job\n"
                                 "  hint: the job's tables are mongo.customers")


def _report() -> RunReport:
    return RunReport(job="notebook-unit", mode="run", status="differences",
                     started_at="2026-11-26T10:00:00+00:00", finished_at="2026-11-26T10:00:09+00:00",
                     seconds=9.0,
                     tables=[TableReport("mongo.customers", 2, 2, 59, 58, 1, 0, extracted_this_run=59,
                                         seconds=3.0, rows={"pg.customers": 58},
                                         top_reasons=[("total: not a decimal", 1)])],
                     validation=[TableCheck("pg", "customers", False, 59, 58, 1, 0, 0,
                                            first_keys=["missing: customer_id=7"])],
                     message="validation found differences in pg.customers", options={"full_refresh": True})


def test_report_reads_back_the_newest_saved_run_report(job_file):
    job = opened(job_file)
    with pytest.raises(EtlError, match="job notebook-unit has no run report in .*reports"):
        job.report()
    older = _report()
    older.started_at = "2026-11-25T10:00:00+00:00"
    older.status = "succeeded"
    older.save(job_file.parent / "reports")
    newest = _report()
    newest.save(job_file.parent / "reports")
    again = opened(job_file).report()
    assert again.to_dict() == newest.to_dict()
    assert again.tables[0].top_reasons == [("total: not a decimal", 1)]
    assert again.validation[0].first_keys == ["missing: customer_id=7"]
    assert again.exit_code == 1


def test_report_from_json_round_trips_an_empty_validation():
    report = _report()
    report.validation = None
    assert report_from_json(report.to_json()).to_dict() == report.to_dict()


def test_run_refuses_an_unknown_option_and_names_the_known_ones(job_file):
    with pytest.raises(EtlError) as raised:
        opened(job_file).run(full_refrsh=True)
    assert raised.value.message == "run(): unknown option(s) full_refrsh"
    assert raised.value.hint.startswith("the options are resume, full_refresh, only, limit, shard, validate")
