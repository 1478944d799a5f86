"""A damaged region of a mongodump file is one reject with its exact byte range, and reading
resynchronises on the next document: nothing intact after the damage is skipped, partitions
and resume positions cover the file exactly once, and `on_corrupt: error` raises only after
every batch before the damage.

Each case damages document 4 of ten in a way named in the test id and states exactly which
documents are read, which byte range is reported and why.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib

import bson
import pytest

from etl.records import Partition
from etl.sources.base import BatchLimits
from etl.sources.bson_values import NATIVE_CODEC
from etl.sources.mongodump import Config, CorruptFile, open_source

DOCUMENTS = [{"_id": n, "name": f"patient {n}", "address": {"city": "Bergen", "zip": f"{n:04d}"},
              "tags": ["a", n]} for n in range(10)]
ENCODED = [bson.encode(d, codec_options=NATIVE_CODEC) for d in DOCUMENTS]
CLEAN = b"".join(ENCODED)
STARTS = [sum(len(e) for e in ENCODED[:n]) for n in range(len(ENCODED) + 1)]  # STARTS[10] == len(CLEAN)
RESUMED = "reading resumed at the next whole document"


def with_length(length: int) -> bytes:
    """Document 4's length prefix replaced by `length` (little-endian, unsigned)."""
    data = bytearray(CLEAN)
    data[STARTS[4]:STARTS[4] + 4] = struct.pack("<I", length % 2**32)
    return bytes(data)


def with_bytes(offset: int, replacement: bytes) -> bytes:
    data = bytearray(CLEAN)
    data[offset:offset + len(replacement)] = replacement
    return bytes(data)


LENGTH = STARTS[5] - STARTS[4]  # every document here is the same size
TOO_LONG = len(CLEAN) + 100
CASES = {  # damaged file, what is reported at document 4's offset, the ids read, end of the damaged range
    "length larger than the file": (with_length(TOO_LONG),
                                    f"truncated document ({len(CLEAN) - STARTS[4]} of {TOO_LONG} bytes)",
                                    [0, 1, 2, 3, 5, 6, 7, 8, 9], STARTS[5]),
    "length 0": (with_length(0), "implausible document length 0", [0, 1, 2, 3, 5, 6, 7, 8, 9], STARTS[5]),
    "length -1": (with_length(-1), "implausible document length 4294967295", [0, 1, 2, 3, 5, 6, 7, 8, 9],
                  STARTS[5]),
    "length 5": (with_length(5), "document does not end with a NUL byte", [0, 1, 2, 3, 5, 6, 7, 8, 9],
                 STARTS[5]),
    # 3 bytes too long: the frame ends inside document 5's length prefix, on a NUL, so only decoding finds it
    "length 3 too large": (with_length(LENGTH + 3), "undecodable document (InvalidBSON)",
                           [0, 1, 2, 3, 5, 6, 7, 8, 9], STARTS[5]),
    # 3 bytes too short: the frame ends on a NUL inside the document's last element
    "length 3 too small": (with_length(LENGTH - 3), "undecodable document (InvalidBSON)",
                           [0, 1, 2, 3, 5, 6, 7, 8, 9], STARTS[5]),
    "wrong terminator byte": (with_bytes(STARTS[5] - 1, b"\x01"), "document does not end with a NUL byte",
                              [0, 1, 2, 3, 5, 6, 7, 8, 9], STARTS[5]),
    # 0xff over the last two bytes of document 4 and the first two of document 5: both are lost, the
    # range covers exactly the two of them
    "damage across two documents": (with_bytes(STARTS[5] - 2, b"\xff" * 4),
                                    "document does not end with a NUL byte",
                                    [0, 1, 2, 3, 6, 7, 8, 9], STARTS[6]),
}


def write(root, data: bytes, *, name: str = "patients.bson") -> object:
    folder = root / "clinic"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return folder / name


def source_for(root, on_corrupt: str, records: int = 3, tables: tuple[str, ...] = ("patients",)):
    config = Config(type="mongodump", path=str(root), database="clinic", on_corrupt=on_corrupt,
                    tables={table: {"mapping": "m.yaml"} for table in tables})
    return open_source("dump", config, BatchLimits(records=records))


def read_all(source, partitions: int = 1, table: str = "patients"):
    batches = [b for p in source.plan(table, partitions) for b in source.read(p)]
    return batches, [r["_id"] for b in batches for r in b.records], [r for b in batches for r in b.rejects]


def reason(file, what: str, start: int, end: int, after: str = RESUMED) -> str:
    return f"{what} at byte offset {start} of {file}; bytes {start} to {end} (exclusive) skipped: {after}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_damage_is_one_range_and_reading_resumes_at_the_next_document(tmp_path, case):
    data, what, ids, end = CASES[case]
    file = write(tmp_path, data)
    batches, read, rejects = read_all(source_for(tmp_path, "deadletter"))
    assert read == ids
    assert [(r.source_key, r.reason, r.stage, r.value_type) for r in rejects] == [
        (f"patients.bson@{STARTS[4]}-{end}", reason(file, what, STARTS[4], end), "extract", "bson")]
    damaged = [b for b in batches if b.rejects]
    assert [(b.records, b.resume_after) for b in damaged] == [([], end)]
    assert sum(b.extracted for b in batches) == len(ids) + 1
    assert batches[-1].resume_after == len(data)


@pytest.mark.parametrize("case", sorted(CASES))
def test_error_mode_yields_every_batch_before_the_damage_then_raises(tmp_path, case):
    data, what, _, _ = CASES[case]
    file = write(tmp_path, data)
    source = source_for(tmp_path, "error")
    (partition,) = source.plan("patients", 1)
    seen = []
    with pytest.raises(CorruptFile) as caught:
        for batch in source.read(partition):
            seen.append(([r["_id"] for r in batch.records], batch.resume_after))
    # batches of 3: the second stops at the damage, whether framing or decoding found it
    assert seen == [([0, 1, 2], STARTS[3]), ([3], STARTS[4])]
    assert (caught.value.file, caught.value.offset, caught.value.what) == (file, STARTS[4], what)
    assert str(caught.value).startswith(f"{file}: {what} at byte offset {STARTS[4]}")


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("partitions", [2, 3, 4, 6, 10])
def test_partitions_over_a_damaged_file_cover_it_exactly_once(tmp_path, case, partitions):
    data, _, ids, end = CASES[case]
    write(tmp_path, data)
    source = source_for(tmp_path, "deadletter")
    plan = source.plan("patients", partitions)
    assert [p.lower for p in plan[1:]] == [p.upper for p in plan[:-1]]  # contiguous byte ranges
    assert plan[0].lower == 0 and plan[-1].upper is None
    assert {p.lower for p in plan[1:]} <= {STARTS[n] for n in ids}  # splits only where intact documents start
    _, read, rejects = read_all(source, partitions)
    assert read == ids  # each once, in file order
    assert [r.source_key for r in rejects] == [f"patients.bson@{STARTS[4]}-{end}"]


@pytest.mark.parametrize("case", ["length 0", "length 3 too large", "damage across two documents"])
def test_resuming_after_any_batch_neither_repeats_nor_skips(tmp_path, case):
    data, _, ids, end = CASES[case]
    write(tmp_path, data)
    source = source_for(tmp_path, "deadletter", records=2)
    (partition,) = source.plan("patients", 1)
    batches = list(source.read(partition))
    damage = next(index for index, b in enumerate(batches) if b.rejects)
    for index, batch in enumerate(batches):
        rest = list(source.read(partition, resume_after=batch.resume_after))
        expected = [r["_id"] for b in batches[index + 1:] for r in b.records]
        assert [r["_id"] for b in rest for r in b.records] == expected
        assert [r.source_key for b in rest for r in b.rejects] == (
            [f"patients.bson@{STARTS[4]}-{end}"] if index < damage else [])
    assert [r["_id"] for b in batches for r in b.records] == ids
    # the batch right after the damage: resuming there re-reports nothing and skips nothing
    after = list(source.read(partition, resume_after=batches[damage + 1].resume_after))
    assert not any(b.rejects for b in after)
    assert [r["_id"] for b in after for r in b.records] == [
        r["_id"] for b in batches[damage + 2:] for r in b.records]


def test_nested_documents_inside_a_damaged_one_are_not_taken_for_documents(tmp_path):
    """The last document cut short: its nested document and array decode on their own, but have
    no `_id` (and no document follows), so the whole tail is one damaged range."""
    cut = STARTS[9] + ENCODED[9].index(b"tags") + 4 + 1 + len(bson.encode({"0": "a", "1": 9}))
    assert bson.decode(CLEAN[cut - len(bson.encode({"0": "a", "1": 9})):cut]) == {"0": "a", "1": 9}
    file = write(tmp_path, CLEAN[:cut])
    _, read, rejects = read_all(source_for(tmp_path, "deadletter"))
    assert read == list(range(9))
    assert [(r.source_key, r.reason) for r in rejects] == [(
        f"patients.bson@{STARTS[9]}-{cut}",
        reason(file, f"truncated document ({cut - STARTS[9]} of {LENGTH} bytes)", STARTS[9], cut,
               "no whole document follows before the end of the file"))]


def test_a_nested_document_with_its_own_id_is_not_taken_for_a_document(tmp_path):
    """Subdocuments with an `_id` (as some object mappers write them) decode on their own and have
    an `_id`; what follows one inside the damaged document is not a document, so it is passed."""
    encoded = [bson.encode({"_id": n, "visits": [{"_id": 1000 + n, "ward": "B"}], "name": f"patient {n}"})
               for n in range(6)]
    starts = [sum(len(e) for e in encoded[:n]) for n in range(7)]
    data = bytearray(b"".join(encoded))
    data[starts[2]:starts[2] + 4] = b"\x00\x00\x00\x00"
    nested = bson.encode({"_id": 1002, "ward": "B"})
    assert data.index(nested, starts[2]) < starts[3]  # the nested document is there, whole
    file = write(tmp_path, bytes(data))
    _, read, rejects = read_all(source_for(tmp_path, "deadletter"))
    assert read == [0, 1, 3, 4, 5]
    assert [(r.source_key, r.reason) for r in rejects] == [
        (f"patients.bson@{starts[2]}-{starts[3]}",
         reason(file, "implausible document length 0", starts[2], starts[3]))]


def test_a_partition_never_reads_past_its_end(tmp_path):
    """Hand-made bounds inside document 4: the first range reports [start of 4, bound), the second
    [bound, start of 5); every other document is read by exactly one of them."""
    file = write(tmp_path, CLEAN)
    source = source_for(tmp_path, "deadletter")
    bound = STARTS[4] + 10
    first = Partition("dump", "patients", 0, 2, 0, bound)
    second = Partition("dump", "patients", 1, 2, bound, None)
    _, read_first, rejects_first = read_all_of(source, first)
    _, read_second, rejects_second = read_all_of(source, second)
    assert (read_first, read_second) == ([0, 1, 2, 3], [5, 6, 7, 8, 9])
    assert [(r.source_key, r.reason) for r in rejects_first] == [(
        f"patients.bson@{STARTS[4]}-{bound}",
        reason(file, f"truncated document (10 of {LENGTH} bytes)", STARTS[4], bound))]
    assert [r.source_key for r in rejects_second] == [f"patients.bson@{bound}-{STARTS[5]}"]


def read_all_of(source, partition):
    batches = list(source.read(partition))
    return batches, [r["_id"] for b in batches for r in b.records], [r for b in batches for r in b.rejects]


@pytest.mark.parametrize("change", ["grows", "shrinks"])
def test_a_file_that_changes_size_while_it_is_read_is_an_error(tmp_path, change):
    """Its bytes past the size it had when opened would be left unread (or, when it shrinks, the
    documents already read no longer match it): never a success, even with `deadletter`."""
    file = write(tmp_path, CLEAN)
    source = source_for(tmp_path, "deadletter")
    (partition,) = source.plan("patients", 1)
    reading = source.read(partition)
    assert [r["_id"] for r in next(reading).records] == [0, 1, 2]
    file.write_bytes(CLEAN + ENCODED[0] if change == "grows" else CLEAN[:STARTS[5]])
    with pytest.raises(CorruptFile) as caught:
        list(reading)
    assert str(caught.value).startswith(
        f"{file}: the file changed size while it was read ({len(CLEAN)} bytes when opened, read to there) "
        f"at byte offset {len(CLEAN)}")


# -- .bson.gz --------------------------------------------------------------------------------

def payload_documents(count: int) -> list[bytes]:
    """Documents whose contents barely compress, so that a cut in the gzip data falls among them."""
    return [bson.encode({"_id": n, "note": "".join(hashlib.sha256(f"{n}.{k}".encode()).hexdigest()
                                                   for k in range(4))})
            for n in range(count)]


GZIP_RESYNC = "decompression cannot resume after damage in a gzip stream"


def gzip_reason(file, what: str, reached: int, start: int) -> str:
    return (f"{what} at uncompressed byte offset {reached} of {file}; bytes {start} to the end of the file "
            f"skipped: {GZIP_RESYNC}")


def test_a_file_that_is_not_gzip(tmp_path):
    file = write(tmp_path, CLEAN, name="patients.bson.gz")
    write(tmp_path, CLEAN, name="visits.bson")
    with pytest.raises(CorruptFile) as caught:
        read_all(source_for(tmp_path, "error"))
    assert str(caught.value).startswith(
        f"{file}: not gzip data (no gzip header) at uncompressed byte offset 0")
    source = source_for(tmp_path, "deadletter", tables=("patients", "visits"))
    batches, read, rejects = read_all(source)
    assert read == []
    assert [(r.source_key, r.reason) for r in rejects] == [
        ("patients.bson.gz@0-EOF", gzip_reason(file, "not gzip data (no gzip header)", 0, 0))]
    assert [b.resume_after for b in batches] == [{"settled": 0}]
    assert read_all(source, table="visits")[1] == list(range(10))  # the other collection reads on


def test_a_truncated_gzip_loads_the_documents_before_the_break(tmp_path):
    documents = payload_documents(40)
    data = b"".join(documents)
    compressed = gzip.compress(data)
    cut = compressed[:len(compressed) // 2]
    reached = len(zlib.decompressobj(wbits=31).decompress(cut))  # what any gzip reader can recover
    ends = [sum(len(d) for d in documents[:n + 1]) for n in range(len(documents))]
    whole = sum(end <= reached for end in ends)
    assert 0 < whole < 40 and reached not in ends  # the cut falls inside a document
    file = write(tmp_path, cut, name="patients.bson.gz")
    what = "gzip data ends before its end-of-stream marker (the file is truncated)"

    source = source_for(tmp_path, "error", records=7)
    seen = []
    with pytest.raises(CorruptFile) as caught:
        for batch in source.read(source.plan("patients", 1)[0]):
            seen += [r["_id"] for r in batch.records]
    assert seen == list(range(whole))
    assert str(caught.value).startswith(f"{file}: {what} at uncompressed byte offset {reached}")

    batches, read, rejects = read_all(source_for(tmp_path, "deadletter", records=7))
    assert read == list(range(whole))
    assert [(r.source_key, r.reason) for r in rejects] == [
        (f"patients.bson.gz@{ends[whole - 1]}-EOF", gzip_reason(file, what, reached, ends[whole - 1]))]
    assert batches[-1].resume_after == {"settled": 0}


def test_damage_inside_the_compressed_stream_cannot_be_passed(tmp_path):
    """Two gzip members (as concatenated .gz files are); the second's deflate data starts with an
    invalid block type. Its documents are lost: decompression cannot find a way back in."""
    documents = payload_documents(40)
    second = bytearray(gzip.compress(b"".join(documents[20:])))
    second[10] = 0x07  # the first deflate block header: final block, type 3 (reserved, invalid)
    file = write(tmp_path, gzip.compress(b"".join(documents[:20])) + bytes(second), name="patients.bson.gz")
    end = sum(len(d) for d in documents[:20])
    what = "gzip data cannot be decompressed (Error -3 while decompressing data: invalid block type)"
    with pytest.raises(CorruptFile) as caught:
        read_all(source_for(tmp_path, "error"))
    assert str(caught.value).startswith(f"{file}: {what} at uncompressed byte offset {end}")
    _, read, rejects = read_all(source_for(tmp_path, "deadletter"))
    assert read == list(range(20))
    assert [(r.source_key, r.reason) for r in rejects] == [
        (f"patients.bson.gz@{end}-EOF", gzip_reason(file, what, end, end))]


def test_bson_damage_inside_a_gzip_file_resynchronises(tmp_path):
    data, what, ids, end = CASES["length 0"]
    file = write(tmp_path, gzip.compress(data), name="patients.bson.gz")
    _, read, rejects = read_all(source_for(tmp_path, "deadletter"))
    assert read == ids
    assert [(r.source_key, r.reason) for r in rejects] == [
        (f"patients.bson.gz@{STARTS[4]}-{end}", reason(file, what, STARTS[4], end))]


# -- oplog -----------------------------------------------------------------------------------

def test_a_damaged_oplog_is_always_an_error(tmp_path):
    """Oplog entries are never skipped: the state replayed from the others would be silently wrong."""
    write(tmp_path, CLEAN)
    entries = [bson.encode({"ts": bson.Timestamp(10 + n, 1), "op": "i", "ns": "clinic.patients",
                            "o": {"_id": 100 + n}}) for n in range(4)]
    oplog = bytearray(b"".join(entries))
    oplog[len(entries[0]):len(entries[0]) + 4] = b"\x00\x00\x00\x00"
    (tmp_path / "oplog.bson").write_bytes(bytes(oplog))
    with pytest.raises(CorruptFile) as caught:
        source_for(tmp_path, "deadletter").plan("patients", 1)
    assert str(caught.value).startswith(
        f"{tmp_path / 'oplog.bson'}: implausible document length 0 at byte offset {len(entries[0])}")
    (tmp_path / "oplog.bson").unlink()
    (tmp_path / "oplog.bson.gz").write_bytes(gzip.compress(b"".join(entries))[:-8])  # no CRC-32 and size
    with pytest.raises(CorruptFile) as caught:
        source_for(tmp_path, "deadletter").consistent_point()
    assert str(caught.value).startswith(
        f"{tmp_path / 'oplog.bson.gz'}: gzip data ends before its end-of-stream marker (the file is "
        f"truncated) at uncompressed byte offset {len(b''.join(entries))}")


def test_a_gzip_checksum_mismatch_stops_the_run_whatever_on_corrupt_says(tmp_path):
    """The CRC-32 is checked after the member's documents were read: they may be altered and no
    reject could say which, so even `on_corrupt: deadletter` stops instead of loading them."""
    documents = payload_documents(10)
    data = b"".join(documents)
    compressed = bytearray(gzip.compress(data))
    compressed[-8] ^= 0xFF  # the member's CRC-32 (the last 8 bytes: CRC-32, then the size)
    file = write(tmp_path, bytes(compressed), name="patients.bson.gz")
    for on_corrupt in ("error", "deadletter"):
        with pytest.raises(CorruptFile) as caught:
            read_all(source_for(tmp_path, on_corrupt))
        assert str(caught.value).startswith(
            f"{file}: gzip checksum (CRC-32) of the decompressed data does not match: the compressed data is "
            f"damaged and the documents read from it may be altered, so the run stops whatever on_corrupt "
            f"says at uncompressed byte offset {len(data)}\n"
            "  hint: take the dump again: this file cannot be loaded as it is")
