"""A source key that is itself PII (a table keyed by email): when the mapping declares the key field PII,
the key text of rejects and of rows (what dead letters, load rejects and validation use) is taken from
the transformed value (`apply` and `apply_by_record` alike); without such a rule the key text is unchanged."""

from __future__ import annotations

import hashlib
import hmac

from etl.engine.control import RunControl
from etl.engine.worker import PartitionWork, PartitionWorker
from etl.mapping import compile_mapping, parse_mapping
from etl.state.sqlite import Config as SqliteConfig
from etl.state.sqlite import open_store
from tests.unit.engine_fakes import DictSink, ListSource, MemoryDeadLetters, records

MAPPING = """\
source:
  key: [email]
targets: {{pg: postgres}}
pii:
  email: {rule}
  phone: {{mask: 4}}
outputs:
  - target: pg
    table: people
    key: [email]
    columns:
      email: {{from: email, type: string}}
      phone: {{from: phone, type: string}}
      age: {{from: age, type: int}}
"""


def mapping(rule: str = '{hmac: "${secret:k}"}'):
    spec = parse_mapping(MAPPING.format(rule=rule), "m.yaml", resolve=lambda text, where: "key")
    return compile_mapping(spec)


def key_text(record: dict) -> str:
    return f"email={record['email']}"


def digest(text: str) -> str:
    return hmac.new(b"key", text.encode(), hashlib.sha256).hexdigest()


RECORDS = [
    {"email": "ann@patients.example", "phone": "555-0101", "age": 40},
    {"email": "bob@patients.example", "phone": "555-0102", "age": "not a number"},
]


def test_a_pii_key_is_transformed_in_reject_and_row_keys():
    compiled = mapping()
    for batch in (compiled.apply(RECORDS, key_text), compiled.apply_by_record(RECORDS, key_text)):
        [(table, rows)] = batch.rows.items()
        assert rows.source_keys == [f"email={digest('ann@patients.example')}"]
        assert [(r.source_key, r.field_path, r.record["email"]) for r in batch.rejects] == [
            (f"email={digest('bob@patients.example')}", "age", digest("bob@patients.example"))]
        assert "patients.example" not in repr(rows.source_keys) + repr([r.source_key for r in batch.rejects])
    assert compiled.keyed(key_text)(RECORDS[0]) == f"email={digest('ann@patients.example')}"


def test_a_key_whose_pii_transform_fails_is_withheld():
    compiled = mapping("year")  # an email is no date: the transform fails and the record is rejected
    batch = compiled.apply([RECORDS[0]], key_text)
    assert [(r.source_key, r.field_path) for r in batch.rejects] == [
        ("<key withheld: its PII transform failed>", "email")]


def test_without_a_pii_rule_on_the_key_the_key_text_is_the_sources():
    compiled = compile_mapping(parse_mapping(MAPPING.format(rule="drop").replace("  email: drop\n", ""),
                                             "m.yaml", resolve=lambda text, where: "key"))
    assert compiled.keyed(key_text) is key_text
    batch = compiled.apply(RECORDS, key_text)
    assert [r.source_key for r in batch.rejects] == ["email=bob@patients.example"]


WORKER_MAPPING = """\
source:
  key: [_id]
targets: {mem: postgres}
pii:
  _id: {hmac: "${secret:k}"}
outputs:
  - target: mem
    table: parents
    key: [id]
    columns:
      id: {from: _id, type: string}
      value: {from: value, type: int}
"""


class RawDeadLetters(MemoryDeadLetters):
    keeps_raw = True


def test_the_worker_attaches_raw_records_to_rejects_keyed_by_the_transformed_key(tmp_path):
    """With a store that seals raw records, map and load rejects carry the record as the source gave it,
    matched by the (transformed) key they carry; an extract reject has none."""
    compiled = compile_mapping(parse_mapping(WORKER_MAPPING, "m.yaml", resolve=lambda text, where: "key"))
    data = records(6)
    data[1]["value"] = "abc"   # _id 2: map reject
    data[2]["value"] = -1      # _id 3: load reject
    data[3]["corrupt"] = True  # _id 4: extract reject
    source = ListSource("src", {"items": data}, batch_size=10)
    dead = RawDeadLetters()
    store = open_store(SqliteConfig(), base_dir=tmp_path)
    try:
        sinks = {"mem": DictSink("mem", compiled.tables)}
        worker = PartitionWorker(job="j", source=source, mapping=compiled, sinks=sinks, dead_letters=dead,
                                 store=store, control=RunControl(max_in_flight=2))
        worker.run(PartitionWork(source.plan("items", 1)[0]))
    finally:
        store.close()
    assert sorted((r.stage, r.source_key, r.raw) for r in dead.written) == [
        ("extract", "_id=4", None),
        ("load", f"_id={digest('3')}", data[2]),
        ("map", f"_id={digest('2')}", data[1]),
    ]
