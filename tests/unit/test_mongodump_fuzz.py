"""Damaged dump files give a clear error with the byte offset, or rejects — never another exception."""

from __future__ import annotations

import datetime
import gzip
import re

import bson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.errors import EtlError
from etl.sources.base import BatchLimits
from etl.sources.bson_values import NATIVE_CODEC
from etl.sources.mongodump import Config, open_source

DOCUMENTS = [
    {"_id": n, "name": f"patient {n}", "tags": ["a", n, None], "address": {"zip": f"{n:05d}"},
     "born": datetime.datetime(1950 + n, 1, 1, tzinfo=datetime.UTC), "score": n / 3}
    for n in range(8)
]
ENCODED = [bson.encode(d, codec_options=NATIVE_CODEC) for d in DOCUMENTS]
CLEAN = b"".join(ENCODED)
SIZES = [len(e) for e in ENCODED]

damage = st.one_of(
    st.tuples(st.just("flip"), st.lists(st.tuples(st.integers(0, len(CLEAN) - 1), st.integers(0, 255)),
                                         min_size=1, max_size=6)),
    st.tuples(st.just("truncate"), st.integers(0, len(CLEAN) - 1)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=40)),
)


def damaged(kind, detail) -> bytes:
    data = bytearray(CLEAN)
    if kind == "flip":
        for position, value in detail:
            data[position] = value
        return bytes(data)
    if kind == "truncate":
        return bytes(data[:detail])
    return bytes(data) + detail


def read_everything(root, on_corrupt, partitions):
    config = Config(type="mongodump", path=str(root), database="db", on_corrupt=on_corrupt,
                    tables={"c": {"mapping": "m.yaml"}})
    source = open_source("dump", config, BatchLimits(records=3))
    records, rejects = [], []
    for partition in source.plan("c", partitions):
        for batch in source.read(partition):
            records += batch.records
            rejects += batch.rejects
    return records, rejects


RANGE = re.compile(r"c\.bson(?:\.gz)?@(\d+)-(\d+|EOF)")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=damage, gz=st.booleans(), partitions=st.integers(1, 3))
def test_damage_is_an_error_with_offset_or_a_reject(tmp_path_factory, damage, gz, partitions):
    root = tmp_path_factory.mktemp("dump")
    (root / "db").mkdir()
    data = damaged(*damage)
    if gz:
        (root / "db" / "c.bson.gz").write_bytes(gzip.compress(data))
    else:
        (root / "db" / "c.bson").write_bytes(data)
    try:
        records, rejects = read_everything(root, "error", partitions)
        assert rejects == [] or all(r.field_path for r in rejects)  # only date rejects in error mode
    except EtlError as error:
        assert re.search(r"c\.bson(\.gz)?: .* at byte offset \d+", str(error)), str(error)
    records, rejects = read_everything(root, "deadletter", partitions)
    for reject in rejects:
        assert reject.stage == "extract"
        assert reject.field_path or RANGE.fullmatch(reject.source_key)
    # damaged ranges are in file order, disjoint and inside the file
    ranges = [(int(m[1]), int(m[2])) for r in rejects if (m := RANGE.fullmatch(r.source_key))]
    assert all(0 <= start < end <= len(data) for start, end in ranges)
    assert all(end <= after for (_, end), (after, _) in zip(ranges, ranges[1:], strict=False))
    # splitting into partitions changes nothing: the same documents, the same damaged ranges (what
    # is reported wrong at a range's start may differ: a partition cannot look past its end)
    whole_records, whole_rejects = read_everything(root, "deadletter", 1)
    assert list(map(repr, records)) == list(map(repr, whole_records))  # a flipped byte can make a NaN
    assert [r.source_key for r in rejects] == [r.source_key for r in whole_rejects]
    if damage[0] == "truncate":  # exactly the whole documents before the cut load; the rest is one range
        ends = [sum(SIZES[: n + 1]) for n in range(len(SIZES))]
        whole = sum(end <= damage[1] for end in ends)
        assert [r["_id"] for r in records] == list(range(whole))
        assert ranges == ([] if damage[1] in (0, *ends) else [(sum(SIZES[:whole]), damage[1])])
    if damage[0] == "append":  # the dump's documents all load; the garbage is at most one range after them
        assert [r["_id"] for r in records[:len(DOCUMENTS)]] == list(range(len(DOCUMENTS)))
        assert all(start >= len(CLEAN) for start, _ in ranges) and len(ranges) <= 1
