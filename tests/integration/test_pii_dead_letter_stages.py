"""A dead letter holds PII fields only as the mapping transforms them, at every stage: a real run
(MongoDB -> PostgreSQL) with documents rejected at extract (a date Python cannot hold), at the
mapping (a PII field that cannot be transformed, a PII path through a value of the wrong shape, a
bad non-PII field) and at load (text PostgreSQL refuses). Planted raw values appear in no dead
letter, report, log or target."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
from pathlib import Path

import bson
import psycopg
import pytest
from bson.datetime_ms import DatetimeMS
from bson.decimal128 import Decimal128

from etl.sinks.deadletter import read_dead_letters
from etl.sinks.deadletter_seal import LocalKeys
from tests.conftest import MONGO_URI
from tests.integration.run_helpers import HMAC_KEY, ROOT, command, environment, saved_report

pytestmark = pytest.mark.integration

MAPPING = """\
version: 1
source:
  key: [_id]
targets:
  pg: postgres
pii:
  email: {hmac: "${env:ETL_DEMO_HMAC_KEY}"}
  phone: {mask: 4}
  ssn: redact
  birth_date: year
  contacts[].email: {hmac: "${env:ETL_DEMO_HMAC_KEY}"}
outputs:
  - target: pg
    table: patients
    key: [patient_id]
    columns:
      patient_id: {from: _id, type: int}
      name: name
      email_hmac: {from: email, required: true}
      phone: phone
      ssn: ssn
      birth_year: {from: birth_date, type: int}
      contacts: {from: contacts, type: json}
      balance: {from: balance, type: "decimal(12,2)", required: true}
"""


def job_text(source: str, dsn: str, extra: str = "") -> str:
    return f"""\
version: 1
name: pii_stages
sources:
  mongo:
{source}
    tables:
      patients: {{mapping: patients.yaml, partitions: 1}}
targets:
  pg: {{type: postgres, dsn: "{dsn}", create: if_missing}}
max_rejects: "90%"
validation: {{after_run: true, consistent_reads: true}}
{extra}"""


def raw(n: int) -> dict:
    return {"email": f"raw.email.{n}@patients.example", "phone": f"+1-555-77{n:02d}-{n:04d}",
            "ssn": f"RAW-SSN-{n:03d}-99"}


def planted() -> list[str]:
    values = [value for n in range(1, 8) for value in raw(n).values()]
    return values + ["raw-birth-text-1957", "raw.contact@patients.example",
                     "raw.contact.text@patients.example", "+1-555-77", "RAW-SSN"]


def leaks(data: bytes) -> list[str]:
    return [value for value in planted() if value.encode() in data]


def digest(text: str) -> str:
    return hmac.new(HMAC_KEY.encode(), text.encode(), hashlib.sha256).hexdigest()


def test_no_dead_letter_holds_a_raw_pii_value_at_any_stage(tmp_path, mongo_db, pg_database):
    good = {"name": "fine", "birth_date": "1980-02-03", "contacts": [], "balance": Decimal128("1.25")}
    documents = [
        {"_id": 1, **raw(1), **good},
        {"_id": 3, **raw(3), **good, "birth_date": "raw-birth-text-1957"},  # map: the PII field is bad
        {"_id": 4, **raw(4), **good, "contacts": {"email": "raw.contact@patients.example"}},  # map: shape
        {"_id": 5, **raw(5), **good, "contacts": ["raw.contact.text@patients.example"]},  # map: shape
        {"_id": 6, **raw(6), **good, "balance": "not a number"},  # map: a non-PII field is bad
        {"_id": 7, **raw(7), **good, "name": "nul\x00name"},  # load: PostgreSQL refuses NUL in text
    ]
    mongo_db.patients.insert_many(documents)
    source = f'    type: mongo\n    uri: "{MONGO_URI}"\n    database: {mongo_db.name}'
    done = run(tmp_path, source, pg_database)
    table = saved_report(done.stdout)["tables"][0]
    assert (table["extracted"], table["loaded"], table["rejected"]) == (6, 1, 5)

    seen = dead_letters(tmp_path)
    masked = {n: {"email": digest(raw(n)["email"]), "phone": "*" * 12 + raw(n)["phone"][-4:],
                  "ssn": "[REDACTED]"} for n in range(1, 8)}
    assert seen == {
        "_id=3": ("map", "birth_date", "str",
                  "pii `year` cannot apply: year-only needs a date, a timestamp or ISO date text",
                  {"_id": 3, **masked[3], "name": "fine", "contacts": [], "balance": "1.25"}),
        "_id=4": ("map", "contacts[].email", "dict",
                  "pii `hmac` cannot apply: the path meets a dict where it needs a list",
                  {"_id": 4, **masked[4], "name": "fine", "birth_date": 1980, "balance": "1.25"}),
        "_id=5": ("map", "contacts[].email", "str",
                  "pii `hmac` cannot apply: the path meets a str where it needs a map",
                  {"_id": 5, **masked[5], "name": "fine", "birth_date": 1980, "contacts": [None],
                   "balance": "1.25"}),
        "_id=6": ("map", "balance", "str", "`balance` as decimal(12,2): the text is not a number",
                  {"_id": 6, **masked[6], "name": "fine", "birth_date": 1980, "contacts": [],
                   "balance": "not a number"}),
        "_id=7": ("load", "name", "str",
                  "column 'name': PostgreSQL text cannot hold the NUL character U+0000",
                  {"patient_id": 7, "name": "nul\x00name", "email_hmac": masked[7]["email"],
                   "phone": masked[7]["phone"], "ssn": "[REDACTED]", "birth_year": 1980, "contacts": [],
                   "balance": "1.25"}),
    }

    assert_no_leak(tmp_path, done, pg_database)


def test_an_extract_reject_holds_no_raw_pii_value(tmp_path, pg_database):
    """(The local server refuses to store a date outside years 1-9999, so the document comes from a
    mongodump file, read by the mongodump source.)"""
    good = {"name": "fine", "birth_date": "1980-02-03", "contacts": [], "balance": Decimal128("1.25")}
    documents = [{"_id": 1, **raw(1), **good},
                 {"_id": 2, **raw(2), **good, "birth_date": DatetimeMS(253402300800000)}]  # year 10000
    (tmp_path / "dump" / "clinic").mkdir(parents=True)
    (tmp_path / "dump" / "clinic" / "patients.bson").write_bytes(b"".join(bson.encode(d) for d in documents))
    done = run(tmp_path, f"    type: mongodump\n    path: {json.dumps(str(tmp_path / 'dump'))}\n"
                         "    database: clinic", pg_database)
    table = saved_report(done.stdout)["tables"][0]
    assert (table["extracted"], table["loaded"], table["rejected"]) == (2, 1, 1)
    assert dead_letters(tmp_path) == {
        "_id=2": ("extract", "birth_date", "date",
                  "BSON date outside the range Python can hold (years 1 to 9999); "
                  "fix the value at the source or exclude the document with `query`", None),
    }
    assert_no_leak(tmp_path, done, pg_database)


def test_raw_records_kept_encrypted_open_with_the_key_and_appear_nowhere_in_plaintext(tmp_path, pg_database):
    """`dead_letter: {raw: encrypted, key_file: ...}` on a real run (mongodump -> PostgreSQL): each map
    and load reject's dead letter holds the transformed record and the raw one sealed; no planted value
    is in any file, and the key file opens the raw records exactly as the dump holds them."""
    good = {"name": "fine", "birth_date": "1980-02-03", "contacts": [], "balance": Decimal128("1.25")}
    documents = [{"_id": 1, **raw(1), **good},
                 {"_id": 3, **raw(3), **good, "birth_date": "raw-birth-text-1957"},
                 {"_id": 6, **raw(6), **good, "balance": "not a number"},
                 {"_id": 7, **raw(7), **good, "name": "nul\x00name"}]
    (tmp_path / "dump" / "clinic").mkdir(parents=True)
    (tmp_path / "dump" / "clinic" / "patients.bson").write_bytes(b"".join(bson.encode(d) for d in documents))
    (tmp_path / "dl.key").write_bytes(bytes(range(32)))
    done = run(tmp_path, f"    type: mongodump\n    path: {json.dumps(str(tmp_path / 'dump'))}\n"
                         "    database: clinic", pg_database,
               "dead_letter: {raw: encrypted, key_file: dl.key}\n")
    table = saved_report(done.stdout)["tables"][0]
    assert (table["extracted"], table["loaded"], table["rejected"]) == (4, 1, 3)
    assert_no_leak(tmp_path, done, pg_database)

    keys = LocalKeys(tmp_path / "dl.key")
    letters = list(read_dead_letters(tmp_path / ".etl" / "dead_letter.jsonl", keys=keys))
    assert {letter["source_key"]: (letter["stage"], letter["raw"]) for letter in letters} == {
        "_id=3": ("map", {"_id": 3, **raw(3), "name": "fine", "birth_date": "raw-birth-text-1957",
                          "contacts": [], "balance": "1.25"}),
        "_id=6": ("map", {"_id": 6, **raw(6), "name": "fine", "birth_date": "1980-02-03", "contacts": [],
                          "balance": "not a number"}),
        "_id=7": ("load", {"_id": 7, **raw(7), "name": "nul\x00name", "birth_date": "1980-02-03",
                           "contacts": [], "balance": "1.25"}),
    }
    assert [letter["record"]["ssn"] for letter in letters] == ["[REDACTED]"] * 3


def run(folder: Path, source: str, dsn: str, extra: str = "") -> subprocess.CompletedProcess:
    (folder / "patients.yaml").write_text(MAPPING)
    job = folder / "pii_stages.yaml"
    job.write_text(job_text(source, dsn, extra))
    done = subprocess.run(command(job, "--debug"), capture_output=True, text=True, timeout=300,
                          env=environment(), cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def dead_letters(folder: Path) -> dict[str, tuple]:
    """source key -> (stage, field_path, value_type, reason, record) of every dead letter."""
    letters = [json.loads(line) for line in (folder / ".etl" / "dead_letter.jsonl").read_text().splitlines()]
    return {letter["source_key"]: (letter["stage"], letter["field_path"], letter["value_type"],
                                   letter["reason"], letter["record"]) for letter in letters}


def assert_no_leak(folder: Path, done: subprocess.CompletedProcess, dsn: str) -> None:
    assert leaks(done.stdout.encode() + done.stderr.encode()) == []
    written = [path for path in folder.rglob("*") if path.is_file() and path.parent.name != "clinic"
               and path.suffix != ".yaml"]
    assert {path.relative_to(folder).as_posix() for path in written} >= {".etl/dead_letter.jsonl",
                                                                         ".etl/audit.jsonl"}
    for path in written:
        assert leaks(path.read_bytes()) == [], path
    with psycopg.connect(dsn) as connection:
        (text,) = connection.execute("SELECT string_agg(p::text, '|') FROM patients p").fetchone()
    assert leaks(text.encode()) == []
    assert text.startswith("(1,fine,")
