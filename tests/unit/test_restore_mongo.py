"""mongodump folders with oplogs, written here the way mongodump lays them out."""

import gzip
from datetime import UTC, datetime
from pathlib import Path

import bson
import pytest
from bson.timestamp import Timestamp

from etl.restore.chain import ChainError, Kind, PositionGap
from etl.restore.mongo import chain_from_dumps, oplog_gaps, position, read_oplog_range

T = 1_764_000_000  # 2025-11-24T16:00:00Z


def oplog(times: list[tuple[int, int]]) -> bytes:
    return b"".join(bson.encode({"ts": Timestamp(T + s, i), "op": "u", "ns": "clinic.patients",
                                 "o": {"$v": 2, "diff": {"u": {"name": "x"}}}, "o2": {"_id": s}})
                    for s, i in times)


def full_dump(root: Path, name: str, times: list[tuple[int, int]], *, gz: bool = False) -> Path:
    folder = root / name
    (folder / "clinic").mkdir(parents=True)
    (folder / "clinic" / "patients.bson").write_bytes(b"".join(bson.encode({"_id": i}) for i in range(3)))
    (folder / "clinic" / "patients.metadata.json").write_text('{"indexes": [], "uuid": ""}')
    data = oplog(times)
    if gz:
        (folder / "oplog.bson.gz").write_bytes(gzip.compress(data))
    else:
        (folder / "oplog.bson").write_bytes(data)
    return folder


def oplog_slice(root: Path, name: str, times: list[tuple[int, int]]) -> Path:
    folder = root / name / "local"
    folder.mkdir(parents=True)
    (folder / "oplog.rs.bson").write_bytes(oplog(times))
    return folder.parent


def at(seconds: int, inc: int = 1) -> int:
    return position(Timestamp(T + seconds, inc))


def test_oplog_range_reads_first_and_last(tmp_path):
    folder = full_dump(tmp_path, "sun", [(0, 1), (0, 2), (5, 1)], gz=True)
    span = read_oplog_range(folder / "oplog.bson.gz")
    assert (span.first, span.last, span.entries) == (Timestamp(T, 1), Timestamp(T + 5, 1), 3)


def test_continuous_chain_is_planned(tmp_path):
    folders = [full_dump(tmp_path, "dump-sun", [(0, 1), (10, 1)]),
               oplog_slice(tmp_path, "oplog-1", [(10, 1), (50, 1), (100, 1)]),
               oplog_slice(tmp_path, "oplog-2", [(100, 1), (150, 1), (200, 1)]),
               full_dump(tmp_path, "dump-mon", [(300, 1), (310, 1)])]
    chain = chain_from_dumps(folders)
    assert [(b.name, b.kind) for b in chain.backups] == [("dump-sun", Kind.FULL), ("oplog-1", Kind.LOG),
                                                         ("oplog-2", Kind.LOG), ("dump-mon", Kind.FULL)]
    assert chain.plan(at(120)).names == ["dump-sun", "oplog-1", "oplog-2"]
    assert chain.plan(at(60)).names == ["dump-sun", "oplog-1"]
    assert chain.plan(at(310)).names == ["dump-mon"]
    assert chain.plan(datetime.fromtimestamp(T + 150, UTC)).names == ["dump-sun", "oplog-1", "oplog-2"]


def test_gap_between_dumps_names_both(tmp_path):
    folders = [full_dump(tmp_path, "dump-sun", [(0, 1), (10, 1)]),
               oplog_slice(tmp_path, "oplog-1", [(10, 1), (50, 1)]),
               full_dump(tmp_path, "dump-mon", [(300, 1), (310, 1)])]
    chain = chain_from_dumps(folders)
    with pytest.raises(PositionGap, match=f"gap between oplog-1 \\(ends at Timestamp\\({T + 50}, 1\\)\\) and "
                                          f"dump-mon \\(starts at Timestamp\\({T + 300}, 1\\)\\)"):
        chain.plan(at(200))
    assert [(a.name, b.name) for a, b in oplog_gaps(chain)] == [("oplog-1", "dump-mon")]


def test_slices_that_only_touch_are_not_proven_continuous(tmp_path):
    folders = [full_dump(tmp_path, "dump-sun", [(0, 1), (10, 1)]),
               oplog_slice(tmp_path, "oplog-1", [(10, 2), (50, 1)])]
    chain = chain_from_dumps(folders)
    assert [(a.name, b.name) for a, b in oplog_gaps(chain)] == [("dump-sun", "oplog-1")]
    with pytest.raises(PositionGap, match="gap between dump-sun .* and oplog-1"):
        chain.plan(at(40))


def test_dump_without_oplog_entries_has_no_point(tmp_path):
    folder = full_dump(tmp_path, "dump-sun", [])
    with pytest.raises(ChainError, match="oplog.bson holds no oplog entries"):
        chain_from_dumps([folder])
