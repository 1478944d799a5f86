"""Differential runs: change streams (with resume tokens), watermark field, new `_id`s."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import uuid
from decimal import Decimal
from functools import partial
from pathlib import Path

import bson
import pymongo
import pytest
from bson import Decimal128, Int64
from bson.binary import Binary
from bson.datetime_ms import DatetimeMS
from pydantic import ValidationError

from etl.errors import EtlError
from etl.sources.base import BatchLimits, ChangeCapture
from etl.sources.mongo import Config, open_source
from tests.conftest import MONGO_URI, free_port

pytestmark = pytest.mark.integration
UTC = datetime.UTC


def source_for(db, limits=BatchLimits(), **table):
    config = Config(type="mongo", uri=MONGO_URI, database=db.name,
                    tables={"things": {"mapping": "m.yaml", **table}})
    return open_source("src", config, limits)


def apply(batches) -> tuple[dict, list]:
    """What a target would hold after the batches: upserted documents and deleted keys."""
    state: dict = {}
    deleted: list = []
    for batch in batches:
        for record in batch.records:
            state[record["_id"]] = record
        for key in batch.deletes:
            state.pop(key["_id"], None)
            deleted.append(key["_id"])
    return state, deleted


def make_changes(collection):
    collection.insert_many([{"_id": n, "v": 0} for n in (1, 2, 3)])  # inserts
    collection.update_one({"_id": 1}, {"$set": {"v": 1}})  # update
    collection.replace_one({"_id": 2}, {"v": 2, "replaced": True})  # replace
    collection.delete_one({"_id": 3})  # delete
    collection.insert_one({"_id": 4, "v": 4})


def test_change_stream_sees_every_kind_of_change_once(mongo_db):
    mongo_db.things.insert_one({"_id": 0, "v": "before"})
    source = source_for(mongo_db, changes="change_stream")
    position = source.change_position("things")
    assert position["mode"] == "change_stream" and position["token"]["_data"]
    make_changes(mongo_db.things)
    batches = list(source.changes("things", position))
    state, deleted = apply(batches)
    assert state == {1: {"_id": 1, "v": 1}, 2: {"_id": 2, "v": 2, "replaced": True}, 4: {"_id": 4, "v": 4}}
    assert deleted == [3]
    keys = [r["_id"] for b in batches for r in b.records] + [d["_id"] for b in batches for d in b.deletes]
    assert sorted(keys) == [1, 2, 3, 4]  # each key once, its last state
    again = list(source.changes("things", batches[-1].resume_after))
    assert again == []  # nothing new since the stored token


def test_change_stream_resumes_from_a_batch_token(mongo_db):
    source = source_for(mongo_db, limits=BatchLimits(records=2), changes="change_stream")
    position = source.change_position("things")
    mongo_db.things.insert_many([{"_id": n} for n in range(7)])
    mongo_db.things.delete_one({"_id": 6})
    batches = list(source.changes("things", position))
    assert [len(b.records) + len(b.deletes) for b in batches] == [2, 2, 2, 1]
    resumed = list(source.changes("things", batches[1].resume_after))
    assert apply(resumed) == ({4: {"_id": 4}, 5: {"_id": 5}}, [6])
    assert apply(batches[:2] + resumed) == apply(batches)


def test_change_stream_projection_keeps_id_and_fields(mongo_db):
    source = source_for(mongo_db, changes="change_stream")
    position = source.change_position("things")
    mongo_db.things.insert_one({"_id": 1, "name": "x", "email": "a@b.c"})
    (batch,) = source.changes("things", position, fields=["name"])
    assert batch.records == [{"_id": 1, "name": "x"}]


def test_watermark_field_finds_inserts_and_updates_once(mongo_db):
    day = datetime.datetime(2025, 1, 1, tzinfo=UTC)
    mongo_db.things.insert_many([{"_id": n, "updated_at": day} for n in range(3)])
    source = source_for(mongo_db, limits=BatchLimits(records=2), changes="watermark",
                        watermark_field="updated_at")
    position = source.change_position("things")
    assert position["mode"] == "watermark"
    later = day + datetime.timedelta(hours=1)
    mongo_db.things.update_one({"_id": 1}, {"$set": {"v": 1, "updated_at": later}})
    mongo_db.things.insert_many([{"_id": n, "updated_at": later} for n in (5, 6, 7)])
    batches = list(source.changes("things", position))
    assert [r["_id"] for b in batches for r in b.records] == [1, 5, 6, 7]
    assert list(source.changes("things", batches[0].resume_after))[0].records[0]["_id"] == 6
    assert list(source.changes("things", batches[-1].resume_after)) == []


def test_new_ids_as_last_resort(mongo_db):
    mongo_db.things.insert_many([{"_id": n} for n in range(3)])
    source = source_for(mongo_db, changes="new_ids")
    position = source.change_position("things")
    mongo_db.things.insert_many([{"_id": n} for n in range(3, 6)])
    batches = list(source.changes("things", position))
    assert [r["_id"] for b in batches for r in b.records] == [3, 4, 5]
    assert list(source.changes("things", batches[-1].resume_after)) == []


def test_auto_picks_change_streams_on_this_server(mongo_db):
    mongo_db.things.insert_one({"_id": 1})
    assert source_for(mongo_db).change_position("things")["mode"] == "change_stream"


# -- the source contract for incremental runs (etl/sources/base.py, ChangeSource) -----------------

def through_json(value):
    """What the engine's state store gives back: the value written with json.dumps, read with json.loads."""
    return json.loads(json.dumps(value))


def at_time(text: str) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(text)
    assert moment.utcoffset() == datetime.timedelta(0)
    return moment


def test_change_stream_positions_round_trip_through_json_and_resume(mongo_db):
    mongo_db.things.insert_one({"_id": 0})
    source = source_for(mongo_db, limits=BatchLimits(records=1), changes="change_stream")
    position = source.change_position("things")
    assert set(position) == {"mode", "token", "at"} and set(position["token"]) == {"_data"}
    assert through_json(position) == position
    at_time(position["at"])
    mongo_db.things.insert_many([{"_id": 1}, {"_id": 2}])
    first, second = source.changes("things", through_json(position))
    assert (first.records, second.records) == ([{"_id": 1}], [{"_id": 2}])
    assert through_json(first.resume_after) == first.resume_after
    assert first.resume_after["at"] == first.at and first.resume_after["token"] != position["token"]
    (resumed,) = source.changes("things", through_json(first.resume_after))
    assert resumed.records == [{"_id": 2}] and resumed.resume_after == second.resume_after
    assert list(source.changes("things", through_json(second.resume_after))) == []


def test_watermark_and_new_id_positions_round_trip_through_json(mongo_db):
    day = datetime.datetime(2025, 1, 1, tzinfo=UTC)
    mongo_db.things.insert_one({"_id": bson.ObjectId("5f1d7a2b9c8e4d3a2b1c0f9e"), "updated_at": day})
    watermark = source_for(mongo_db, changes="watermark", watermark_field="updated_at")
    ids = source_for(mongo_db, changes="new_ids")
    marks, news = watermark.change_position("things"), ids.change_position("things")
    assert through_json(marks) == marks and through_json(news) == news
    assert marks["after"] == ('[{"$date": {"$numberLong": "1735689600000"}}, '
                              '{"$oid": "5f1d7a2b9c8e4d3a2b1c0f9e"}]').join(('{"v": ', "}"))
    assert news["after"] == '{"v": {"$oid": "5f1d7a2b9c8e4d3a2b1c0f9e"}}'
    at_time(marks["at"]), at_time(news["at"])
    later = day + datetime.timedelta(hours=1)
    mongo_db.things.insert_one({"_id": bson.ObjectId("5f1d7a2b9c8e4d3a2b1c0f9f"), "updated_at": later})
    (changed,) = watermark.changes("things", through_json(marks))
    assert changed.kinds == {"upsert": 1} and changed.at == "2025-01-01T01:00:00+00:00"
    assert through_json(changed.resume_after) == changed.resume_after
    assert list(watermark.changes("things", through_json(changed.resume_after))) == []
    (inserted,) = ids.changes("things", through_json(news))
    assert inserted.kinds == {"insert": 1} and inserted.at is None
    assert [r["_id"] for r in inserted.records] == ["5f1d7a2b9c8e4d3a2b1c0f9f"]
    assert list(ids.changes("things", through_json(inserted.resume_after))) == []


def test_every_kind_of_change_is_counted_per_key_carried(mongo_db):
    mongo_db.things.insert_many([{"_id": 0, "v": 0}, {"_id": 10, "v": 0}, {"_id": 11, "v": 0}])
    source = source_for(mongo_db, changes="change_stream")
    position = source.change_position("things")
    mongo_db.things.update_one({"_id": 0}, {"$set": {"v": 1}})  # update of a loaded record
    mongo_db.things.replace_one({"_id": 10}, {"w": 1})  # replace: an update
    mongo_db.things.delete_one({"_id": 11})  # delete of a loaded record
    mongo_db.things.insert_one({"_id": 1, "v": 0})
    mongo_db.things.update_one({"_id": 1}, {"$set": {"v": 2}})  # first seen as an insert: stays one
    mongo_db.things.insert_one({"_id": 2})
    mongo_db.things.delete_one({"_id": 2})  # inserted and deleted: the full load may have read it
    (batch,) = source.changes("things", position)
    assert batch.kinds == {"update": 2, "delete": 2, "insert": 1}
    assert sorted(batch.records, key=lambda r: r["_id"]) == [
        {"_id": 0, "v": 1}, {"_id": 1, "v": 2}, {"_id": 10, "w": 1}]
    assert sorted(d["_id"] for d in batch.deletes) == [2, 11]
    assert at_time(batch.at) >= at_time(position["at"])


def test_an_update_of_a_document_deleted_since_is_left_to_its_delete(mongo_db):
    mongo_db.things.insert_many([{"_id": 5}, {"_id": 6}])
    source = source_for(mongo_db, limits=BatchLimits(records=1), changes="change_stream")
    position = source.change_position("things")
    mongo_db.things.update_one({"_id": 5}, {"$set": {"v": 1}})  # looked up after the delete: no document
    mongo_db.things.delete_one({"_id": 5})
    mongo_db.things.update_one({"_id": 6}, {"$set": {"v": 1}})
    batches = list(source.changes("things", position))
    assert [(b.records, b.deletes, b.kinds) for b in batches] == [
        ([], [{"_id": 5}], {"delete": 1}), ([{"_id": 6, "v": 1}], [], {"update": 1})]


def test_change_batches_are_bounded_by_records_and_bytes(mongo_db):
    source = source_for(mongo_db, limits=BatchLimits(records=3, bytes=2500), changes="change_stream")
    position = source.change_position("things")
    documents = [{"_id": n, "pad": "x" * 1000} for n in range(5)]
    assert len(bson.encode(documents[0])) == 1024
    mongo_db.things.insert_many(documents)  # 2 fit in 2,500 bytes
    mongo_db.things.insert_many([{"_id": n} for n in range(5, 12)])  # 13 bytes each: 3 per batch
    batches = list(source.changes("things", position))
    assert [[r["_id"] for r in b.records] for b in batches] == [
        [0, 1], [2, 3], [4, 5, 6], [7, 8, 9], [10, 11]]
    assert [b.kinds for b in batches] == [{"insert": 2}, {"insert": 2}, {"insert": 3}, {"insert": 3},
                                          {"insert": 2}]


def test_a_changed_document_leaving_the_filter_is_a_delete(mongo_db):
    mongo_db.things.insert_many([{"_id": 1, "status": "active"}, {"_id": 2, "status": "active"},
                                 {"_id": 3, "status": "archived"}])
    source = source_for(mongo_db, changes="change_stream", query={"status": "active"})
    position = source.change_position("things")
    mongo_db.things.update_one({"_id": 1}, {"$set": {"status": "archived"}})  # leaves: a delete
    mongo_db.things.update_one({"_id": 2}, {"$set": {"v": 1}})  # stays: an update
    mongo_db.things.update_one({"_id": 3}, {"$set": {"status": "active"}})  # enters: an upsert
    mongo_db.things.insert_one({"_id": 4, "status": "archived"})  # never matched: deleting it is harmless
    (batch,) = source.changes("things", position)
    assert sorted(batch.records, key=lambda r: r["_id"]) == [
        {"_id": 2, "status": "active", "v": 1}, {"_id": 3, "status": "active"}]
    assert sorted(d["_id"] for d in batch.deletes) == [1, 4]
    assert batch.kinds == {"delete": 2, "update": 2}


def test_a_changed_document_with_a_date_python_cannot_hold_is_a_reject(mongo_db):
    source = source_for(mongo_db, changes="change_stream")
    position = source.change_position("things")
    try:
        mongo_db.things.insert_many([{"_id": 1, "at": DatetimeMS(2**62)}, {"_id": 2}])
    except pymongo.errors.OperationFailure as error:
        pytest.skip(f"this server cannot store a date outside years 1-9999 ({error.details.get('errmsg')})")
    (batch,) = source.changes("things", position)
    assert batch.records == [{"_id": 2}] and batch.kinds == {"insert": 2}
    (reject,) = batch.rejects
    assert (reject.source_key, reject.field_path, reject.stage) == ("_id=1", "at", "extract")


def test_waiting_for_a_first_change(mongo_db):
    source = source_for(mongo_db, changes="change_stream")
    position = source.change_position("things")
    assert list(source.changes("things", position, wait_ms=20)) == []  # nothing came
    mongo_db.things.insert_one({"_id": 1})
    (batch,) = source.changes("things", position, wait_ms=60_000)  # one is waiting: no wait at all
    assert batch.records == [{"_id": 1}]


def test_a_dropped_collection_stops_with_an_error_after_the_changes_before_it(mongo_db):
    mongo_db.things.insert_one({"_id": 0})
    source = source_for(mongo_db, changes="change_stream")
    position = source.change_position("things")
    mongo_db.things.insert_one({"_id": 1})
    mongo_db.things.drop()
    batches = []
    with pytest.raises(EtlError) as error:
        batches.extend(source.changes("things", position))
    assert [b.records for b in batches] == [[{"_id": 1}]]
    assert error.value.message == (
        "source 'src': collection 'things' was dropped (change stream event 'drop'); "
        "its changes cannot be followed from the stored position")
    assert error.value.hint == "run a full load again (`--full-refresh`)"


def test_a_renamed_collection_stops_with_an_error(mongo_db):
    mongo_db.things.insert_one({"_id": 0})
    source = source_for(mongo_db, changes="change_stream")
    position = source.change_position("things")
    mongo_db.things.rename("elsewhere")
    with pytest.raises(EtlError) as error:
        list(source.changes("things", position))
    assert error.value.message == (
        "source 'src': collection 'things' was renamed (change stream event 'rename'); "
        "its changes cannot be followed from the stored position")


def test_change_capture_names_each_mode(mongo_db):
    mongo_db.things.insert_one({"_id": 0})
    assert source_for(mongo_db).change_capture("things") == ChangeCapture("change stream", deletes=True)
    assert source_for(mongo_db, changes="watermark", watermark_field="updated_at").change_capture(
        "things") == ChangeCapture("watermark updated_at", deletes=False)
    assert source_for(mongo_db, changes="new_ids").change_capture("things") == ChangeCapture(
        "new _ids", deletes=False)


def test_watermark_mode_needs_a_field():
    with pytest.raises(ValidationError, match="`changes: watermark` needs `watermark_field`"):
        Config(type="mongo", uri=MONGO_URI, database="d",
               tables={"things": {"mapping": "m.yaml", "changes": "watermark"}})


MIXED_IDS = [
    bson.ObjectId("5f1d7a2b9c8e4d3a2b1c0f9e"),
    "5f1d7a2b9c8e4d3a2b1c0f9f",  # a string of hex digits is not an ObjectId
    1, Int64(2), 3.0, 3.5, Decimal128("4.25"), Decimal128("0.1"),
    Binary(b"zero", 0), Binary(b"old", 2), Binary(b"md5-----", 5), Binary.from_uuid(uuid.UUID(int=7)),
    datetime.datetime(2020, 1, 1, tzinfo=UTC), {"a": 1, "b": "x"}, True, None,
]


def test_missing_keys_are_exactly_the_absent_ids(mongo_db):
    mongo_db.things.insert_many([{"_id": key, "keep": True} for key in MIXED_IDS])
    mongo_db.things.insert_one({"_id": "filtered out", "keep": False})
    source = source_for(mongo_db, query={"keep": True})
    (partition,) = source.plan("things", 1)
    records = [r for b in source.read(partition) for r in b.records]
    keys = [source.key_of("things", record) for record in records]
    assert len(set(keys)) == len(MIXED_IDS) == len(records)
    assert source.missing_keys("things", keys) == []
    gone = [bson.ObjectId("5f1d7a2b9c8e4d3a2b1c0f9e"), Int64(2), Binary(b"old", 2), {"a": 1, "b": "x"}, None]
    mongo_db.things.delete_many({"_id": {"$in": gone}})
    gone_keys = {'{"v": {"$oid": "5f1d7a2b9c8e4d3a2b1c0f9e"}}', '{"v": {"$numberInt": "2"}}',
                 '{"v": {"$binary": {"base64": "b2xk", "subType": "00"}}}',  # subtype 2 reads as bytes
                 '{"v": {"a": {"$numberInt": "1"}, "b": "x"}}', '{"v": null}'}
    assert gone_keys <= set(keys)
    assert source.missing_keys("things", keys) == [key for key in keys if key in gone_keys]
    filtered = source.key_of("things", {"_id": "filtered out"})
    assert source.missing_keys("things", [filtered, keys[1]]) == [filtered]  # present, not matching


def test_missing_keys_follow_mongodb_number_equality(mongo_db):
    mongo_db.things.insert_many([{"_id": Int64(7)}, {"_id": 8.0}, {"_id": Decimal128("9.50")}, {"_id": 0.1}])
    source = source_for(mongo_db)
    key = partial(source.key_of, "things")
    # 7, 7.0 and NumberLong(7) are one _id in MongoDB: one key, and present
    assert key({"_id": 7}) == key({"_id": 7.0}) == key({"_id": Decimal("7.000")})
    assert key({"_id": 7}) == '{"v": {"$numberInt": "7"}}'
    assert key({"_id": Decimal("9.5")}) == key({"_id": 9.5}) == '{"v": {"$numberDouble": "9.5"}}'
    assert key({"_id": Decimal("0.1")}) != key({"_id": 0.1})  # the double 0.1 is not exactly 0.1
    asked = [key({"_id": 7.0}), key({"_id": 8}), key({"_id": 9.5}), key({"_id": 0.1}), key({"_id": 10})]
    assert source.missing_keys("things", asked) == [key({"_id": 10})]
    assert source.missing_keys("things", []) == []


def test_missing_keys_of_an_empty_collection_are_all_the_keys(mongo_db):
    mongo_db.things.insert_one({"_id": "x"})
    mongo_db.things.delete_one({"_id": "x"})
    source = source_for(mongo_db)
    keys = [source.key_of("things", {"_id": n}) for n in range(3)]
    assert source.missing_keys("things", keys) == keys


# -- a position the oplog no longer holds: a server of the test's own with a 10-entry oplog ---------

SECANTUS = Path(os.environ.get("ETL_CACHE_DIR", Path.home() / ".cache" / "etl")) / "secantus-venv" / "bin" \
    / "secantusd-py"


@pytest.fixture
def small_oplog_server(tmp_path):
    """A SecantusDB of this test alone whose oplog keeps 10 entries (pruned every 1,000 writes)."""
    if not SECANTUS.exists():
        pytest.skip(f"SecantusDB is not installed at {SECANTUS}; `scripts/services.sh up` installs it")
    port = free_port()
    server = subprocess.Popen(
        [str(SECANTUS), "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(tmp_path / "data"),
         "--oplog-max-entries", "10"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=60_000)
    try:
        client.admin.command("ping")  # waits (up to 60 s) for the server to answer
        yield uri, client
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=60)


def test_a_position_the_oplog_no_longer_holds_is_too_old(small_oplog_server):
    uri, client = small_oplog_server
    config = Config(type="mongo", uri=uri, database="old",
                    tables={"things": {"mapping": "m.yaml", "changes": "change_stream"}})
    source = open_source("src", config, BatchLimits())
    client.old.things.insert_one({"_id": -1})
    position = source.change_position("things")
    client.old.things.insert_many([{"_id": n} for n in range(1000)])  # the 1,000th write prunes to 10
    with pytest.raises(EtlError) as error:
        list(source.changes("things", through_json(position)))
    assert error.value.message == (
        "source 'src': collection 'things': the stored change-stream position is too old: the server's "
        "oplog no longer holds it (code 286)")
    assert error.value.hint == (
        "the changes since then are lost to the change stream; run a full load again (`--full-refresh`), "
        "and catch up more often than the oplog window")
    source.close()
