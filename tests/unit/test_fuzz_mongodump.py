"""Targeted BSON damage in a mongodump file: the exact reason and byte offset, bounded memory, no crash.

Complements tests/unit/test_mongodump_fuzz.py (random flips, cuts and appends) with the attacks a
hostile file would use: lying length prefixes (huge, negative, too small), a bad element type, a
string length running past its document, a missing terminator and plain garbage.
"""

from __future__ import annotations

import struct
import tracemalloc

import bson
import pytest

from etl.errors import EtlError
from etl.sources.base import BatchLimits
from etl.sources.mongodump import Config, open_source

DOCUMENTS = [bson.encode({"_id": n, "name": f"p{n}"}) for n in range(4)]
CLEAN = b"".join(DOCUMENTS)
HINT = ("take the dump again, or set `on_corrupt: deadletter` to load the readable documents and record "
        "the damage")


def damaged(kind: str) -> bytes:
    data = bytearray(CLEAN)
    if kind == "huge length":
        data[54:58] = struct.pack("<i", 0x7FFFFFFF)
    elif kind == "negative length":
        data[54:58] = struct.pack("<i", -5)
    elif kind == "length below the minimum":
        data[54:58] = struct.pack("<i", 3)
    elif kind == "unknown element type":
        data[27 + 4] = 0x77
    elif kind == "string length past the document":
        at = CLEAN.index(b"name\x00", 27) + 5
        data[at:at + 4] = struct.pack("<i", 1000)
    elif kind == "missing terminator":
        data[53] = 1
    elif kind == "garbage":
        return bytes(range(256)) * 3
    return bytes(data)


RESUMED = "reading resumed at the next whole document"
CASES = {  # (offset, end of the damaged range, reason, ids read with `deadletter`, why the range ends there)
    "huge length": (54, 81, "implausible document length 2147483647", [0, 1, 3], RESUMED),
    "negative length": (54, 81, "implausible document length 4294967291", [0, 1, 3], RESUMED),
    "length below the minimum": (54, 81, "implausible document length 3", [0, 1, 3], RESUMED),
    "unknown element type": (27, 54, "undecodable document (InvalidBSON)", [0, 2, 3], RESUMED),
    "string length past the document": (27, 54, "undecodable document (InvalidBSON)", [0, 2, 3], RESUMED),
    "missing terminator": (27, 54, "document does not end with a NUL byte", [0, 2, 3], RESUMED),
    "garbage": (0, 768, "implausible document length 50462976", [],
                "no whole document follows before the end of the file"),
}


def read(root, on_corrupt):
    config = Config(type="mongodump", path=str(root), database="db", on_corrupt=on_corrupt,
                    tables={"c": {"mapping": "m.yaml"}})
    source = open_source("dump", config, BatchLimits(records=2))
    records, rejects = [], []
    for partition in source.plan("c", 1):
        for batch in source.read(partition):
            records += batch.records
            rejects += batch.rejects
    return records, rejects


@pytest.mark.parametrize("kind", sorted(CASES))
def test_damage_names_the_reason_and_byte_offset(tmp_path, kind):
    offset, end, reason, readable, after = CASES[kind]
    (tmp_path / "db").mkdir()
    file = tmp_path / "db" / "c.bson"
    file.write_bytes(damaged(kind))

    tracemalloc.start()
    try:
        with pytest.raises(EtlError) as caught:
            read(tmp_path, "error")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(caught.value).endswith(f"{reason} at byte offset {offset}\n  hint: {HINT}"), str(caught.value)
    assert str(file) in str(caught.value)
    # a lying length prefix never allocates what it claims (2 GiB); reads use batch-sized buffers
    assert peak < 64 * 1024 * 1024

    records, rejects = read(tmp_path, "deadletter")
    assert [r["_id"] for r in records] == readable
    assert [(r.source_key, r.reason, r.stage) for r in rejects] == [
        (f"c.bson@{offset}-{end}",
         f"{reason} at byte offset {offset} of {file}; bytes {offset} to {end} (exclusive) skipped: {after}",
         "extract")]
