"""Differential runs: change streams (with resume tokens), watermark field, new `_id`s."""

from __future__ import annotations

import datetime

import pytest

from etl.sources.base import BatchLimits
from etl.sources.mongo import Config, open_source
from tests.conftest import MONGO_URI

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
