"""Damaged mongodump folders through a job, the way a run opens them: the job is loaded, planned
(the mapping checked against a sample, the file split into partitions) and every partition read and
mapped. Random byte flips, truncations and appended garbage in data files, oplogs and their gzip
forms, bad metadata.json and odd file names: every failure is an EtlError naming the file (and for
damaged data the byte offset), or a counted reject with `on_corrupt: deadletter` — never another
exception. Seeds are fixed; the whole file runs in a few seconds."""

from __future__ import annotations

import gzip
import json
import os
import random
import re
from pathlib import Path

import bson
import pytest
from bson.timestamp import Timestamp

from etl.engine.planning import plan_job
from etl.engine.resources import JobResources
from etl.errors import EtlError
from etl.job import load_job

MAPPING = """\
version: 1
source: {{key: [_id]}}
targets: {{pg: postgres}}
outputs:
  - {{target: pg, table: {table}, key: [id], columns: {{
      id: {{from: _id, type: int}}, name: {{from: name, type: string}}, tags: {{from: tags, type: json}}}}}}
"""

JOB = """\
version: 1
name: fuzz
sources:
  dump:
    type: mongodump
    path: {dump}
    database: clinic
    on_corrupt: {on_corrupt}
    tables:
      patients: {{mapping: patients.yaml, partitions: {partitions}}}
      visits: {{mapping: visits.yaml, partitions: 1}}
targets:
  pg: {{type: postgres, dsn: "host=localhost dbname=unused"}}
batch: {{records: 4}}
"""


def documents(base: int, count: int) -> list[dict]:
    return [{"_id": base + n, "name": f"person {n}", "tags": ["a", {"n": n}, [n, None]]}
            for n in range(count)]


def oplog() -> bytes:
    entries = [
        {"op": "i", "ns": "clinic.patients", "o": {"_id": 100, "name": "new", "tags": []}},
        {"op": "u", "ns": "clinic.patients", "o2": {"_id": 1}, "o": {"$v": 1, "$set": {"name": "renamed",
                                                                                      "tags.1.n": 7}}},
        {"op": "u", "ns": "clinic.patients", "o2": {"_id": 2},
         "o": {"$v": 2, "diff": {"u": {"name": "d"}, "stags": {"a": True, "u1": "x", "l": 2}}}},
        {"op": "d", "ns": "clinic.patients", "o": {"_id": 3}},
        {"op": "n", "ns": "", "o": {"msg": "noop"}},
        {"op": "c", "ns": "admin.$cmd", "o": {"applyOps": [
            {"op": "u", "ns": "clinic.visits", "o2": {"_id": 501}, "o": {"$set": {"name": "v"}}}]}},
    ]
    return b"".join(bson.encode({"ts": Timestamp(1_764_000_000 + n, 1), **entry})
                    for n, entry in enumerate(entries))


METADATA = json.dumps({"options": {}, "indexes": [{"v": 2, "key": {"_id": 1}, "name": "_id_"},
                                                  {"v": 2, "key": {"name": 1}, "name": "name_1"}]})


def write_dump(folder: Path) -> dict[str, bytes]:
    """The intact dump: plain patients, gzipped visits, metadata for both (one gzipped), an oplog."""
    files = {
        "clinic/patients.bson": b"".join(bson.encode(d) for d in documents(0, 30)),
        "clinic/patients.metadata.json": METADATA.encode(),
        "clinic/visits.bson.gz": gzip.compress(b"".join(bson.encode(d) for d in documents(500, 12)), mtime=0),
        "clinic/visits.metadata.json.gz": gzip.compress(METADATA.encode(), mtime=0),
        "oplog.bson": oplog(),
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return files


BAD_METADATA = [b"", b"{", b"[1, 2]", b"null", b'{"indexes": 5}', b'{"indexes": [1, "x", null]}',
                b'{"indexes": [{"name": 1, "key": [1, 2]}]}', b'{"indexes": {"a": 1}}',
                b"\xff\xfe\x00garbage",
                b"[" * 50_000 + b"]" * 50_000, b'{"a": ' * 5000 + b"1" + b"}" * 5000,
                b'{"indexes": [{"key": {"$date": "not a date"}}]}', b'{"$oid": "xyz"}',
                b'{"$binary": 5}', b'{"indexes": [{"$numberLong": []}]}', b'{"$regex": 1}',
                b'{"$date": {"$numberLong": "x"}}', b'{"$numberDecimal": "1e99999999"}', b'{"$uuid": "zz"}']


def damage(rng: random.Random, data: bytes) -> bytes:
    """A random flip of up to 8 bytes, a truncation, or appended garbage."""
    kind = rng.choice(["flip", "flip", "truncate", "append"])
    if not data or kind == "append":
        return data + rng.randbytes(rng.randint(1, 40))
    if kind == "truncate":
        return data[:rng.randrange(len(data))]
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def mutate(rng: random.Random, folder: Path, files: dict[str, bytes]) -> str:
    """Damage the dump in one of many ways; returns what was done (for failure messages)."""
    choice = rng.randrange(10)
    if choice <= 2:  # raw damage to any file as stored (gzip bytes included)
        name = rng.choice(sorted(files))
        (folder / name).write_bytes(damage(rng, files[name]))
        return f"raw damage to {name}"
    if choice == 3:  # damage inside a gzip stream, recompressed: a valid gzip holding damaged BSON/JSON
        name = rng.choice([n for n in files if n.endswith(".gz")])
        inner = damage(rng, gzip.decompress(files[name]))
        (folder / name).write_bytes(gzip.compress(inner, mtime=0))
        return f"damaged content of {name}"
    if choice == 4:  # bad metadata.json (plain or gzipped)
        name = rng.choice(["clinic/patients.metadata.json", "clinic/visits.metadata.json.gz"])
        text = rng.choice(BAD_METADATA)
        (folder / name).write_bytes(gzip.compress(text, mtime=0) if name.endswith(".gz") else text)
        return f"metadata {name} = {text[:40]!r}"
    if choice == 5:  # a damaged oplog entry that still decodes: fields of other types, or missing
        entries = [bson.decode(e) for e in _split(files["oplog.bson"])]
        entry = rng.choice(entries)
        field = rng.choice(["o", "o2", "op", "ns", "ts", "diff", "$set", "applyOps"])
        value = rng.choice([None, 5, "x", [], {}, {"_id": None}, {"$set": 3}, {"$set": {"a.b.c": 1}},
                            {"diff": {"u": 3}}, {"diff": {"sx": {"a": True, "u99999999": 1}}},
                            {"$set": {"tags.99999999": 1}}, {"$set": {"tags.x.y": 1}}, {"$unset": 7},
                            {"applyOps": 5}, {"applyOps": [5]}, "clinic.patients", "i", "u", "d", "c"])
        inside = field in ("diff", "$set", "applyOps") and isinstance(entry.get("o"), dict)
        target = entry["o"] if inside else entry
        if value is None and rng.random() < 0.5:
            target.pop(field, None)
        else:
            target[field] = value
        (folder / "oplog.bson").write_bytes(b"".join(bson.encode(e) for e in entries))
        return f"oplog entry {entry}"
    if choice == 6:  # odd names beside or instead of the real files
        odd = rng.choice(["clinic/.bson", "clinic/patients.bson.gz", "clinic/ spaced name .bson",
                          "clinic/new\nline.bson", "clinic/\u00e9\u00e8.bson", "clinic/patients.bson.gz.bson",
                          "clinic/visits.bson", "oplog.bson.gz"])
        (folder / odd).write_bytes(damage(rng, files["clinic/patients.bson"]))
        return f"odd file {odd!r}"
    if choice == 7:  # a folder, an empty file or a dangling link where a file should be
        name = rng.choice(sorted(files))
        (folder / name).unlink()
        how = rng.choice(["folder", "empty", "loop"])
        if how == "folder":
            (folder / name).mkdir()
        elif how == "empty":
            (folder / name).write_bytes(b"")
        else:
            os.symlink(folder / name, folder / name)
        return f"{how} in place of {name}"
    if choice == 8:  # a file name that is not UTF-8
        raw = os.fsencode(folder / "clinic") + b"/bad\xff\xfename.bson"
        with open(raw, "wb") as handle:
            handle.write(files["clinic/patients.bson"][:50])
        return "non-UTF-8 file name"
    (folder / "clinic/patients.bson").write_bytes(damage(rng, damage(rng, files["clinic/patients.bson"])))
    return "two rounds of damage to patients.bson"


def _split(data: bytes) -> list[bytes]:
    out, at = [], 0
    while at < len(data):
        size = int.from_bytes(data[at:at + 4], "little")
        out.append(data[at:at + size])
        at += size
    return out


def run_like_a_run(job_path: Path) -> tuple[int, int]:
    """Load, check the source (folders, collections, the indexes metadata.json lists), plan (the mapping
    checked against a sample, the file split) and read every partition, mapping each batch as the worker
    does; returns (records mapped, rejects)."""
    job = load_job(job_path)
    resources = JobResources(job)
    checked = resources.open_source("dump")
    checked.check()
    checked.close()
    plan = plan_job(job, resources=resources)
    mapped = rejected = 0
    for table in plan.tables:
        mapping = resources.mapping(table.source, table.table)
        source = resources.open_source(table.source)
        try:
            for partition in table.partitions:
                for batch in source.read(partition, fields=mapping.fields):
                    result = mapping.apply(batch.records,
                                           lambda record, t=table.table: source.key_text(t, record),
                                           source_table=table.table)
                    mapped += len(batch.records) - len(result.rejects)
                    rejected += len(batch.rejects) + len(result.rejects)
        finally:
            source.close()
    return mapped, rejected


def prepare(folder: Path, on_corrupt: str, partitions: int) -> dict[str, bytes]:
    files = write_dump(folder / "dump")
    for table in ("patients", "visits"):
        (folder / f"{table}.yaml").write_text(MAPPING.format(table=table))
    (folder / "fuzz.yaml").write_text(JOB.format(dump=json.dumps(str(folder / "dump")), on_corrupt=on_corrupt,
                                                 partitions=partitions))
    return files


def test_the_intact_dump_reads_whole(tmp_path):
    prepare(tmp_path, "error", 3)
    # 30 patients, 1 inserted by the oplog and 1 deleted; 12 visits
    assert run_like_a_run(tmp_path / "fuzz.yaml") == (30 + 1 - 1 + 12, 0)




@pytest.mark.parametrize("block", range(6))
def test_damaged_dumps_fail_with_an_etl_error_naming_the_file_or_count_a_reject(tmp_path, block):
    for seed in range(block * 100, block * 100 + 100):
        rng = random.Random(seed)
        folder = tmp_path / str(seed)
        folder.mkdir()
        on_corrupt = rng.choice(["error", "deadletter"])
        files = prepare(folder, on_corrupt, rng.randint(1, 3))
        what = mutate(rng, folder / "dump", files)
        try:
            run_like_a_run(folder / "fuzz.yaml")
        except EtlError as error:
            text = str(error)
            assert str(folder / "dump") in text, f"seed {seed} ({what}): {text}"
            if "offset" in text:
                assert re.search(r"at (uncompressed )?byte offset \d+", text), f"seed {seed} ({what}): {text}"
        except Exception as error:  # noqa: BLE001 - the point of the test
            raise AssertionError(f"seed {seed} ({what}): raw {type(error).__name__}: {error}") from error


# -- what the fuzzing found, pinned ---------------------------------------------------------------


def oplog_with(folder: Path, index: int, entry: dict) -> int:
    """Replace oplog entry `index` (keeping its timestamp); returns its byte offset."""
    entries = [bson.decode(e) for e in _split(oplog())]
    entries[index] = {"ts": entries[index]["ts"], **entry}
    encoded = [bson.encode(e) for e in entries]
    (folder / "dump" / "oplog.bson").write_bytes(b"".join(encoded))
    return sum(len(e) for e in encoded[:index])


def failure(folder: Path) -> EtlError:
    with pytest.raises(EtlError) as caught:
        run_like_a_run(folder / "fuzz.yaml")
    return caught.value


@pytest.mark.parametrize("index, entry, what", [
    (3, {"op": "d", "ns": "clinic.patients", "o": "i"},
     "oplog entry of an unexpected shape (TypeError): a field is missing or of the wrong type"),
    (0, {"op": "i", "ns": "clinic.patients", "o": {"name": "no key"}},
     "oplog entry of an unexpected shape (KeyError): a field is missing or of the wrong type"),
    (5, {"op": "c", "ns": "admin.$cmd", "o": {"applyOps": [5]}},
     "oplog entry of an unexpected shape (TypeError): a field is missing or of the wrong type"),
    (3, {"op": {"email": "someone@example.com"}, "ns": "clinic.patients", "o": {"_id": 3}},
     "oplog entry for clinic.patients with op of type dict cannot be replayed"),
    (1, {"op": "u", "ns": "clinic.patients", "o2": {"_id": 1}, "o": {"$inc": {"n": 1}}},
     "oplog update uses $inc, which cannot be replayed"),
    # pending updates meet their base document only while the partition is read
    (1, {"op": "u", "ns": "clinic.patients", "o2": {"_id": 1}, "o": {"$set": {"tags.99999999": 1}}},
     "oplog update sets array element 99999999, which no BSON document can hold"),
    (1, {"op": "u", "ns": "clinic.patients", "o2": {"_id": 1}, "o": {"$set": {"name.x": 1}}},
     "oplog entry of an unexpected shape (TypeError): a field is missing or of the wrong type"),
    (2, {"op": "u", "ns": "clinic.patients", "o2": {"_id": 2},
         "o": {"diff": {"stags": {"a": True, "l": "x"}}}},
     "oplog entry of an unexpected shape (TypeError): a field is missing or of the wrong type"),
])
def test_an_oplog_entry_that_cannot_be_replayed_names_the_oplog_and_its_offset(tmp_path, index, entry, what):
    prepare(tmp_path, "deadletter", 2)
    offset = oplog_with(tmp_path, index, entry)
    error = failure(tmp_path)
    assert error.message == f"{tmp_path / 'dump' / 'oplog.bson'}: {what} at byte offset {offset}"
    assert "someone@example.com" not in str(error)


@pytest.mark.parametrize("text, what", [
    (b'{"indexes": [1, "x"]}', "expected an object whose `indexes` is a list of objects"),
    (b"[1, 2]", "expected an object whose `indexes` is a list of objects"),
    (b'{"a": "\xff"}', "not UTF-8 text at byte offset 7"),
    (b"[" * 50_000, "not valid JSON (nested too deeply)"),
    (b'{"$oid": "xyz"}', "not valid Extended JSON (InvalidId: 'xyz' is not a valid ObjectId, it must be a "
                         "12-byte input or a 24-character hex string)"),
])
def test_bad_metadata_json_is_an_error_naming_the_file(tmp_path, text, what):
    prepare(tmp_path, "error", 1)
    (tmp_path / "dump" / "clinic" / "patients.metadata.json").write_bytes(text)
    assert failure(tmp_path).message == f"{tmp_path / 'dump' / 'clinic' / 'patients.metadata.json'}: {what}"


@pytest.mark.parametrize("payload, what", [
    (b"not gzip", "cannot be read (Not a gzipped file (b'no'))"),
    (gzip.compress(METADATA.encode(), mtime=0)[:30],
     "cannot be read (Compressed file ended before the end-of-stream marker was reached)"),
])
def test_bad_gzip_metadata_is_an_error_naming_the_file(tmp_path, payload, what):
    prepare(tmp_path, "error", 1)
    (tmp_path / "dump" / "clinic" / "visits.metadata.json.gz").write_bytes(payload)
    assert failure(tmp_path).message == f"{tmp_path / 'dump' / 'clinic' / 'visits.metadata.json.gz'}: {what}"


def test_a_folder_in_place_of_a_data_file_is_an_error_naming_it(tmp_path):
    prepare(tmp_path, "error", 1)
    data = tmp_path / "dump" / "clinic" / "patients.bson"
    data.unlink()
    data.mkdir()
    assert failure(tmp_path).message == f"source 'dump': {data} is not a regular file"


def test_truncated_data_with_deadletter_loads_the_whole_documents_and_counts_one_reject(tmp_path):
    files = prepare(tmp_path, "deadletter", 3)
    data = files["clinic/patients.bson"]
    sizes = [len(bson.encode(d)) for d in documents(0, 30)]
    cut = sum(sizes[:20]) + 5  # 20 whole documents, then 5 bytes of the 21st
    (tmp_path / "dump" / "clinic" / "patients.bson").write_bytes(data[:cut])
    # 20 patients less the one the oplog deletes, plus the one it inserts; 12 visits; one damaged range
    assert run_like_a_run(tmp_path / "fuzz.yaml") == (20 - 1 + 1 + 12, 1)
