"""The mongodump source over dump folders written here with pymongo's `bson`."""

from __future__ import annotations

import datetime
import gzip
import json
from decimal import Decimal

import bson
import pytest
from bson import Decimal128, Timestamp
from bson.datetime_ms import DatetimeMS

from etl.errors import EtlError
from etl.records import Partition
from etl.sources.base import BatchLimits
from etl.sources.bson_values import NATIVE_CODEC
from etl.sources.mongodump import Config, CorruptFile, open_source

UTC = datetime.UTC


def encode(document: dict) -> bytes:
    return bson.encode(document, codec_options=NATIVE_CODEC)


def patients(count: int) -> list[dict]:
    return [{"_id": n, "name": f"p{n}", "balance": Decimal128(f"{n}.10"),
             "seen": datetime.datetime(1960 + n % 60, 1, 1, tzinfo=UTC)} for n in range(count)]


def write_dump(root, documents, *, collection="patients", gz=False, oplog=None, indexes=None):
    folder = root / "clinic"
    folder.mkdir(parents=True, exist_ok=True)
    data = b"".join(encode(d) for d in documents)
    if gz:
        (folder / f"{collection}.bson.gz").write_bytes(gzip.compress(data))
    else:
        (folder / f"{collection}.bson").write_bytes(data)
    metadata = {"options": {}, "indexes": indexes or [{"v": 2, "key": {"_id": 1}, "name": "_id_"}],
                "uuid": "0123456789abcdef0123456789abcdef", "collectionName": collection}
    (folder / f"{collection}.metadata.json").write_text(json.dumps(metadata))
    if oplog is not None:
        (root / "oplog.bson").write_bytes(b"".join(encode(entry) for entry in oplog))
    return folder


def source_for(root, limits=BatchLimits(records=4, bytes=1 << 20), **options):
    config = Config(type="mongodump", path=str(root), database="clinic",
                    tables={"patients": {"mapping": "m.yaml"}}, **options)
    return open_source("dump", config, limits)


def read_partition(source, partition, **kwargs):
    batches = list(source.read(partition, **kwargs))
    return batches, [r for b in batches for r in b.records], [r for b in batches for r in b.rejects]


@pytest.mark.parametrize("partitions", [1, 2, 3, 7])
def test_byte_range_partitions_cover_the_dump_exactly_once(tmp_path, partitions):
    write_dump(tmp_path, patients(50))
    source = source_for(tmp_path)
    source.check()
    plan = source.plan("patients", partitions)
    assert len(plan) == partitions
    ids = [r["_id"] for p in plan for r in read_partition(source, Partition.from_json(p.to_json()))[1]]
    assert ids == list(range(50))
    assert source.sample("patients", 3) == [
        {"_id": n, "name": f"p{n}", "balance": Decimal(f"{n}.10"),
         "seen": datetime.datetime(1960 + n, 1, 1, tzinfo=UTC)} for n in range(3)]


@pytest.mark.parametrize("gz", [False, True])
def test_resume_by_byte_offset_continues_exactly(tmp_path, gz):
    write_dump(tmp_path, patients(30), gz=gz)
    source = source_for(tmp_path)
    (partition,) = source.plan("patients", 4) if gz else source.plan("patients", 1)
    batches, records, _ = read_partition(source, partition)
    assert [len(b.records) for b in batches] == [4] * 7 + [2]
    document_size = len(encode(patients(30)[0]))
    assert batches[0].resume_after == 4 * document_size  # the offset after the 4th document
    _, rest, _ = read_partition(source, partition, resume_after=batches[2].resume_after)
    assert [r["_id"] for r in rest] == list(range(12, 30))


@pytest.mark.parametrize("gz", [False, True])
def test_documents_and_batches_larger_than_a_read_block(tmp_path, gz):
    big = (1 << 20) * 3  # three of the 1 MiB blocks the file is read in
    documents = [{"_id": n, "pad": "x" * (big if n in (3, 4) else n)} for n in range(3000)]
    write_dump(tmp_path, documents, gz=gz)
    sizes = [len(encode(d)) for d in documents]
    batches, records, _ = read_partition(source_for(tmp_path, limits=BatchLimits(records=1000, bytes=big)),
                                         Partition("dump", "patients", 0, 1))
    assert [r["_id"] for r in records] == list(range(3000))
    assert records[4]["pad"] == "x" * big
    assert [len(b.records) for b in batches] == [3, 1, 1, 1000, 1000, 995]
    assert [b.resume_after for b in batches][:3] == [sum(sizes[:3]), sum(sizes[:4]), sum(sizes[:5])]


def test_projection_keeps_id_and_the_fields(tmp_path):
    write_dump(tmp_path, patients(3))
    source = source_for(tmp_path)
    _, records, _ = read_partition(source, source.plan("patients", 1)[0], fields=["name"])
    assert records == [{"_id": 0, "name": "p0"}, {"_id": 1, "name": "p1"}, {"_id": 2, "name": "p2"}]


def test_indexes_from_metadata_are_reported(tmp_path):
    indexes = [{"v": 2, "key": {"_id": 1}, "name": "_id_"},
               {"v": 2, "key": {"mrn": 1}, "name": "mrn_1", "unique": True}]
    write_dump(tmp_path, patients(1), indexes=indexes)
    assert source_for(tmp_path).indexes("patients") == indexes


def test_truncated_file_names_the_file_and_byte_offset(tmp_path):
    folder = write_dump(tmp_path, patients(10))
    data = (folder / "patients.bson").read_bytes()
    size = len(encode(patients(10)[0]))
    (folder / "patients.bson").write_bytes(data[: size * 6 + 9])  # 6 whole documents + 9 bytes
    source = source_for(tmp_path)
    with pytest.raises(CorruptFile) as caught:
        read_partition(source, source.plan("patients", 1)[0])
    assert str(caught.value).startswith(
        f"{folder / 'patients.bson'}: truncated document (9 of {size} bytes) at byte offset {size * 6}")


def test_truncated_file_with_deadletter_loads_the_readable_documents(tmp_path):
    folder = write_dump(tmp_path, patients(10))
    size = len(encode(patients(10)[0]))
    (folder / "patients.bson").write_bytes((folder / "patients.bson").read_bytes()[: size * 6 + 2])
    source = source_for(tmp_path, on_corrupt="deadletter")
    batches, records, rejects = read_partition(source, source.plan("patients", 1)[0])
    assert [r["_id"] for r in records] == [0, 1, 2, 3, 4, 5]
    cut = size * 6
    assert [(r.source_key, r.stage) for r in rejects] == [(f"patients.bson@{cut}-{cut + 2}", "extract")]
    assert rejects[0].reason == (f"truncated length prefix (2 of 4 bytes) at byte offset {cut} of "
                                 f"{folder / 'patients.bson'}; bytes {cut} to {cut + 2} (exclusive) skipped: "
                                 "no whole document follows before the end of the file")
    assert sum(b.extracted for b in batches) == 7
    assert list(source.read(source.plan("patients", 1)[0], resume_after=batches[-1].resume_after)) == []


def test_undecodable_document_inside_a_good_frame(tmp_path):
    folder = write_dump(tmp_path, patients(5))
    data = bytearray((folder / "patients.bson").read_bytes())
    size = len(encode(patients(5)[0]))
    data[size * 2 + 4] = 0x77  # the type byte of the 3rd document's first element: no such BSON type
    (folder / "patients.bson").write_bytes(bytes(data))
    with pytest.raises(CorruptFile, match=f"undecodable document .* at byte offset {size * 2}"):
        read_partition(source_for(tmp_path), source_for(tmp_path).plan("patients", 1)[0])
    source = source_for(tmp_path, on_corrupt="deadletter")
    _, records, rejects = read_partition(source, source.plan("patients", 1)[0])
    assert [r["_id"] for r in records] == [0, 1, 3, 4]
    assert [r.source_key for r in rejects] == [f"patients.bson@{size * 2}-{size * 3}"]


def test_date_python_cannot_hold_is_rejected_with_its_path(tmp_path):
    write_dump(tmp_path, [{"_id": 1}, {"_id": 2, "visit": {"at": DatetimeMS(-(2**62))}}, {"_id": 3}])
    source = source_for(tmp_path)
    _, records, rejects = read_partition(source, source.plan("patients", 1)[0])
    assert [r["_id"] for r in records] == [1, 3]
    assert [(r.source_key, r.field_path, r.value_type) for r in rejects] == [("_id=2", "visit.at", "date")]


def test_unknown_collection_lists_the_dumped_ones(tmp_path):
    write_dump(tmp_path, patients(1), collection="visits")
    write_dump(tmp_path, patients(1), collection="wards", gz=True)
    with pytest.raises(EtlError, match=r"collection\(s\) patients not in the dump .*; it has: visits, wards"):
        source_for(tmp_path).check()


def oplog_entry(op, seconds, **fields):
    return {"ts": Timestamp(seconds, 1), "op": op, "ns": fields.pop("ns", "clinic.patients"), **fields}


OPLOG = [
    oplog_entry("u", 100, o2={"_id": 1}, o={"$v": 1, "$set": {"name": "renamed", "address.city": "Oslo"}}),
    oplog_entry("i", 101, o={"_id": 100, "name": "new"}),
    oplog_entry("u", 102, o2={"_id": 100}, o={"$v": 2, "diff": {"u": {"name": "newer"}, "i": {"x": 1}}}),
    oplog_entry("d", 103, o={"_id": 2}),
    oplog_entry("u", 104, o2={"_id": 3}, o={"name": "replaced"}),
    oplog_entry("i", 105, o={"_id": 5, "name": "elsewhere"}, ns="clinic.visits"),
    oplog_entry("i", 106, o={"_id": 101, "name": "short-lived"}),
    oplog_entry("d", 107, o={"_id": 101}),
    oplog_entry("u", 108, o2={"_id": 4},
                o={"$v": 2, "diff": {"d": {"name": False}, "saddress": {"u": {"zip": "0150"}}}}),
    oplog_entry("n", 109, o={"msg": "periodic noop"}),
]


def final_state(source, partitions):
    state, deleted = {}, []
    for partition in source.plan("patients", partitions):
        for batch in source.read(partition):
            for record in batch.records:
                state[record["_id"]] = record
            deleted += [key["_id"] for key in batch.deletes]
    for key in deleted:
        state.pop(key, None)
    return state, sorted(deleted)


@pytest.mark.parametrize("partitions", [1, 3])
def test_oplog_is_replayed_after_the_base_data(tmp_path, partitions):
    base = [{"_id": n, "name": f"p{n}", "address": {"city": "Bergen"}} for n in range(6)]
    base[1]["name"] = "renamed"  # the dump already caught this change: replaying it again is harmless
    write_dump(tmp_path, base, oplog=OPLOG)
    source = source_for(tmp_path)
    assert source.consistent_point() == {"$timestamp": {"t": 109, "i": 1}}
    state, deleted = final_state(source, partitions)
    assert deleted == [2, 101]
    assert state == {
        0: {"_id": 0, "name": "p0", "address": {"city": "Bergen"}},
        1: {"_id": 1, "name": "renamed", "address": {"city": "Oslo"}},
        3: {"_id": 3, "name": "replaced"},
        4: {"_id": 4, "address": {"city": "Bergen", "zip": "0150"}},
        5: {"_id": 5, "name": "p5", "address": {"city": "Bergen"}},
        100: {"_id": 100, "name": "newer", "x": 1},
    }


def test_oplog_can_be_ignored(tmp_path):
    write_dump(tmp_path, [{"_id": n} for n in range(3)], oplog=OPLOG)
    state, deleted = final_state(source_for(tmp_path, apply_oplog=False), 2)
    assert sorted(state) == [0, 1, 2] and deleted == []


def test_oplog_deletes_are_key_records_as_records_carry_the_id(tmp_path):
    kept, gone = bson.ObjectId("5f1d7a2b9c8e4d3a2b1c0f9e"), bson.ObjectId("5f1d7a2b9c8e4d3a2b1c0f9f")
    write_dump(tmp_path, [{"_id": kept, "n": 1}, {"_id": gone, "n": 2}],
               oplog=[oplog_entry("d", 10, o={"_id": gone})])
    source = source_for(tmp_path)
    (partition,) = source.plan("patients", 1)
    batches = list(source.read(partition))
    records = [r for b in batches for r in b.records]
    deletes = [d for b in batches for d in b.deletes]
    assert records == [{"_id": "5f1d7a2b9c8e4d3a2b1c0f9e", "n": 1}]
    assert deletes == [{"_id": "5f1d7a2b9c8e4d3a2b1c0f9f"}]
    assert repr(deletes[0]["_id"]) == "ObjectId('5f1d7a2b9c8e4d3a2b1c0f9f')"  # an ObjectId, as in records
    assert source.key_of("patients", deletes[0]) == '{"v": {"$oid": "5f1d7a2b9c8e4d3a2b1c0f9f"}}'
    assert source.key_of("patients", records[0]) == '{"v": {"$oid": "5f1d7a2b9c8e4d3a2b1c0f9e"}}'
    assert source.change_capture("patients") is None  # a snapshot: read whole again, never followed


def test_settled_keys_resume_by_position(tmp_path):
    inserts = [oplog_entry("i", 10 + n, o={"_id": 1000 + n}) for n in range(9)]
    write_dump(tmp_path, [{"_id": 1}], oplog=inserts)
    source = source_for(tmp_path)
    (partition,) = source.plan("patients", 1)
    batches = list(source.read(partition))
    assert [b.resume_after for b in batches] == [len(encode({"_id": 1})), {"settled": 4}, {"settled": 8},
                                                 {"settled": 9}]
    resumed = [r["_id"] for b in source.read(partition, resume_after={"settled": 4}) for r in b.records]
    assert resumed == [1004, 1005, 1006, 1007, 1008]


def test_a_dropped_collection_in_the_oplog_is_an_error(tmp_path):
    write_dump(tmp_path, [{"_id": 1}], oplog=[oplog_entry("c", 5, ns="clinic.$cmd", o={"drop": "patients"})])
    with pytest.raises(EtlError, match="oplog drops clinic.patients during the dump"):
        source_for(tmp_path).plan("patients", 1)
