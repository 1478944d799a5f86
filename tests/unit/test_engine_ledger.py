"""The ledger (etl/engine/ledger.py): every row a record made before and no longer makes is deleted,
whatever the reason — a shrunk array, a changed key, a delete, a filter, a refusal — and replaying
a batch after a crash changes nothing."""

from __future__ import annotations

from etl.engine.ledger import Ledger
from etl.records import Column, TableRows, TableSpec
from etl.state.sqlite import Config, open_store
from tests.unit.engine_fakes import DictSink

ITEMS = TableSpec("mem", "items", ("pk", "sk"), (Column("pk", "string"), Column("sk", "string")))
CHILD = TableSpec("pg", "visits", ("visit_id",), (Column("visit_id", "int"),), parent="patients",
                  parent_key=("patient_id",))
PATIENTS = TableSpec("pg", "patients", ("patient_id",), (Column("patient_id", "int"),))


class ReplacingSink(DictSink):
    replaces_children = True


def made(*items: tuple[str, str, str]) -> dict:
    """Rows of ITEMS: (source key text, pk, sk)."""
    rows = TableRows([{"pk": pk, "sk": sk} for _, pk, sk in items], [key for key, _, _ in items])
    return {("mem", "items"): rows}


def setup(tmp_path):
    store = open_store(Config(), base_dir=tmp_path)
    sink = DictSink("mem", [ITEMS])
    return store, sink, Ledger(store, "job", "mongo.patients", [ITEMS], {"mem": sink})


def write(sink: DictSink, rows: dict) -> None:
    sink.write({table: batch for (_, table), batch in rows.items()})


def test_a_shrunk_array_loses_the_items_of_its_gone_elements(tmp_path):
    store, sink, ledger = setup(tmp_path)
    first = made(("_id=1", "P#1", "PROFILE"), ("_id=1", "P#1", "V#1"), ("_id=1", "P#1", "V#2"),
                 ("_id=2", "P#2", "PROFILE"))
    write(sink, first)
    assert ledger.settle({"_id=1": 1, "_id=2": 2}, first).rows_deleted == 0
    shrunk = made(("_id=1", "P#1", "PROFILE"), ("_id=1", "P#1", "V#1"))
    write(sink, shrunk)
    assert ledger.settle({"_id=1": 1}, shrunk).rows_deleted == 1
    assert sorted(sink.tables["items"]) == [("P#1", "PROFILE"), ("P#1", "V#1"), ("P#2", "PROFILE")]
    assert store.ledger_get("job", "mongo.patients", ["_id=1"]) == {
        "_id=1": {"k": 1, "r": {"mem.items": [["P#1", "PROFILE"], ["P#1", "V#1"]]}}}


def test_a_changed_key_deletes_the_row_under_the_old_key(tmp_path):
    _, sink, ledger = setup(tmp_path)
    before = made(("_id=1", "EMAIL#a@x", "PROFILE"))
    write(sink, before)
    ledger.settle({"_id=1": 1}, before)
    after = made(("_id=1", "EMAIL#b@x", "PROFILE"))
    write(sink, after)
    assert ledger.settle({"_id=1": 1}, after).rows_deleted == 1
    assert list(sink.tables["items"]) == [("EMAIL#b@x", "PROFILE")]


def test_deleted_filtered_and_refused_records_lose_every_row_and_their_entry(tmp_path):
    store, sink, ledger = setup(tmp_path)
    rows = made(("_id=1", "P#1", "PROFILE"), ("_id=1", "P#1", "V#1"), ("_id=2", "P#2", "PROFILE"),
                ("_id=3", "P#3", "PROFILE"), ("_id=4", "P#4", "PROFILE"))
    write(sink, rows)
    ledger.settle({"_id=1": 1, "_id=2": 2, "_id=3": 3, "_id=4": 4}, rows)
    # _id=1 deleted at the source, _id=2 now filtered out (a record with no rows), _id=3 refused by a sink
    settled = ledger.settle({"_id=2": 2}, {}, ["_id=1", "_id=3"])
    assert settled.rows_deleted == 4
    assert list(sink.tables["items"]) == [("P#4", "PROFILE")]
    left = store.ledger_get("job", "mongo.patients", ["_id=1", "_id=2", "_id=3", "_id=4"])
    assert sorted(left) == ["_id=4"]


def test_replaying_a_batch_after_a_crash_deletes_nothing_more(tmp_path):
    store, sink, ledger = setup(tmp_path)
    first = made(("_id=1", "P#1", "PROFILE"), ("_id=1", "P#1", "V#1"), ("_id=1", "P#1", "V#2"))
    write(sink, first)
    ledger.settle({"_id=1": 1}, first)
    shrunk = made(("_id=1", "P#1", "PROFILE"))
    write(sink, shrunk)
    assert ledger.settle({"_id=1": 1}, shrunk).rows_deleted == 2
    write(sink, shrunk)  # the same batch again, as after a crash before its checkpoint
    assert ledger.settle({"_id=1": 1}, shrunk).rows_deleted == 0
    assert list(sink.tables["items"]) == [("P#1", "PROFILE")]
    assert ledger.forget(["_id=1"]).rows_deleted == 1
    assert sink.tables["items"] == {} and store.ledger_page("job", "mongo.patients", None, 10) == ([], None)


def test_child_rows_a_sink_replaces_with_their_parent_are_not_kept(tmp_path):
    store = open_store(Config(), base_dir=tmp_path)
    sink = ReplacingSink("pg", [PATIENTS, CHILD])
    ledger = Ledger(store, "job", "mongo.patients", [PATIENTS, CHILD], {"pg": sink})
    rows = {("pg", "patients"): TableRows([{"patient_id": 1}], ["_id=1"]),
            ("pg", "visits"): TableRows([{"visit_id": 10, "patient_id": 1},
                                         {"visit_id": 11, "patient_id": 1}], ["_id=1", "_id=1"])}
    ledger.settle({"_id=1": 1}, rows)
    kept = store.ledger_get("job", "mongo.patients", ["_id=1"])
    assert kept == {"_id=1": {"k": 1, "r": {"pg.patients": [[1]]}}}


def test_a_re_read_marks_every_entry_it_writes(tmp_path):
    store, sink, _ = setup(tmp_path)
    marked = Ledger(store, "job", "mongo.patients", [ITEMS], {"mem": sink}, mark="m2")
    rows = made(("_id=1", "P#1", "PROFILE"))
    write(sink, rows)
    marked.settle({"_id=1": 1}, rows)
    assert store.ledger_get("job", "mongo.patients", ["_id=1"])["_id=1"]["m"] == "m2"
