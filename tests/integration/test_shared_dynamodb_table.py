"""Two jobs writing one DynamoDB table (single-table design): each validates only its own items,
declared by `scopes` on its target; without the declaration each sees the other's items as extra."""

from __future__ import annotations

import pytest

from tests.integration.run_helpers import dynamo_count, run_cli, saved_report, write_job

pytestmark = pytest.mark.integration

MAPPING = """\
version: 1
source:
  key: [_id]
targets:
  dynamo: dynamodb
outputs:
  - target: dynamo
    table: {table}
    key: [pk, sk]
    columns:
      pk: {{template: "{prefix}#{{_id}}"}}
      sk: {{const: {sort}}}
      name: name
"""


def job(folder, mongo_db, pg_database, table: str, collection: str, prefix: str, *, scoped: bool):
    folder.mkdir()
    mapping = folder / f"{collection}.yaml"
    mapping.write_text(MAPPING.format(table=table, prefix=prefix, sort=collection.upper()))
    path = write_job(folder, name=f"shared_{collection}", database=mongo_db.name, collection=collection,
                     mapping=mapping, pg_dsn=pg_database)
    if scoped:
        dynamo = "region: us-east-1, create: if_missing"
        path.write_text(path.read_text().replace(
            dynamo, f"{dynamo}, scopes: {{{table}: {{attribute: pk, begins_with: '{prefix}#'}}}}"))
    return path


def test_two_jobs_share_a_table_and_each_validates_its_own_items(
        tmp_path, mongo_db, pg_database, dynamodb_client, dynamodb_table_prefix):
    mongo_db.patients.insert_many([{"_id": i, "name": f"patient {i}"} for i in range(1, 31)])
    mongo_db.wards.insert_many([{"_id": i, "name": f"ward {i}"} for i in range(1, 6)])
    table = f"{dynamodb_table_prefix}_hospital"
    patients = job(tmp_path / "patients", mongo_db, pg_database, table, "patients", "PATIENT", scoped=True)
    wards = job(tmp_path / "wards", mongo_db, pg_database, table, "wards", "WARD", scoped=True)
    unscoped = job(tmp_path / "plain", mongo_db, pg_database, table, "patients", "PATIENT", scoped=False)

    first = run_cli(patients)
    assert first.returncode == 0, first.stdout + first.stderr
    second = run_cli(wards)  # validates after the patients are in the table
    assert second.returncode == 0, second.stdout + second.stderr
    assert dynamo_count(dynamodb_client, table) == 35
    checks = [(c["table"], c["rows_source"], c["rows_target"], c["extra"], c["ok"])
              for c in saved_report(second.stdout)["validation"]]
    assert checks == [(table, 5, 5, 0, True)]

    again = run_cli(patients, "--validate-only")  # now the wards are in the table too
    assert again.returncode == 0, again.stdout + again.stderr
    validation = saved_report(again.stdout)["validation"]
    assert [(c["rows_source"], c["rows_target"], c["extra"]) for c in validation] == [(30, 30, 0)]

    # the same job without its scope counts the other job's 5 items as extra: exit 1
    plain = run_cli(unscoped, "--validate-only")
    assert plain.returncode == 1, plain.stdout + plain.stderr
    check = saved_report(plain.stdout)["validation"][0]
    assert (check["rows_source"], check["rows_target"], check["extra"], check["missing"]) == (30, 35, 5, 0)
    assert check["first_keys"][0].startswith("extra: pk='WARD#")

    checked = run_cli(patients, "--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert (f"  table {table}: active, key pk (hash), sk (range), about 35 items; validation reads only the "
            "items whose pk begins with 'PATIENT#'") in checked.stdout.splitlines()


def test_a_row_outside_the_declared_scope_is_missing_not_hidden(
        tmp_path, mongo_db, pg_database, dynamodb_table_prefix):
    """A scope that does not cover what the mapping writes cannot pass: those rows are missing."""
    mongo_db.patients.insert_many([{"_id": i, "name": f"patient {i}"} for i in range(1, 4)])
    table = f"{dynamodb_table_prefix}_hospital"
    path = job(tmp_path / "patients", mongo_db, pg_database, table, "patients", "PATIENT", scoped=True)
    path.write_text(path.read_text().replace("begins_with: 'PATIENT#'", "begins_with: 'PATIENTS#'"))
    result = run_cli(path)
    assert result.returncode == 1, result.stdout + result.stderr
    check = saved_report(result.stdout)["validation"][0]
    assert (check["rows_source"], check["rows_target"], check["missing"], check["extra"]) == (3, 0, 3, 0)
