"""A batch killed after the PostgreSQL sink committed it and before its checkpoint is replayed by the
next run, and the replay replaces the children the first attempt wrote: here the source's arrays
shrank in between, and exactly the new children are left (none of the old ones survive)."""

from __future__ import annotations

from pathlib import Path

import bson
import pytest

from tests.integration.run_helpers import pg_scalar, run_cli, saved_report

pytestmark = pytest.mark.integration

MAPPING = """\
version: 1
source:
  key: [_id]
targets:
  pg: postgres
outputs:
  - target: pg
    table: patients
    key: [patient_id]
    columns:
      patient_id: {from: _id, type: int}
      name: name
  - target: pg
    table: visits
    explode: visits[]
    parent: patients
    key: [visit_id]
    columns:
      visit_id: {from: visit_id, type: int}
      ward: ward
"""


def documents(shrunk: range = range(0)) -> list[dict]:
    """30 patients with 3 visits each; those in `shrunk` have only their first visit."""
    return [{"_id": i, "name": f"patient {i}",
             "visits": [{"visit_id": i * 10 + v, "ward": "AB"[v % 2]}
                        for v in range(1 if i in shrunk else 3)]}
            for i in range(1, 31)]


def write_dump(folder: Path, docs: list[dict]) -> None:
    (folder / "dump" / "clinic").mkdir(parents=True, exist_ok=True)
    (folder / "dump" / "clinic" / "patients.bson").write_bytes(b"".join(bson.encode(d) for d in docs))


def test_a_replayed_batch_replaces_the_children_its_first_attempt_wrote(tmp_path, pg_database):
    write_dump(tmp_path, documents())
    (tmp_path / "m.yaml").write_text(MAPPING)
    job = tmp_path / "job.yaml"
    job.write_text(f"""\
version: 1
name: replay
sources:
  dump: {{type: mongodump, path: "{tmp_path / 'dump'}", database: clinic,
         tables: {{patients: {{mapping: m.yaml, partitions: 1}}}}}}
targets:
  pg: {{type: postgres, dsn: "{pg_database}", create: if_missing}}
batch: {{records: 10}}
parallelism: 1
state: {{type: sqlite, path: "{tmp_path / 'state.sqlite'}"}}
report: {{dir: "{tmp_path / 'reports'}"}}
""")
    # the second batch (patients 11-20) is committed in PostgreSQL, then the process dies before
    # its checkpoint
    killed = run_cli(job, fault="kill:write:2")
    assert killed.returncode == -9, killed.stdout[-2000:] + killed.stderr[-2000:]
    assert pg_scalar(pg_database, "SELECT count(*) FROM patients") == 20
    assert pg_scalar(pg_database, "SELECT count(*) FROM visits") == 60

    # the source changes before the next run: patients 11-20 keep one visit each (the documents
    # before them keep their bytes, so the first batch's checkpoint still points at patient 11)
    write_dump(tmp_path, documents(shrunk=range(11, 21)))
    final = run_cli(job)
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    report = saved_report(final.stdout)
    assert report["status"] == "succeeded"
    assert (report["tables"][0]["extracted"], report["tables"][0]["loaded"]) == (30, 30)
    assert pg_scalar(pg_database, "SELECT count(*) FROM patients") == 30
    assert pg_scalar(pg_database, "SELECT count(*) FROM visits") == 10 * 3 + 10 * 1 + 10 * 3
    assert pg_scalar(pg_database, "SELECT array_agg(visit_id ORDER BY visit_id) FROM visits"
                                  " WHERE patient_id BETWEEN 11 AND 20") == [i * 10 for i in range(11, 21)]
