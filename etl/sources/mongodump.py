"""The `mongodump` source: a mongodump output folder read without any server.

Layout (https://www.mongodb.com/docs/database-tools/mongodump/): `<path>/<db>/<coll>.bson`
(concatenated BSON documents, each starting with its 4-byte little-endian length),
`<coll>.metadata.json` (options and indexes), `.gz` variants from `--gzip`, and
`<path>/oplog.bson` from `--oplog`. Files are read in 1 MiB blocks and framed by length prefix;
each batch is decoded straight from its block by one C call, and memory stays bounded by the
batch limits. Partitions are byte ranges of the `.bson` file, aligned to
document boundaries; a batch's resume position is the byte offset after it.

Damage (DumpReader): with `on_corrupt: error` the batches before it are yielded, then
CorruptFile names the file and byte offset. With `deadletter` a damaged byte range is one
reject naming the range and what was wrong, and reading resynchronises on the next document
(`bson_values.resync`); a broken gzip stream is one reject from the last whole document to the
end of the file. Each read consumes its byte range to the last byte, so the documents read and
the damaged ranges account for every byte of the file.

With `apply_oplog`, the oplog's entries for the collection are replayed onto the base data
(mongo_oplog) and the last partition, after its byte range, loads the keys the oplog alone
decides (resume position `{"settled": n}`), so the result matches the source at the oplog's
last timestamp whatever order partitions run in.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, cast, overload

import bson
import bson.errors
from pydantic import BaseModel, ConfigDict

from etl.errors import EtlError
from etl.records import Batch, Json, Partition, Reject
from etl.redact import RedactedRepr
from etl.sources import bson_values, mongo_keys
from etl.sources.base import BatchLimits, ChangeCapture, SampledTable
from etl.sources.mongo_oplog import DELETED, OplogEntryError, OplogReplay

log = logging.getLogger(__name__)

READ_BUFFER = 1 << 20


class MongodumpTable(SampledTable):
    """One dumped collection (the key in `tables` is the collection name)."""


JOB_SKELETON = """\
    type: mongodump
    path: ${env:ETL_SOURCE_DUMP}          # mongodump's --out folder, holding <database>/*.bson
    database: ${env:ETL_SOURCE_DATABASE}
"""
"""This source's section of a new job file (`--scaffold-job mongodump`), indented under its name."""


class Config(RedactedRepr, BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["mongodump"]
    path: str
    """The dump folder (mongodump's `--out`), holding `<database>/` and maybe `oplog.bson`."""
    database: str
    tables: dict[str, MongodumpTable]
    on_corrupt: Literal["error", "deadletter"] = "error"
    """`error`: a corrupt or truncated file stops the run (after the batches before the damage),
    naming the file and byte offset. `deadletter`: every readable document loads; each damaged
    byte range is one reject naming the range, and reading resumes at the next whole document
    (a broken gzip stream cannot be resumed: the rest of that file is the reject)."""
    apply_oplog: bool = True
    """Replay `oplog.bson` (when present) so the data matches the dump's consistent point."""


def open_source(name: str, config: Config, limits: BatchLimits) -> MongodumpSource:
    return MongodumpSource(name, config, limits)


class CorruptFile(EtlError):
    """A dump file is truncated or damaged at a byte offset."""

    def __init__(self, file: Path, offset: int, what: str, *, unit: str = "byte offset",
                 hint: str = "take the dump again, or set `on_corrupt: deadletter` to load the readable "
                             "documents and record the damage") -> None:
        self.file = file
        self.offset = offset
        self.what = what
        super().__init__(f"{file}: {what} at {unit} {offset}", hint=hint)


@dataclass(frozen=True)
class Damage:
    """A damaged byte range [start, end) of a dump file: no document in it could be read."""

    file: Path
    start: int
    end: int | None
    """Exclusive; None for the rest of a gzip file, which decompression cannot get past."""
    what: str
    """What was wrong where the damage was found, e.g. `implausible document length 0`."""
    offset: int
    """Where the damage was found: `start`, or for a broken gzip stream the uncompressed
    offset reached."""
    after: str
    """Why the range ends where it does."""

    @property
    def unit(self) -> str:
        return "byte offset" if self.end is not None else "uncompressed byte offset"

    def error(self) -> CorruptFile:
        return CorruptFile(self.file, self.offset, self.what, unit=self.unit)

    def reject(self, table: str) -> Reject:
        end = "EOF" if self.end is None else self.end
        until = "the end of the file" if self.end is None else f"{self.end} (exclusive)"
        return Reject(table=table, source_key=f"{self.file.name}@{self.start}-{end}",
                      reason=f"{self.what} at {self.unit} {self.offset} of {self.file}; bytes {self.start} "
                             f"to {until} skipped: {self.after}",
                      stage="extract", value_type="bson")


_GZIP_FAILURES = (EOFError, gzip.BadGzipFile, zlib.error)  # what damaged gzip data raises (not I/O errors)


def open_bson(path: Path) -> IO[bytes]:
    """The file opened for reading (gunzipped when `.gz`); one that cannot be opened (a folder, a
    dangling link...) is an EtlError naming it."""
    try:
        if path.name.endswith(".gz"):
            return cast(IO[bytes], gzip.GzipFile(path, "rb"))
        return open(path, "rb", buffering=READ_BUFFER)  # noqa: SIM115 - the caller closes it
    except OSError as error:
        raise EtlError(f"{path}: cannot be read: {error.strerror or type(error).__name__}",
                       hint="a dump file must be a regular file") from None


class _Blocks:
    """The bytes of a dump file from an offset on, read in blocks: `data` starts at file offset
    `base` and holds the unused rest of the block before it.

    A `.bson.gz` whose decompression fails ends where it failed: the bytes decompressed before
    it are kept, and `broken` says what went wrong (nothing after it can be reached). A plain
    file that ends before the size it had when opened raises CorruptFile."""

    def __init__(self, stream: IO[bytes], file: Path, start: int) -> None:
        self.stream = stream
        self.file = file
        self.gzip = isinstance(stream, gzip.GzipFile)
        self.size = None if self.gzip else os.fstat(stream.fileno()).st_size
        """The file's size when plain (known before reading); None for a gzip stream."""
        self.data = memoryview(b"")
        self.base = start
        self.exhausted = False
        self.broken: str | None = None
        if start:
            try:
                stream.seek(start)
            except _GZIP_FAILURES as error:
                self._break(error, start)
                self.exhausted = True

    def window(self, end: int | None, *, final: bool = False) -> tuple[memoryview, int | None]:
        """`data` cut at the range's end (`end`, or the end of the file), and that end within
        `data`: None while unknown (a gzip stream not read to its end, or, unless `final`,
        broken before it)."""
        if end is None:
            end = self.size
        if end is None and self.exhausted and (final or self.broken is None):
            end = self.base + len(self.data)
        if end is None:
            return self.data, None
        stop = end - self.base
        return (self.data if stop >= len(self.data) else self.data[:stop]), stop

    def more(self, keep: int) -> int:
        """Read another block, dropping the bytes before `data[keep]`; returns how many were
        dropped. A block is at least as large as what is kept, so a long document doubles the
        read until it is whole."""
        chunk = self._read(max(READ_BUFFER, len(self.data) - keep))
        if not chunk:
            reached = self.base + len(self.data)
            if self.size is not None and reached < self.size:
                raise CorruptFile(self.file, reached, f"the file ends before its size when opened "
                                                      f"({self.size} bytes): it changed while it was read")
            self.exhausted = True
            return 0
        rest = self.data[keep:]
        self.data = memoryview(b"".join((rest, chunk)) if rest else chunk)
        self.base += keep
        return keep

    def find_document(self, position: int, end: int | None) -> int:
        """Where, within `data` (which may move on), the first document from `position` on
        starts that passes `bson_values.resync`, reading more as needed; the range's end when
        none does."""
        while True:
            data, stop = self.window(end, final=True)
            found, judged = bson_values.resync(data, position, stop)
            if judged:
                return found
            position = found - self.more(found)

    def check_unchanged(self) -> None:
        """A plain file read to its end must still have the size it had when opened."""
        if self.size is not None and os.fstat(self.stream.fileno()).st_size != self.size:
            raise CorruptFile(self.file, self.size, f"the file changed size while it was read ({self.size} "
                                                    "bytes when opened, read to there)")

    def _read(self, size: int) -> bytes:
        if not self.gzip:
            return self.stream.read(size)
        if self.broken is not None:  # nothing after a decompression failure can be trusted
            return b""
        pieces: list[bytes] = []
        got = 0
        try:
            while got < size:  # read1: a failure loses none of the bytes decompressed before it
                piece = self.stream.read1(size - got)  # type: ignore[attr-defined]
                if not piece:
                    break
                pieces.append(piece)
                got += len(piece)
        except _GZIP_FAILURES as error:
            self._break(error, self.base + len(self.data) + got)
        return b"".join(pieces)

    def _break(self, error: Exception, reached: int) -> None:
        """Note why the gzip stream broke at uncompressed offset `reached` (a checksum mismatch raises)."""
        text = str(error)
        if isinstance(error, EOFError):
            self.broken = "gzip data ends before its end-of-stream marker (the file is truncated)"
        elif "Not a gzipped file" in text:
            self.broken = "not gzip data (no gzip header)"
        elif "CRC check failed" in text:
            # The check comes at the end of a gzip member, after its documents were handed on: they
            # may be altered, and no reject can name which. A reject here would let the run load
            # them and go green (validation reads the same stream), so it stops the run whatever
            # `on_corrupt` says.
            raise CorruptFile(self.file, reached,
                              "gzip checksum (CRC-32) of the decompressed data does not match: the "
                              "compressed data is damaged and the documents read from it may be altered, "
                              "so the run stops whatever on_corrupt says", unit="uncompressed byte offset",
                              hint="take the dump again: this file cannot be loaded as it is") from None
        else:
            self.broken = f"gzip data cannot be decompressed ({text})"


_NO_GZIP_RESYNC = "decompression cannot resume after damage in a gzip stream"

_ONE_DOCUMENT = BatchLimits(records=1, bytes=bson_values.MAX_DOCUMENT_BYTES)


@dataclass
class DumpReader:
    """Frames the byte range [start, end) of a dump file (`end` None: to the end of the file)
    into runs of whole documents within the batch limits and, with `resync`, damaged ranges.

    Iterating yields (start offset, end offset, documents) runs, each a memoryview of its block
    (the documents are not copied before they are decoded), and `Damage` ranges. Framing reads
    one length prefix and one byte per document, in place. At damage (a document not framed
    right, or one the consumer reports with `undecodable`) the reader, once every run before
    it has been yielded, either raises CorruptFile or, with `resync`, finds the next document
    (`bson_values.resync`), yields the bytes in between as one `Damage` and goes on from there:
    nothing intact after damage is skipped. Searching only happens after damage.

    Runs and damaged ranges together cover [start, end) exactly, end to end: a document that
    would run past `end` is damage, as no partition may read a byte of the next one. Reading
    ends only at the range's end (the end of a plain file is its size when opened; a plain file
    that shrinks or grows meanwhile raises CorruptFile), so no byte of a dump is left unread
    while the source reports success; a gzip stream that breaks is one `Damage` to its end,
    since decompression cannot get past it."""

    stream: IO[bytes]
    file: Path
    start: int
    end: int | None
    limits: BatchLimits
    _: KW_ONLY
    resync: bool
    _undecodable: tuple[int, str] | None = field(default=None, init=False)

    def undecodable(self, offset: int, what: str) -> None:
        """The run just yielded holds a document at `offset` that does not decode: the reader
        treats it as damage there (the documents before it are the consumer's to keep)."""
        self._undecodable = (offset, what)

    def __iter__(self) -> Iterator[tuple[int, int, bson_values.Buffer] | Damage]:
        blocks = _Blocks(self.stream, self.file, self.start)
        records, max_bytes = self.limits.records, self.limits.bytes
        position = 0  # where the next run starts, within blocks.data
        while True:
            data, stop = blocks.window(self.end)
            base = blocks.base
            run_end, count, _ = bson_values.frame(data, position, len(data), records, max_bytes)
            fault = None
            if run_end != stop and count < records:
                fault = bson_values.framing_fault(data, run_end, stop)
                if fault is not None and fault[1] and not blocks.exhausted:  # the next document needs bytes
                    position -= blocks.more(position)
                    continue
            if count:
                yield base + position, base + run_end, data[position:run_end]
            position = run_end
            if self._undecodable is not None:
                offset, what = self._undecodable
                self._undecodable = None
                position = offset - base
            elif run_end == stop:
                if self.end is None:
                    blocks.check_unchanged()
                return
            elif fault is None:
                continue
            elif fault[1]:  # only a broken gzip stream ends inside a document (a plain file raised in more)
                damage = Damage(self.file, base + position, None, str(blocks.broken), base + len(data),
                                _NO_GZIP_RESYNC)
                if not self.resync:
                    raise damage.error()
                yield damage
                return
            else:
                what = fault[0]
            if not self.resync:
                raise CorruptFile(self.file, base + position, what)
            found = blocks.find_document(position + 1, self.end)
            yield self._resynced(blocks, base + position, blocks.base + found, what)
            position = found

    def _resynced(self, blocks: _Blocks, start: int, end: int, what: str) -> Damage:
        """The damaged range from `start` to the document found at `end`, or to the end of the
        file (a partition's end is the start of a document: planning found it the same way)."""
        _, stop = blocks.window(self.end, final=True)
        if self.end is not None or stop is None or end != blocks.base + stop:
            after = "reading resumed at the next whole document"
        elif blocks.broken is not None:
            after = "no whole document follows before the gzip data breaks"
        else:
            after = "no whole document follows before the end of the file"
        return Damage(self.file, start, end, what, start, after)


def iter_frames(stream: IO[bytes], file: Path, start: int = 0, end: int | None = None
                ) -> Iterator[tuple[int, bytes]]:
    """Yield (offset, document bytes) for each framed document from `start` until `end`.

    Framing is the data files' (DumpReader, one document per run); the content is checked when
    decoded. Used for the oplog, which is never resynchronised: skipping a damaged entry would
    leave the state replayed from the others silently wrong, so the first damage raises
    CorruptFile naming the file and offset, whatever `on_corrupt` says."""
    for item in DumpReader(stream, file, start, end, _ONE_DOCUMENT, resync=False):
        assert not isinstance(item, Damage)  # without resync, damage raises
        yield item[0], bytes(item[2])


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
                    try:
                        kept = map(replay.on_base, batch.records)
                        batch.records = [record for record in kept if record is not None]
                    except OplogEntryError as error:
                        raise self._oplog_damage(error) from None
                if fields is not None:
                    batch.records = bson_values.project(batch.records, fields)
                yield batch
        if last and replay is not None:
            settled_from = resume_after["settled"] if isinstance(resume_after, dict) else 0
            yield from self._read_settled(replay, settled_from, fields)

    def key_text(self, table: str, record: dict) -> str:
        return bson_values.key_text(record)

    def key_range(self, partition: Partition) -> tuple[str | None, str | None]:
        """A dump is split by byte offsets of its data file, not by key: `byte 1,048,576`."""
        return tuple(  # type: ignore[return-value]
            None if not bound else f"byte {bound:,}" for bound in (partition.lower, partition.upper))

    def key_of(self, table: str, record: dict) -> Json:
        return mongo_keys.key_json(record["_id"])

    def change_capture(self, table: str) -> ChangeCapture | None:
        """None: a dump is a snapshot with no changes to follow. A later dump is read whole again (the
        engine then deletes what it no longer holds); the oplog's settled deletes come out of `read`
        as `Batch.deletes`."""
        return None

    def count(self, table: str) -> int | None:
        """None: a dump file says how many documents it holds only by being read. Its reader consumes
        every partition to the last byte of its range or fails, and damage is a reject."""
        return None

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
        """Index specs from `<coll>.metadata.json` (name, key, unique, ...), to recreate on the target.
        A file that cannot be read, is not (gzipped) UTF-8 Extended JSON, or whose `indexes` is not a
        list of objects is an EtlError naming it."""
        base = self.folder / self.config.database / f"{table}.metadata.json"
        for path, opener in ((base, open), (base.with_name(base.name + ".gz"), gzip.open)):
            if not path.exists():
                continue
            unit = "uncompressed byte offset" if path.name.endswith(".gz") else "byte offset"
            try:
                with opener(path, "rb") as handle:
                    text = handle.read(bson_values.MAX_DOCUMENT_BYTES).decode("utf-8")
                metadata = bson.json_util.loads(text)
            except UnicodeDecodeError as error:
                raise EtlError(f"{path}: not UTF-8 text at {unit} {error.start}") from None
            except (ValueError, TypeError, KeyError, ArithmeticError, bson.errors.BSONError) as error:
                # JSON and Extended JSON ({"$oid": ...}, {"$date": ...}) errors, and a gzip header's
                raise EtlError(f"{path}: not valid Extended JSON ({type(error).__name__}: {error})") from None
            except RecursionError:
                raise EtlError(f"{path}: not valid JSON (nested too deeply)") from None
            except (*_GZIP_FAILURES, OSError) as error:
                reason = getattr(error, "strerror", None) or error
                raise EtlError(f"{path}: cannot be read ({reason})") from None
            indexes = metadata.get("indexes", []) if isinstance(metadata, dict) else None
            if not isinstance(indexes, list) or not all(isinstance(index, dict) for index in indexes):
                raise EtlError(f"{path}: expected an object whose `indexes` is a list of objects",
                               hint="take the dump again")
            return indexes
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

    @overload
    def _data_file(self, table: str) -> Path: ...
    @overload
    def _data_file(self, table: str, *, required: bool) -> Path | None: ...
    def _data_file(self, table: str, *, required: bool = True) -> Path | None:
        base = self.folder / self.config.database / f"{table}.bson"
        for path in (base, base.with_name(base.name + ".gz")):
            if path.exists():
                if not path.is_file():
                    raise EtlError(f"source {self.name!r}: {path} is not a regular file",
                                   hint="a dump file must be a regular file")
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
        """Offsets splitting an uncompressed file into byte ranges of about equal size (a gzip
        file cannot be entered in the middle: it is one partition).

        Found by hopping from length prefix to length prefix, without decoding, as far as each
        target; the split is the first document from there on that passes the resynchronisation
        rule (`bson_values.resync`, which decodes it and the document after it), and framing
        damage on the way is passed the same way. A split is therefore where reading the whole
        file would also find a document, so a damaged range is never cut in two; and as each
        partition reads exactly its byte range, the partitions cover the file exactly once."""
        if partitions <= 1 or file.name.endswith(".gz"):
            return []
        offsets: list[int] = []
        with open_bson(file) as stream:
            blocks = _Blocks(stream, file, 0)
            size = blocks.size or 0
            targets = [size * index // partitions for index in range(1, partitions)]
            position = 0
            while targets:
                data, stop = blocks.window(None)
                target = targets[0] - blocks.base
                if position < target:  # hop over the documents that end by the target
                    position, _, _ = bson_values.frame(data, position, len(data), size, target - position,
                                                       started=True)
                    fault = None if position >= target else bson_values.framing_fault(data, position, stop)
                    if fault is None:
                        if position < target:  # a whole document across the target: the split follows it
                            position += int.from_bytes(data[position:position + 4], "little")
                        continue
                    if fault[1]:
                        position -= blocks.more(position)
                    else:
                        position = blocks.find_document(position + 1, None)
                    continue
                position = blocks.find_document(position, None)
                if blocks.base + position >= size:
                    break
                offsets.append(blocks.base + position)
                while targets and targets[0] <= offsets[-1]:
                    targets.pop(0)
        return offsets

    def _read_file(self, table: str, file: Path, start: int, end: int | None, base_done: Json = None
                   ) -> Iterator[Batch]:
        """Batches of the documents in [start, end), and with `on_corrupt: deadletter` a batch
        holding one reject per damaged range between them (resuming after that range, or at
        `base_done` when the rest of a gzip file is lost). With `error`, every batch before the
        damage is yielded, then CorruptFile is raised."""
        with open_bson(file) as stream:
            reader = DumpReader(stream, file, start, end, self.limits,
                                resync=self.config.on_corrupt == "deadletter")
            for item in reader:
                if isinstance(item, Damage):
                    yield Batch([], base_done if item.end is None else item.end, [item.reject(table)])
                    continue
                run_start, run_end, run = item
                batch, bad = bson_values.gc_paused(self._batch, table, run, run_start, run_end)
                if bad is None or batch.extracted:
                    yield batch
                if bad is not None:
                    reader.undecodable(run_start + bad[0], f"undecodable document ({type(bad[1]).__name__})")

    def _batch(self, table: str, run: bson_values.Buffer, run_start: int, run_end: int
               ) -> tuple[Batch, tuple[int, Exception] | None]:
        """The batch of a run's documents up to the first that does not decode (if any, also
        returned: its offset within the run and the error)."""
        records, rejects, bad = bson_values.decode_intact(run, table)
        return Batch(records, run_end if bad is None else run_start + bad[0], rejects), bad

    def _replay(self, table: str) -> OplogReplay | None:
        if not self.config.apply_oplog:
            return None
        file = self._oplog_file()
        if file is None:
            return None
        if table not in self._replays:
            replay = OplogReplay(f"{self.config.database}.{table}")
            with open_bson(file) as stream:
                try:
                    for offset, raw in iter_frames(stream, file):
                        replay.add(self._decode_oplog(file, offset, raw), offset)
                except OplogEntryError as error:
                    raise self._oplog_damage(error) from None
            self._replays[table] = replay
        return self._replays[table]

    def _oplog_damage(self, error: OplogEntryError) -> CorruptFile:
        """An oplog entry that cannot be replayed, named by its file and byte offset."""
        return CorruptFile(self._oplog_file() or self.folder / "oplog.bson", error.origin, error.reason,
                           hint=error.hint or "take the dump again")

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
            records = [h.settled for h in chunk if h.settled is not DELETED]
            if fields is not None:
                records = bson_values.project(records, fields)
            deletes = [{"_id": h.key} for h in chunk if h.settled is DELETED]
            yield Batch(records, {"settled": position}, deletes=deletes)

