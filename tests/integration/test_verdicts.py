"""docs/verdicts.md, row by row: every way a run can end, and what the next plain run does and exits
with. Each test drives `python -m etl.run` on the real servers; crashes and kills land at exact
moments through the test-only fault hook (ETL_TEST_FAULT, etl/engine/faults.py), never by timing.
"""

from __future__ import annotations

import json

import pytest

from etl.engine.verdict import load_verdict
from etl.state.sqlite import Config as SqliteConfig
from etl.state.sqlite import open_store
from tests.integration.run_helpers import (
    patients,
    patients_mapping,
    pg_scalar,
    run_cli,
    saved_report,
    write_job,
)

pytestmark = pytest.mark.integration

RECORDS = 30


def make_job(tmp_path, mongo_db, pg_database, *, max_rejects: str = "0", after_run: bool = True,
             bad_balances: tuple[int, ...] = ()):
    mongo_db.patients.insert_many(patients(RECORDS))
    for patient_id in bad_balances:
        mongo_db.patients.update_one({"_id": patient_id}, {"$set": {"balance": "lots"}})
    # one partition, one worker, 5 records a batch: the order of batches is the order of keys
    return write_job(tmp_path, name="verdicts", database=mongo_db.name, collection="patients",
                     mapping=patients_mapping(tmp_path), pg_dsn=pg_database, dynamo=False, partitions=1,
                     parallelism=1, batch_records=5, max_rejects=max_rejects, after_run=after_run)


def stage(tmp_path) -> str:
    store = open_store(SqliteConfig(), base_dir=tmp_path)
    try:
        verdict = load_verdict(store, "verdicts")
        return verdict.stage if verdict else "(none)"
    finally:
        store.close()


def reports(tmp_path) -> list[dict]:
    folder = tmp_path / ".etl" / "reports"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.exists() else []


def outcome(result) -> tuple[int, str]:
    report = saved_report(result.stdout)
    return result.returncode, report["status"]


def test_success_then_nothing_to_do(tmp_path, mongo_db, pg_database):
    path = make_job(tmp_path, mongo_db, pg_database)
    first = run_cli(path)
    assert outcome(first) == (0, "succeeded"), first.stdout + first.stderr
    assert saved_report(first.stdout)["sources"] == [
        {"table": "mongo.patients", "counted": 30, "read": 30, "extracted": 30, "ok": True, "problem": None}]
    assert stage(tmp_path) == "proven"
    again = run_cli(path)
    report = saved_report(again.stdout)
    assert (again.returncode, report["status"]) == (0, "nothing to do")
    assert report["message"].startswith("job verdicts has already finished and its targets were proven equal")
    assert report["validation"] is None and report["tables"][0]["extracted_this_run"] == 0


def test_differences_are_validated_again_by_the_next_run(tmp_path, mongo_db, pg_database):
    path = make_job(tmp_path, mongo_db, pg_database)
    assert run_cli(path).returncode == 0
    pg_scalar(pg_database, "UPDATE patients SET name = 'edited' WHERE patient_id = 5 RETURNING 1")
    found = run_cli(path, "--validate-only")
    assert outcome(found) == (1, "differences")
    assert stage(tmp_path) == "differences"
    again = run_cli(path)  # nothing to move, but nothing proven: it validates, and still differs
    assert outcome(again) == (1, "differences")
    assert saved_report(again.stdout)["validation"][0]["first_keys"] == ["changed: patient_id=5 (name)"]
    pg_scalar(pg_database, "UPDATE patients SET name = 'patient 5' WHERE patient_id = 5 RETURNING 1")
    fixed = run_cli(path)
    assert outcome(fixed) == (0, "succeeded")
    assert stage(tmp_path) == "proven"
    assert outcome(run_cli(path)) == (0, "nothing to do")


def test_reject_policy_failure_is_judged_again_until_the_policy_allows(tmp_path, mongo_db, pg_database):
    path = make_job(tmp_path, mongo_db, pg_database, max_rejects="2", bad_balances=(3, 4, 9))
    first = run_cli(path)
    report = saved_report(first.stdout)
    assert (first.returncode, report["status"]) == (3, "failed"), first.stdout + first.stderr
    table = report["tables"][0]
    # the message's counts are the report's counts
    assert report["message"].startswith(
        f"too many rejected records: 3 of {table['extracted']} extracted, more than max_rejects 2 allows")
    assert table["rejected"] == 3
    second = run_cli(path)  # the same command again: never "nothing to do"
    report = saved_report(second.stdout)
    assert (second.returncode, report["status"]) == (3, "failed")
    assert report["message"].startswith(
        "too many rejected records: 3 of 30 extracted, more than max_rejects 2 allows; most frequent: ")
    assert (report["tables"][0]["extracted"], report["tables"][0]["loaded"]) == (30, 27)
    assert stage(tmp_path) == "loading"
    store = open_store(SqliteConfig(), base_dir=tmp_path)
    verdict = load_verdict(store, "verdicts")
    store.close()
    assert verdict.accounting == {
        "mongo.patients": {"extracted": 30, "loaded": 27, "rejected": 3, "filtered": 0}}
    assert verdict.message.startswith("too many rejected records: 3 of 30 extracted")
    # equal targets prove the rows, not the reject policy: --validate-only cannot turn it green
    assert outcome(run_cli(path, "--validate-only")) == (0, "succeeded")
    assert stage(tmp_path) == "loading"
    assert outcome(run_cli(path)) == (3, "failed")
    path.write_text(path.read_text().replace("max_rejects: 2", "max_rejects: 3"))
    allowed = run_cli(path)
    report = saved_report(allowed.stdout)
    assert (allowed.returncode, report["status"]) == (0, "succeeded"), allowed.stdout + allowed.stderr
    assert report["tables"][0]["extracted_this_run"] == 0  # nothing moved again: judged and validated
    checks = {c["table"]: (c["ok"], c["rows_source"], c["rows_target"]) for c in report["validation"]}
    assert checks["patients"] == (True, 27, 27)
    assert stage(tmp_path) == "proven"


def test_crash_while_loading_saves_a_report_and_the_next_run_resumes(tmp_path, mongo_db, pg_database):
    path = make_job(tmp_path, mongo_db, pg_database)
    crashed = run_cli(path, fault="crash:batch:2")
    report = saved_report(crashed.stdout)
    assert (crashed.returncode, report["status"]) == (3, "failed")
    assert report["message"] == (
        "partition mongo.patients#0/1 failed: RuntimeError: test fault 'crash:batch:2' fired")
    assert report["tables"][0]["extracted"] == 10  # the two committed batches, not 0
    assert pg_scalar(pg_database, "SELECT count(*) FROM patients") == 10
    resumed = run_cli(path)
    report = saved_report(resumed.stdout)
    assert (resumed.returncode, report["status"]) == (0, "succeeded")
    assert (report["tables"][0]["extracted"], report["tables"][0]["extracted_this_run"]) == (30, 20)


def test_kill_while_loading_then_the_next_run_resumes(tmp_path, mongo_db, pg_database):
    path = make_job(tmp_path, mongo_db, pg_database)
    killed = run_cli(path, fault="kill:batch:3")
    assert killed.returncode == -9
    assert stage(tmp_path) == "loading"
    resumed = run_cli(path)
    report = saved_report(resumed.stdout)
    assert (resumed.returncode, report["status"]) == (0, "succeeded")
    assert (report["tables"][0]["extracted"], report["tables"][0]["extracted_this_run"]) == (30, 15)
    assert pg_scalar(pg_database, "SELECT count(*) FROM patients") == 30


@pytest.mark.parametrize("fault", ["crash:validate:1", "kill:validate:1", "kill:validated:1"])
def test_a_validation_that_did_not_end_is_done_by_the_next_run(tmp_path, mongo_db, pg_database, fault):
    path = make_job(tmp_path, mongo_db, pg_database)
    broken = run_cli(path, fault=fault)
    if fault.startswith("kill"):
        assert broken.returncode == -9
    else:
        report = saved_report(broken.stdout)
        assert (broken.returncode, report["status"]) == (3, "failed")
        assert report["message"] == (
            "the records moved, but validation could not run: "
            "RuntimeError: test fault 'crash:validate:1' fired")
    assert stage(tmp_path) == "validating"
    again = run_cli(path)
    report = saved_report(again.stdout)
    assert (again.returncode, report["status"]) == (0, "succeeded"), again.stdout + again.stderr
    assert report["tables"][0]["extracted_this_run"] == 0
    assert [(c["table"], c["ok"], c["rows_target"]) for c in report["validation"]] == [
        ("patients", True, 30), ("visits", True, pg_scalar(pg_database, "SELECT count(*) FROM visits"))]
    assert stage(tmp_path) == "proven"


def test_a_crashed_validate_only_saves_its_report(tmp_path, mongo_db, pg_database):
    path = make_job(tmp_path, mongo_db, pg_database)
    assert run_cli(path).returncode == 0
    before = len(reports(tmp_path))
    crashed = run_cli(path, "--validate-only", fault="crash:validate:1")
    assert crashed.returncode == 3
    saved = reports(tmp_path)
    assert len(saved) == before + 1
    assert (saved[-1]["mode"], saved[-1]["status"]) == ("validate", "failed")
    assert saved[-1]["message"] == "validation failed: RuntimeError: test fault 'crash:validate:1' fired"


def test_a_changed_mapping_after_the_proof_is_validated_again(tmp_path, mongo_db, pg_database):
    path = make_job(tmp_path, mongo_db, pg_database)
    assert run_cli(path).returncode == 0
    mapping = tmp_path / "patients.yaml"
    mapping.write_text(mapping.read_text() + "# a comment changes the file, not what it makes\n")
    cosmetic = run_cli(path)
    assert outcome(cosmetic) == (0, "succeeded"), cosmetic.stdout + cosmetic.stderr
    assert "changed since the last run: the mapping of mongo.patients" in cosmetic.stderr
    mapping.write_text(mapping.read_text().replace("      name: name\n", "      name: email\n", 1))
    changed = run_cli(path)
    report = saved_report(changed.stdout)
    assert (changed.returncode, report["status"]) == (1, "differences")
    assert report["message"] == "validation found differences in pg.patients"
    # a misspelt path maps to NULL on both sides: the checksums agree, validation's reading does not
    mapping.write_text(mapping.read_text().replace("      name: email\n", "      name: nmae\n", 1))
    misspelt = run_cli(path)
    report = saved_report(misspelt.stdout)
    assert (misspelt.returncode, report["status"]) == (1, "differences"), misspelt.stdout + misspelt.stderr
    assert report["message"] == ("validation found differences in pg.patients; mapped paths absent from all "
                                 f"30 records of mongo.patients: {mapping}:14:13: outputs[0].columns.name: "
                                 "`nmae`")
    mapping.write_text(mapping.read_text().replace("      name: nmae\n", "      name: name\n", 1))
    assert outcome(run_cli(path)) == (0, "succeeded")


def test_a_changed_mapping_while_loading_is_refused(tmp_path, mongo_db, pg_database):
    path = make_job(tmp_path, mongo_db, pg_database)
    assert run_cli(path, fault="kill:batch:2").returncode == -9
    mapping = tmp_path / "patients.yaml"
    mapping.write_text(mapping.read_text().replace("      name: name\n", "      name: email\n", 1))
    refused = run_cli(path)
    report = saved_report_on_disk(tmp_path)
    assert (refused.returncode, report["status"]) == (2, "bad job or mapping file")
    assert report["message"].startswith(
        "job verdicts: the mapping of mongo.patients changed since its records started moving")
    assert pg_scalar(pg_database, "SELECT count(*) FROM patients") == 10
    assert outcome(run_cli(path, "--full-refresh")) == (0, "succeeded")


@pytest.mark.parametrize("text", [
    "",
    "outputs: [\n",
    "!!python/object/apply:os.system [echo owned]\n",
    "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
], ids=["emptied", "truncated", "python-tag", "alias-bomb"])
def test_a_finished_job_still_checks_its_mapping_files(tmp_path, mongo_db, pg_database, text):
    path = make_job(tmp_path, mongo_db, pg_database)
    assert run_cli(path).returncode == 0
    (tmp_path / "patients.yaml").write_text(text)
    broken = run_cli(path)
    assert broken.returncode == 2, broken.stdout + broken.stderr
    assert "patients.yaml" in broken.stderr
    assert "owned" not in broken.stdout + broken.stderr


def test_a_missing_collection_is_an_error_naming_it(tmp_path, mongo_db, pg_database):
    mongo_db.patients.insert_many(patients(3))
    path = write_job(tmp_path, name="verdicts", database=mongo_db.name, collection="patient",
                     mapping=patients_mapping(tmp_path), pg_dsn=pg_database, dynamo=False, partitions=1)
    result = run_cli(path)
    assert result.returncode == 3, result.stdout + result.stderr
    assert (f"error: source 'mongo': collection 'patient' does not exist in database '{mongo_db.name}'; "
            "did you mean 'patients'?") in result.stderr
    assert saved_report_on_disk(tmp_path)["status"] == "failed"


def saved_report_on_disk(tmp_path) -> dict:
    return reports(tmp_path)[-1]


def test_without_validation_a_run_is_unproven_until_validate_only_proves_it(tmp_path, mongo_db, pg_database):
    path = make_job(tmp_path, mongo_db, pg_database, after_run=False)
    first = run_cli(path)
    report = saved_report(first.stdout)
    assert (first.returncode, report["status"]) == (4, "unproven")
    assert report["message"] == "the records moved and add up, but this run did not validate the targets"
    assert outcome(run_cli(path)) == (4, "unproven")
    assert outcome(run_cli(path, "--validate-only")) == (0, "succeeded")
    assert stage(tmp_path) == "proven"
    assert outcome(run_cli(path)) == (0, "nothing to do")


def test_a_limited_try_is_never_green(tmp_path, mongo_db, pg_database):
    path = make_job(tmp_path, mongo_db, pg_database)
    result = run_cli(path, "--limit", "4")
    report = saved_report(result.stdout)
    assert (result.returncode, report["status"]) == (4, "unproven")
    assert report["tables"][0]["extracted"] == 4


def dump_job(tmp_path, pg_database, *, on_corrupt: str, max_rejects: int = 0, damaged: int = 12):
    """30 patients in a mongodump file whose document `damaged` has its length field zeroed."""
    import bson

    documents = [bson.encode(d) for d in patients(RECORDS)]
    offset = sum(len(d) for d in documents[:damaged])
    data = bytearray(b"".join(documents))
    data[offset:offset + 4] = (0).to_bytes(4, "little")
    folder = tmp_path / "dump" / "clinic"
    folder.mkdir(parents=True)
    (folder / "patients.bson").write_bytes(bytes(data))
    mapping = patients_mapping(tmp_path)
    path = tmp_path / "verdicts.yaml"
    path.write_text(f"""\
version: 1
name: verdicts
sources:
  dump:
    type: mongodump
    path: {tmp_path / 'dump'}
    database: clinic
    on_corrupt: {on_corrupt}
    tables:
      patients: {{mapping: {mapping.name}, partitions: 1, check_sample: 5}}
targets:
  pg: {{type: postgres, dsn: "{pg_database}", schema: public, create: if_missing}}
batch: {{records: 5}}
parallelism: 1
max_rejects: {max_rejects}
report: {{dir: .etl/reports}}
""")
    return path, offset, offset + len(documents[damaged])


def test_a_damaged_dump_is_read_past_its_damage_and_the_damage_counts_as_a_reject(tmp_path, pg_database):
    path, start, end = dump_job(tmp_path, pg_database, on_corrupt="deadletter")
    first = run_cli(path)
    report = saved_report(first.stdout)
    assert (first.returncode, report["status"]) == (3, "failed"), first.stdout + first.stderr
    extracted = report["tables"][0]["extracted"]
    assert report["message"].startswith(f"too many rejected records: 1 of {extracted} ")
    second = run_cli(path)  # reads what the stop left, and judges the policy again
    report = saved_report(second.stdout)
    assert (second.returncode, report["status"]) == (3, "failed"), second.stdout + second.stderr
    table = report["tables"][0]
    # 29 intact documents, all read (the 17 after the damage too), and the damaged range as one reject
    assert (table["extracted"], table["loaded"], table["rejected"]) == (30, 29, 1)
    assert report["message"].startswith("too many rejected records: 1 of 30 extracted")
    assert pg_scalar(pg_database, "SELECT count(*) FROM patients") == 29
    assert pg_scalar(pg_database, "SELECT max(patient_id) FROM patients") == 30
    lines = (tmp_path / ".etl" / "dead_letter.jsonl").read_text().splitlines()
    letters = [json.loads(line) for line in lines]
    assert [letter["source_key"] for letter in letters] == [f"patients.bson@{start}-{end}"]
    assert letters[0]["reason"].startswith(f"implausible document length 0 at byte offset {start} of ")
    path.write_text(path.read_text().replace("max_rejects: 0", "max_rejects: 1"))
    allowed = run_cli(path)
    report = saved_report(allowed.stdout)
    assert (allowed.returncode, report["status"]) == (0, "succeeded"), allowed.stdout + allowed.stderr
    assert [(c["table"], c["ok"], c["rows_source"], c["rows_target"]) for c in report["validation"]][0] == (
        "patients", True, 29, 29)


def test_a_damaged_dump_with_on_corrupt_error_reports_what_was_written(tmp_path, pg_database):
    path, start, _ = dump_job(tmp_path, pg_database, on_corrupt="error")
    result = run_cli(path)
    report = saved_report(result.stdout)
    assert (result.returncode, report["status"]) == (3, "failed")
    assert f"patients.bson: implausible document length 0 at byte offset {start}" in report["message"]
    table = report["tables"][0]
    # the 12 documents before the damage were written and checkpointed: the report says so
    assert (table["extracted"], table["loaded"]) == (12, 12)
    assert pg_scalar(pg_database, "SELECT count(*) FROM patients") == 12


def test_a_record_the_load_never_saw_is_found_by_the_source_count(tmp_path, mongo_db, pg_database):
    path = make_job(tmp_path, mongo_db, pg_database)
    assert run_cli(path).returncode == 0
    mongo_db.patients.insert_one(patients(1, start=31)[0])
    found = run_cli(path, "--validate-only")
    report = saved_report(found.stdout)
    assert (found.returncode, report["status"]) == (1, "differences")
    assert report["message"] == ("validation found differences in pg.patients, pg.visits; "
                                 "source mongo.patients holds 31 records by its own count, but the load "
                                 "extracted 30")
    assert report["sources"] == [{"table": "mongo.patients", "counted": 31, "read": 31, "extracted": 30,
                                  "ok": False, "problem": "source mongo.patients holds 31 records by its own "
                                  "count, but the load extracted 30"}]
    assert "| mongo.patients | 31 | 31 | 30 | INCOMPLETE |" in found.stdout


def test_a_record_a_target_refused_is_a_reject_in_validation_not_a_missing_row(tmp_path, mongo_db,
                                                                               pg_database):
    path = make_job(tmp_path, mongo_db, pg_database, max_rejects="1")
    mongo_db.patients.update_one({"_id": 7}, {"$set": {"name": "nul\x00byte"}})
    result = run_cli(path)
    report = saved_report(result.stdout)
    assert (result.returncode, report["status"]) == (0, "succeeded"), result.stdout + result.stderr
    table = report["tables"][0]
    assert (table["extracted"], table["loaded"], table["rejected"]) == (30, 29, 1)
    checks = {c["table"]: (c["ok"], c["rows_source"], c["rows_target"], c["missing"], c["rejected"])
              for c in report["validation"]}
    visits = pg_scalar(pg_database, "SELECT count(*) FROM visits")
    assert checks == {"patients": (True, 29, 29, 0, 1), "visits": (True, visits, visits, 0, 0)}
    lines = (tmp_path / ".etl" / "dead_letter.jsonl").read_text().splitlines()
    letter = json.loads(lines[0])
    assert (len(lines), letter["source_key"], letter["stage"], letter["target"]) == (
        1, "_id=7", "load", "pg.patients")
    # a full refresh starts a new generation: the old dead letter no longer counts once the record is fixed
    mongo_db.patients.update_one({"_id": 7}, {"$set": {"name": "patient 7"}})
    refreshed = run_cli(path, "--full-refresh")
    report = saved_report(refreshed.stdout)
    assert (refreshed.returncode, report["status"]) == (0, "succeeded")
    checks = {c["table"]: (c["ok"], c["rows_source"], c["rows_target"], c["rejected"])
              for c in report["validation"]}
    assert checks["patients"] == (True, 30, 30, 0)
