"""Partitions of a collection with mixed `_id` types cover every document exactly once."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from bson import Decimal128, Int64, ObjectId

from etl.records import Partition
from etl.sources.base import BatchLimits
from etl.sources.bson_values import NATIVE_CODEC
from etl.sources.mongo import Config, open_source
from tests.conftest import MONGO_URI

pytestmark = pytest.mark.integration


def mixed_ids() -> list:
    ids: list = []
    for index in range(12):
        ids += [
            ObjectId(f"{index:024x}"),
            index,  # int32
            Int64(10_000_000_000 + index),
            index + 0.5,
            f"key-{index:03d}",
            uuid.UUID(int=index + 1),
            Decimal128(f"{index}.25"),
        ]
    return ids


def things(db):
    return db.get_collection("things", codec_options=NATIVE_CODEC)


def source_for(db, limits=BatchLimits(records=7, bytes=1 << 20), **table):
    config = Config(type="mongo", uri=MONGO_URI, database=db.name,
                    tables={"things": {"mapping": "m.yaml", **table}})
    return open_source("src", config, limits)


def read_all(source, partition, **kwargs):
    records = []
    for batch in source.read(partition, **kwargs):
        assert not batch.rejects
        records += batch.records
    return records


def canonical(value):
    """How each native `_id` arrives in records (docs/types.md)."""
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, Decimal128):
        return value.to_decimal()
    return value


@pytest.mark.parametrize("partitions", [1, 2, 3, 5, 8, 13])
@pytest.mark.parametrize("split_by", ["bucketAuto", "sample"])
def test_partitions_cover_mixed_ids_exactly_once(mongo_db, partitions, split_by):
    ids = mixed_ids()
    things(mongo_db).insert_many([{"_id": value, "n": position} for position, value in enumerate(ids)])
    # sample_partitioning=0 sends every collection down the $sample path
    source = source_for(mongo_db, **({"sample_partitioning": 0, "sample_per_partition": 5}
                                     if split_by == "sample" else {}))
    plan = source.plan("things", partitions)
    assert 1 < len(plan) <= partitions or partitions == 1
    seen: list[int] = []
    for partition in plan:
        shipped = Partition.from_json(partition.to_json())
        seen += [record["n"] for record in read_all(source, shipped)]
    assert sorted(seen) == list(range(len(ids)))  # union == collection, no document twice
    assert len(seen) == 84


def test_single_partition_reads_in_bson_order_with_exact_id_values(mongo_db):
    ids = mixed_ids()
    things(mongo_db).insert_many([{"_id": value} for value in ids])
    records = read_all(source_for(mongo_db), Partition("src", "things", 0, 1))
    got = [record["_id"] for record in records]
    # MongoDB order: numbers < strings < binData (UUID) < ObjectId
    numbers = sorted([v for v in ids if isinstance(v, int | float | Decimal128) and not isinstance(v, bool)],
                     key=lambda v: Decimal(str(v.to_decimal() if isinstance(v, Decimal128) else v)))
    strings = sorted(v for v in ids if isinstance(v, str))
    uuids = sorted((v for v in ids if isinstance(v, uuid.UUID)), key=lambda v: v.bytes)
    object_ids = sorted(v for v in ids if isinstance(v, ObjectId))
    assert got == [canonical(v) for v in numbers + strings + uuids + object_ids]
    assert type(got[-1]).__name__ == "ObjectIdText" and repr(got[-1]) == f"ObjectId('{object_ids[-1]}')"


@pytest.mark.parametrize("stop_after", [1, 3, 6, 11])
def test_resume_after_each_batch_continues_without_gap_or_repeat(mongo_db, stop_after):
    ids = mixed_ids()
    things(mongo_db).insert_many([{"_id": value, "n": position} for position, value in enumerate(ids)])
    source = source_for(mongo_db)
    for partition in source.plan("things", 3):
        everything = read_all(source, partition)
        batches = list(source.read(partition))
        cut = min(stop_after, len(batches) - 1)
        first = [r["n"] for batch in batches[:cut] for r in batch.records]
        rest = [r["n"] for r in read_all(source, partition, resume_after=batches[cut - 1].resume_after)] \
            if cut else [r["n"] for r in everything]
        assert first + rest == [r["n"] for r in everything]
