"""`--plan`: tables, partitions and the first records beside their mapped rows; nothing written."""

from __future__ import annotations

import re

import pytest

from tests.integration.run_helpers import patients, patients_mapping, pg_scalar, run_cli, write_job

pytestmark = pytest.mark.integration


def test_plan_prints_partitions_and_mapped_records_and_writes_nothing(tmp_path, mongo_db, pg_database):
    mongo_db.patients.insert_many(patients(50))
    job = write_job(tmp_path, name="planned", database=mongo_db.name, collection="patients",
                    mapping=patients_mapping(tmp_path), pg_dsn=pg_database, dynamo=False, partitions=3)
    result = run_cli(job, "--plan")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "job planned: 1 source tables, 3 partitions; parallelism 2, executor local"
    assert lines[2] == "mongo.patients  (mapping patients.yaml -> pg.patients, pg.visits)"
    assert [line.split(":")[0] for line in lines[3:6]] == [f"  partition {i}/3" for i in range(3)]
    # bounds are keys (from inclusive, to exclusive), as the records' keys are shown
    assert re.fullmatch(r"  partition 0/3: from \(unbounded\) to _id=(\d+)", lines[3])
    middle = re.fullmatch(r"  partition 1/3: from _id=(\d+) to _id=(\d+)", lines[4])
    assert middle and lines[3].endswith(f" to _id={middle[1]}") and 1 < int(middle[1]) < int(middle[2]) <= 50
    assert lines[5] == f"  partition 2/3: from _id={middle[2]} to (unbounded)"
    assert "  source record _id=1:" in lines
    assert "  source record _id=2:" in lines
    assert "  source record _id=3:" not in lines
    mapped = [line for line in lines if line.startswith("    -> pg.patients: ")]
    assert mapped[0].startswith('    -> pg.patients: {"patient_id": 1, "name": "patient 1", "email_hmac": "')
    # the source record is shown with the mapping's pii transforms applied: no raw e-mail address
    assert "p1@example.org" not in result.stdout
    assert not (tmp_path / ".etl" / "state.sqlite").exists()
    tables = "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
    assert pg_scalar(pg_database, tables) == 0


def test_plan_shows_a_record_whose_pii_value_cannot_be_transformed_without_its_raw_value(
        tmp_path, mongo_db, pg_database):
    """`year` of a value that is no date cannot protect it: the plan drops the field from the
    shown record, shows the record's reject, and never prints the raw value."""
    documents = patients(2)
    documents[0]["birth"] = "SECRET-not-a-date-4711"
    documents[1]["birth"] = "1980-05-17"
    mongo_db.patients.insert_many(documents)
    mapping = patients_mapping(tmp_path)
    mapping.write_text(mapping.read_text().replace("pii:\n", "pii:\n  birth: year\n"))
    job = write_job(tmp_path, name="planpii", database=mongo_db.name, collection="patients",
                    mapping=mapping, pg_dsn=pg_database, dynamo=False, partitions=1)
    result = run_cli(job, "--plan")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SECRET-not-a-date-4711" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    first = lines[lines.index("  source record _id=1:") + 1]
    second = lines[lines.index("  source record _id=2:") + 1]
    assert '"birth"' not in first
    assert lines[lines.index("  source record _id=1:") + 2] == (
        "    -> rejected: pii `year` cannot apply: "
        "year-only needs a date, a timestamp or ISO date text (birth)")
    assert first.startswith('    {"_id": 1, "name": "patient 1", "email": "')
    assert '"birth": 1980' in second
    assert "p1@example.org" not in result.stdout
    assert not (tmp_path / ".etl" / "state.sqlite").exists()
