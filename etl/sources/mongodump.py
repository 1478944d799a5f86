"""The `mongodump` source: a mongodump output folder read without any server.

Layout (https://www.mongodb.com/docs/database-tools/mongodump/): `<path>/<db>/<coll>.bson`
(concatenated BSON documents, each starting with its 4-byte little-endian length),
`<coll>.metadata.json` (options and indexes), `.gz` variants from `--gzip`, and
`<path>/oplog.bson` from `--oplog`. Files are read in 1 MiB blocks and framed by length prefix;
each batch is decoded straight from its block by one C call, and memory stays bounded by the
batch limits. Partitions are byte ranges of the `.bson` file, aligned to
document boundaries; a batch's resume position is the byte offset after it.

With `apply_oplog`, the oplog's entries for the collection are replayed onto the base data
(mongo_oplog) and the last partition, after its byte range, loads the keys the oplog alone
decides (resume position `{"settled": n}`), so the result matches the source at the oplog's
last timestamp whatever order partitions run in.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Literal

import bson
from pydantic import BaseModel, ConfigDict

from etl.errors import EtlError
from etl.records import Batch, Json, Partition, Reject
from etl.redact import RedactedRepr
from etl.sources import bson_values
from etl.sources.base import BatchLimits, SampledTable
from etl.sources.mongo_oplog import DELETED, OplogReplay

log = logging.getLogger(__name__)

READ_BUFFER = 1 << 20


class MongodumpTable(SampledTable):
    """One dumped collection (the key in `tables` is the collection name)."""


class Config(RedactedRepr, BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["mongodump"]
    path: str
    """The dump folder (mongodump's `--out`), holding `<database>/` and maybe `oplog.bson`."""
    database: str
    tables: dict[str, MongodumpTable]
    on_corrupt: Literal["error", "deadletter"] = "error"
    """`error`: a corrupt or truncated file stops the run, naming the file and byte offset.
    `deadletter`: readable documents load; the damage is a reject with its byte offset."""
    apply_oplog: bool = True
    """Replay `oplog.bson` (when present) so the data matches the dump's consistent point."""


def open_source(name: str, config: Config, limits: BatchLimits) -> MongodumpSource:
    return MongodumpSource(name, config, limits)


class CorruptFile(EtlError):
    """A dump file is truncated or damaged at a byte offset."""

    def __init__(self, file: Path, offset: int, what: str) -> None:
        self.file = file
        self.offset = offset
        self.what = what
        super().__init__(f"{file}: {what} at byte offset {offset}",
                         hint="take the dump again, or set `on_corrupt: deadletter` to load the "
                              "readable documents and record the damage")


def open_bson(path: Path) -> IO[bytes]:
    if path.name.endswith(".gz"):
        return io.BufferedReader(gzip.GzipFile(path, "rb"), READ_BUFFER)  # type: ignore[arg-type]
    return open(path, "rb", buffering=READ_BUFFER)  # noqa: SIM115 - the caller closes it


def iter_runs(stream: IO[bytes], file: Path, start: int, end: int | None, limits: BatchLimits
              ) -> Iterator[tuple[int, int, bson_values.Buffer]]:
    """Yield (start offset, end offset, documents) runs of whole documents within the limits.

    Reads the file in large blocks and walks the length prefixes inside them; a run is a
    memoryview of its block (a block begins with the unused rest of the one before), so the
    documents are not copied again before they are decoded. Runs before damage are yielded,
    then CorruptFile is raised."""
    if start:
        stream.seek(start)
    data = memoryview(b"")
    base = start  # file offset of data[0]
    position = 0  # where the next run starts, within data
    exhausted = False
    while True:
        stop = len(data) if end is None else end - base
        run_end, count, _ = bson_values.frame(data, position, stop, limits.records, limits.bytes)
        at_end = end is not None and base + run_end >= end
        fault = None if count == limits.records or at_end else bson_values.framing_fault(data, run_end)
        if fault is not None and fault[1] and not exhausted:  # the next document needs more bytes
            chunk = stream.read(max(READ_BUFFER, len(data) - position))  # doubles for a huge document
            if not chunk:
                exhausted = True
                continue
            rest = data[position:]
            data = memoryview(b"".join((rest, chunk)) if rest else chunk)
            base += position
            position = 0
            continue
        if count:
            yield base + position, base + run_end, data[position:run_end]
            position = run_end
        if at_end or (fault is not None and position == len(data)):
            return
        if fault is not None:
            raise CorruptFile(file, base + position, fault[0])


def iter_frames(stream: IO[bytes], file: Path, start: int = 0, end: int | None = None
                ) -> Iterator[tuple[int, bytes]]:
    """Yield (offset, document bytes) for each framed document from `start` until `end`.

    Only the length prefix and the trailing NUL are checked here; the content is checked when
    decoded. Raises CorruptFile at the first document that is not framed right."""
    if start:
        stream.seek(start)
    offset = start
    read = stream.read
    while end is None or offset < end:
        prefix = read(4)
        if not prefix:
            return
        fault = bson_values.framing_fault(prefix, 0)
        if fault is not None and (len(prefix) < 4 or not fault[1]):  # no plausible length to read
            raise CorruptFile(file, offset, fault[0])
        document = prefix + read(int.from_bytes(prefix, "little") - 4)
        fault = bson_values.framing_fault(document, 0)
        if fault is not None:
            raise CorruptFile(file, offset, fault[0])
        yield offset, document
        offset += len(document)


class MongodumpSource:
    """A Source (etl/sources/base.py) over one database of a mongodump folder."""

    def __init__(self, name: str, config: Config, limits: BatchLimits) -> None:
        self.name = name
        self.config = config
        self.limits = limits
        self.folder = Path(config.path)
        self._replays: dict[str, OplogReplay] = {}

    # -- Source protocol ---------------------------------------------------------------------

    def check(self) -> None:
        database = self.folder / self.config.database
        if not database.is_dir():
            folders = sorted(p.name for p in self.folder.iterdir() if p.is_dir()) \
                if self.folder.is_dir() else []
            raise EtlError(f"source {self.name!r}: no folder {database} in the dump",
                           hint=f"`path` must be mongodump's --out folder; it holds the databases: "
                                f"{', '.join(folders) or '(none)'}")
        missing = sorted(table for table in self.config.tables
                         if self._data_file(table, required=False) is None)
        if missing:
            raise EtlError(f"source {self.name!r}: collection(s) {', '.join(missing)} not in the dump "
                           f"{database}; it has: {', '.join(self.collections()) or '(no collections)'}",
                           hint="fix the collection names under `tables`")
        for table in self.config.tables:
            for index in self.indexes(table):
                log.info("dump index to recreate on the target", extra={
                    "source": self.name, "collection": table, "index": index.get("name"),
                    "keys": json.dumps(index.get("key"), default=str)})

    def plan(self, table: str, partitions: int) -> list[Partition]:
        file = self._data_file(table)
        self._replay(table)  # a dump whose oplog cannot be replayed fails at planning
        edges: list[Any] = [0, *self._split_offsets(file, partitions), None]
        return [Partition(self.name, table, index, len(edges) - 1, edges[index], edges[index + 1])
                for index in range(len(edges) - 1)]

    def read(self, partition: Partition, *, resume_after: Json = None,
             fields: Sequence[str] | None = None) -> Iterator[Batch]:
        """Base documents of the byte range; the last partition then yields the keys the oplog
        settles. Positions: a byte offset (int), then `{"settled": n}`."""
        replay = self._replay(partition.table)
        last = partition.upper is None
        if not isinstance(resume_after, dict):
            file = self._data_file(partition.table)
            start = resume_after if resume_after is not None else (partition.lower or 0)
            base_done: Json = {"settled": 0} if last else partition.upper
            for batch in self._read_file(partition.table, file, start, partition.upper, base_done):
                if replay is not None:
                    batch.records = [kept for kept in map(replay.on_base, batch.records) if kept is not None]
                if fields is not None:
                    batch.records = [_project(record, fields) for record in batch.records]
                yield batch
                if batch.resume_after == base_done:
                    break
        if last and replay is not None:
            settled_from = resume_after["settled"] if isinstance(resume_after, dict) else 0
            yield from self._read_settled(replay, settled_from, fields)

    def key_text(self, table: str, record: dict) -> str:
        return bson_values.key_text(record)

    def sample(self, table: str, n: int) -> list[dict]:
        records: list[dict] = []
        for batch in self._read_file(table, self._data_file(table), 0, None, None):
            records.extend(batch.records)
            if len(records) >= n:
                break
        return records[:n]

    def close(self) -> None:
        self._replays.clear()

    # -- dump metadata -----------------------------------------------------------------------

    def collections(self) -> list[str]:
        names = set()
        for path in (self.folder / self.config.database).glob("*.bson*"):
            if path.name.endswith((".bson", ".bson.gz")):
                names.add(path.name.removesuffix(".gz").removesuffix(".bson"))
        return sorted(names)

    def indexes(self, table: str) -> list[dict]:
        """Index specs from `<coll>.metadata.json` (name, key, unique, ...), to recreate on the target."""
        base = self.folder / self.config.database / f"{table}.metadata.json"
        for path, opener in ((base, open), (base.with_name(base.name + ".gz"), gzip.open)):
            if path.exists():
                with opener(path, "rt", encoding="utf-8") as handle:
                    try:
                        metadata = bson.json_util.loads(handle.read())
                    except ValueError as error:
                        raise EtlError(f"{path}: not valid JSON ({error})") from None
                return list(metadata.get("indexes", []))
        return []

    def consistent_point(self) -> Json:
        """The dump's consistent point: the last oplog timestamp ({"$timestamp": {t, i}}), or
        None for a dump taken without --oplog."""
        file = self._oplog_file()
        if file is None:
            return None
        last = None
        with open_bson(file) as stream:
            for offset, raw in iter_frames(stream, file):
                last = self._decode_oplog(file, offset, raw).get("ts")
        return last

    # -- internals ---------------------------------------------------------------------------

    def _data_file(self, table: str, *, required: bool = True) -> Path | None:
        base = self.folder / self.config.database / f"{table}.bson"
        for path in (base, base.with_name(base.name + ".gz")):
            if path.exists():
                return path
        if required:
            raise EtlError(f"source {self.name!r}: collection {table!r} not in the dump "
                           f"{self.folder / self.config.database}; it has: {', '.join(self.collections())}")
        return None

    def _oplog_file(self) -> Path | None:
        for name in ("oplog.bson", "oplog.bson.gz"):
            if (self.folder / name).exists():
                return self.folder / name
        return None

    def _split_offsets(self, file: Path, partitions: int) -> list[int]:
        """Document-aligned offsets splitting an uncompressed file into byte ranges of about equal
        size (a gzip file cannot be entered in the middle: it is one partition)."""
        if partitions <= 1 or file.name.endswith(".gz"):
            return []
        size = file.stat().st_size
        targets = [size * index // partitions for index in range(1, partitions)]
        offsets: list[int] = []
        with open(file, "rb", buffering=READ_BUFFER) as stream:
            offset = 0
            while targets and offset < size:
                prefix = stream.read(4)
                length = int.from_bytes(prefix, "little") if len(prefix) == 4 else 0
                if length < 5:
                    break  # damage: the last partition reaches it and reports it
                if offset >= targets[0]:
                    offsets.append(offset)
                    while targets and targets[0] <= offset:
                        targets.pop(0)
                offset += length
                stream.seek(offset)
        return offsets

    def _read_file(self, table: str, file: Path, start: int, end: int | None, base_done: Json = None
                   ) -> Iterator[Batch]:
        """Batches of the documents in [start, end); after damage (with `on_corrupt: deadletter`)
        the reject's batch resumes at `base_done`, as nothing after it can be framed."""
        with open_bson(file) as stream:
            try:
                for run_start, run_end, run in iter_runs(stream, file, start, end, self.limits):
                    yield bson_values.gc_paused(self._batch, table, file, run, run_start, run_end)
            except CorruptFile as damage:
                if self.config.on_corrupt == "error":
                    raise
                yield Batch([], base_done, [self._damage_reject(table, damage)])

    def _batch(self, table: str, file: Path, run: bson_values.Buffer, run_start: int, next_offset: int
               ) -> Batch:
        def on_corrupt(offset: int, error: Exception) -> Reject:
            damage = CorruptFile(file, run_start + offset, f"undecodable document ({type(error).__name__})")
            if self.config.on_corrupt == "error":
                raise damage
            return self._damage_reject(table, damage)

        records, rejects = bson_values.decode_run(run, table, on_corrupt)
        return Batch(records, next_offset, rejects)

    def _damage_reject(self, table: str, damage: CorruptFile) -> Reject:
        return Reject(table=table, source_key=f"{damage.file.name}@{damage.offset}",
                      reason=f"{damage.what} at byte offset {damage.offset} of {damage.file}",
                      stage="extract", value_type="bson")

    def _replay(self, table: str) -> OplogReplay | None:
        if not self.config.apply_oplog:
            return None
        file = self._oplog_file()
        if file is None:
            return None
        if table not in self._replays:
            replay = OplogReplay(f"{self.config.database}.{table}")
            with open_bson(file) as stream:
                replay.add_all(self._decode_oplog(file, offset, raw)
                               for offset, raw in iter_frames(stream, file))
            self._replays[table] = replay
        return self._replays[table]

    def _decode_oplog(self, file: Path, offset: int, raw: bytes) -> dict:
        try:
            return bson.decode(raw, bson_values.CANONICAL_CODEC)
        except Exception as error:  # noqa: BLE001 - any decoding failure is damage at this offset
            raise CorruptFile(file, offset, f"undecodable oplog entry ({type(error).__name__}); the dump's "
                                            "consistent point cannot be reached") from None

    def _read_settled(self, replay: OplogReplay, position: int, fields: Sequence[str] | None
                      ) -> Iterator[Batch]:
        settled = replay.settled()
        while position < len(settled):
            chunk = settled[position:position + self.limits.records]
            position += len(chunk)
            records = [h.settled if fields is None else _project(h.settled, fields)
                       for h in chunk if h.settled is not DELETED]
            deletes = [{"_id": h.key} for h in chunk if h.settled is DELETED]
            yield Batch(records, {"settled": position}, deletes=deletes)


def _project(record: dict, fields: Sequence[str]) -> dict:
    return {name: record[name] for name in ("_id", *fields) if name in record}

