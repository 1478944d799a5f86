"""The mongo source against the local server: types, rejects, filters, limits, errors."""

from __future__ import annotations

import datetime
import math
import uuid
from decimal import Decimal

import bson
import pymongo.monitoring
import pytest
from bson import Binary, Code, DBRef, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from bson.datetime_ms import DatetimeMS

from etl.errors import ConnectionFailed, EtlError
from etl.records import Partition
from etl.sources.base import BatchLimits
from etl.sources.bson_values import NATIVE_CODEC, id_to_json
from etl.sources.mongo import Config, open_source
from tests.conftest import MONGO_PORT, MONGO_URI, free_port
from tests.integration.mongo_commands import ReadCommands

pytestmark = pytest.mark.integration
UTC = datetime.UTC


def source_for(db, uri=MONGO_URI, limits=BatchLimits(), timeout_ms=10_000, **table):
    config = Config(type="mongo", uri=uri, database=db if isinstance(db, str) else db.name,
                    server_selection_timeout_ms=timeout_ms,
                    tables={"things": {"mapping": "m.yaml", **table}})
    return open_source("src", config, limits)


def things(db):
    return db.get_collection("things", codec_options=NATIVE_CODEC)


def read_all(source, **kwargs):
    batches = list(source.read(Partition("src", "things", 0, 1), **kwargs))
    return batches, [r for b in batches for r in b.records], [r for b in batches for r in b.rejects]


def test_every_bson_type_survives_the_server(mongo_db):
    """(SecantusDB refuses to store dates outside years 1-9999, so the reject of such a date
    is proven in tests/unit/test_bson_values.py and through a dump in test_mongodump.py.)"""
    oid = ObjectId()
    things(mongo_db).insert_many([
        {"_id": 1, "nan": float("nan"), "negzero": -0.0, "uuid": uuid.UUID(int=7),
         "legacy": Binary(b"L" * 16, 3), "oid": oid, "regex": Regex("^x", "i"), "js": Code("f()"),
         "ts": Timestamp(5, 1), "long": Int64(2**62),
         "dec": Decimal128("-0.000"), "decinf": Decimal128("Infinity"), "min": MinKey(), "max": MaxKey(),
         "ref": DBRef("c", 9), "null": None, "old": datetime.datetime(1492, 10, 12, tzinfo=UTC),
         "bin": b"\xff\x00"},
        {"_id": 2, "dob": DatetimeMS(-62135596800000)},  # 0001-01-01, the earliest Python holds
        {"_id": 3, "ok": True},
    ])
    batches, records, rejects = read_all(source_for(mongo_db))
    assert [r["_id"] for r in records] == [1, 2, 3] and rejects == []
    assert records[1]["dob"] == datetime.datetime(1, 1, 1, tzinfo=UTC)
    first = records[0]
    assert math.isnan(first["nan"]) and math.copysign(1, first["negzero"]) == -1
    assert first["uuid"] == uuid.UUID(int=7)
    assert first["legacy"] == {"$binary": {"base64": "TExMTExMTExMTExMTExMTA==", "subType": "03"}}
    assert first["oid"] == str(oid) and first["long"] == 2**62 and first["bin"] == b"\xff\x00"
    assert str(first["dec"]) == "-0.000" and first["decinf"] == Decimal("Infinity")
    assert first["regex"] == {"$regularExpression": {"pattern": "^x", "options": "i"}}
    assert first["js"] == {"$code": "f()"} and first["ts"] == {"$timestamp": {"t": 5, "i": 1}}
    assert first["min"] == {"$minKey": 1} and first["max"] == {"$maxKey": 1}
    assert first["ref"] == {"$ref": "c", "$id": 9}
    assert first["null"] is None and first["old"] == datetime.datetime(1492, 10, 12, tzinfo=UTC)
    assert sum(b.extracted for b in batches) == 3


def test_query_filter_combines_with_partitions(mongo_db):
    things(mongo_db).insert_many([{"_id": n, "active": n % 3 == 0} for n in range(100)])
    source = source_for(mongo_db, query={"active": True})
    got = [r["_id"] for p in source.plan("things", 4) for b in source.read(p) for r in b.records]
    assert got == list(range(0, 100, 3))


def test_query_takes_extended_json_values(mongo_db):
    things(mongo_db).insert_many([{"_id": n, "born": datetime.datetime(1990 + n, 1, 1, tzinfo=UTC)}
                                  for n in range(10)])
    source = source_for(mongo_db, query={"born": {"$gte": {"$date": "1995-06-01T00:00:00Z"}}})
    _, records, _ = read_all(source)
    assert [r["_id"] for r in records] == [6, 7, 8, 9]


def test_batches_are_bounded_by_bson_bytes(mongo_db):
    things(mongo_db).insert_many([{"_id": n, "pad": "x" * 1000} for n in range(50)])
    size = len(bson.encode({"_id": 0, "pad": "x" * 1000}))
    batches, records, _ = read_all(source_for(mongo_db, limits=BatchLimits(records=1000, bytes=size * 7 + 1)))
    assert [len(b.records) for b in batches] == [7] * 7 + [1]
    assert [r["_id"] for r in records] == list(range(50))


def test_server_replies_hold_at_most_one_batch(mongo_db):
    """A reply of the server's default size (up to 16 MiB) per partition reader would hold far
    more than the run's batch budget in memory: every read asks for one batch's documents."""
    things(mongo_db).insert_many([{"_id": n} for n in range(95)])
    commands = ReadCommands(mongo_db.name)
    pymongo.monitoring.register(commands)  # applies to the clients created after it
    _, records, _ = read_all(source_for(mongo_db, limits=BatchLimits(records=10)))
    assert [r["_id"] for r in records] == list(range(95))
    assert commands.sizes == [("find", 10)] + [("getMore", 10)] * 9
    assert commands.replied == [10] * 9 + [5]


def test_documents_holding_only_the_read_fields_are_read_without_a_projection(mongo_db):
    things(mongo_db).insert_many([{"_id": n, "a": n, "b": str(n)} for n in range(25)])
    commands = ReadCommands(mongo_db.name)
    pymongo.monitoring.register(commands)
    _, records, _ = read_all(source_for(mongo_db, limits=BatchLimits(records=10)), fields=["a", "b"])
    assert records == [{"_id": n, "a": n, "b": str(n)} for n in range(25)]
    assert commands.finds == [({}, None)]


def test_a_field_no_output_reads_turns_the_projection_on_from_the_next_document(mongo_db):
    """Document 13 (second batch) holds `ssn`: that batch is projected by the source, and the rest
    of the range is read again from after it with the server projecting. The partition spans three
    type classes, so the second read starts in the middle of the first class and still reads every
    document once, in `_id` order."""
    documents = [{"_id": n, "a": n, "ssn": f"0{n}"} if n == 13 else {"_id": n, "a": n} for n in range(25)]
    documents += [{"_id": f"s{n}", "a": n, "ssn": "x"} for n in range(3)]
    documents.append({"_id": ObjectId(f"{1:024x}"), "a": 0})
    things(mongo_db).insert_many(documents)
    commands = ReadCommands(mongo_db.name)
    pymongo.monitoring.register(commands)
    source = source_for(mongo_db, limits=BatchLimits(records=10))
    upper = ObjectId(f"{2:024x}")
    batches = list(source.read(Partition("src", "things", 0, 2, None, id_to_json(upper)), fields=["a"]))
    records = [record for batch in batches for record in batch.records]
    assert records == [*({"_id": n, "a": n} for n in range(25)),
                       *({"_id": f"s{n}", "a": n} for n in range(3)),
                       {"_id": f"{1:024x}", "a": 0}]  # an ObjectId reads as its hex text
    assert [len(batch.records) for batch in batches] == [10, 10, 5, 3, 1]
    numbers_to_binary = ["double", "int", "long", "decimal", "string", "symbol", "object", "array", "binData"]
    assert commands.finds == [
        ({"_id": {"$type": ["minKey", "null", "undefined", *numbers_to_binary]}}, None),
        ({"_id": {"$gt": 19}}, {"a": 1, "_id": 1}),
        ({"_id": {"$type": numbers_to_binary[4:]}}, {"a": 1, "_id": 1}),
        ({"_id": {"$lt": upper}}, {"a": 1, "_id": 1}),
    ]


def test_sample_is_the_first_documents_by_id_through_the_id_index(mongo_db):
    """(A real MongoDB refuses `listIndexes` on a view, which is then sampled without the hint;
    SecantusDB lists the underlying collection's, so only the view's documents are checked.)"""
    things(mongo_db).insert_many([{"_id": (n * 7) % 30, "a": n} for n in range(30)])  # not in _id order
    mongo_db.command("create", "recent", viewOn="things", pipeline=[{"$match": {"_id": {"$gte": 20}}}])
    commands = ReadCommands(mongo_db.name)
    pymongo.monitoring.register(commands)
    source = source_for(mongo_db)
    source.config.tables["recent"] = source.config.tables["things"]
    assert [record["_id"] for record in source.sample("things", 5)] == [0, 1, 2, 3, 4]
    assert [record["_id"] for record in source.sample("recent", 5)] == [20, 21, 22, 23, 24]
    assert commands.hints[0] == {"_id": 1}


def test_unknown_collection_lists_the_collections_that_exist(mongo_db):
    mongo_db.patients.insert_one({"_id": 1})
    mongo_db.visits.insert_one({"_id": 1})
    with pytest.raises(EtlError) as caught:
        source_for(mongo_db).check()
    assert str(caught.value) == (f"source 'src': collection 'things' does not exist in database "
                                 f"'{mongo_db.name}'\n  hint: fix the collection name under `tables`; the "
                                 "database has: patients, visits")


def test_unreachable_server_fails_within_the_timeout_without_the_password():
    uri = f"mongodb://etl_user:S3cret-pw@127.0.0.1:{free_port()}/?directConnection=true"
    source = source_for("db", uri=uri, timeout_ms=300)
    with pytest.raises(ConnectionFailed) as caught:
        source.check()
    message = str(caught.value)
    assert "S3cret-pw" not in message and "etl_user" not in message
    assert "127.0.0.1" in message and "cannot reach the server" in message and "300 ms" in message


def test_wrong_password_is_connection_failed_without_the_password(mongo_db):
    uri = MONGO_URI.replace("mongodb://", "mongodb://etl_user:Wr0ng-pw@") + "&authSource=admin"
    source = source_for(mongo_db, uri=uri, timeout_ms=2000)
    with pytest.raises(ConnectionFailed) as caught:
        source.check()
    message = str(caught.value)
    assert message.startswith(f"source 'src': MongoDB at 127.0.0.1:{MONGO_PORT}: authentication failed")
    assert "Wr0ng-pw" not in message and "etl_user" not in message
