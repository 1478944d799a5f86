"""MongoDB backups: mongodump folders and their oplogs, as a Chain.

- mongodump --oplog writes `oplog.bson` beside the dumped databases: the oplog entries written
  while the dump ran, so `mongorestore --oplogReplay` brings the data to the last entry's `ts`
  https://www.mongodb.com/docs/database-tools/mongodump/#std-option-mongodump.--oplog
- An oplog slice dumped on its own (`mongodump -d local -c oplog.rs --query '{"ts": {"$gte": ...}}'`)
  holds `local/oplog.rs.bson`; it is replayed the same way, and `--oplogLimit` stops before a
  timestamp https://www.mongodb.com/docs/database-tools/mongorestore/#std-option-mongorestore.--oplogLimit
- Oplog entries carry `ts`, a BSON Timestamp (seconds, increment), unique and increasing
  https://www.mongodb.com/docs/manual/core/replica-set-oplog/

A folder with databases is a full backup consistent at its last oplog entry; a folder holding only
an oplog is a log. Oplog entries are idempotent, so consecutive oplogs may overlap; continuity is
proven only by overlap (the next oplog's first entry at or before the previous one's last), since
nothing shows whether entries existed between two timestamps that do not touch.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import IO, Any, cast

import bson
from bson.errors import BSONError
from bson.timestamp import Timestamp

from etl.restore.chain import Backup, Chain, Kind, UnreadableInput
from etl.restore.engine import RestoreEngine, Source

ENGINE = "mongo"
_OPLOG_FILES = ("oplog.bson", "oplog.bson.gz", "local/oplog.rs.bson", "local/oplog.rs.bson.gz")


def position(ts: Timestamp) -> int:
    """A Timestamp on the chain's number line: seconds in the high 32 bits, increment in the low."""
    return (ts.time << 32) | ts.inc


def timestamp(position_: int) -> Timestamp:
    return Timestamp(position_ >> 32, position_ & 0xFFFFFFFF)


def format_position(position_: int) -> str:
    ts = timestamp(position_)
    return f"Timestamp({ts.time}, {ts.inc})"


@dataclass(frozen=True)
class OplogRange:
    """First and last `ts` of an oplog file and how many entries it holds."""

    path: Path
    first: Timestamp
    last: Timestamp
    entries: int


def read_oplog_range(path: str | Path) -> OplogRange:
    """Stream an oplog.bson (optionally gzipped) and keep its first and last timestamps."""
    path = Path(path)
    first = last = None
    entries = 0
    try:
        with _open(path) as handle:
            for entry in _entries(handle, path):
                ts = entry.get("ts")
                if not isinstance(ts, Timestamp):
                    raise UnreadableInput(f"{path}: oplog entry {entries + 1} has no Timestamp ts",
                                          hint="is this an oplog dump (local.oplog.rs)?")
                if last is not None and ts < last:
                    raise UnreadableInput(f"{path}: oplog entry {entries + 1} at {ts} comes after {last}: "
                                          "entries are out of order", hint="dump the oplog sorted by ts")
                first = first or ts
                last = ts
                entries += 1
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise UnreadableInput(f"{path}: damaged gzip data ({error})",
                              hint="the dump file is truncated or corrupt") from None
    except OSError as error:
        raise UnreadableInput(f"cannot read oplog {path}: {error.strerror or error}") from error
    if first is None or last is None:
        raise UnreadableInput(f"{path} holds no oplog entries, so the dump's point in time is unknown",
                              hint="dump with --oplog while writes happen, or add an oplog slice that "
                              "covers it")
    return OplogRange(path, first, last, entries)


def _open(path: Path) -> IO[bytes]:
    return cast(IO[bytes], gzip.open(path, "rb")) if path.suffix == ".gz" else path.open("rb")


def _entries(handle: IO[bytes], path: Path) -> Iterator[dict]:
    try:
        yield from bson.decode_file_iter(handle)
    except BSONError as error:
        raise UnreadableInput(f"{path}: damaged BSON ({error})",
                              hint="the dump file is truncated or corrupt") from error


def backup_from_dump(folder: str | Path, *, name: str | None = None) -> Backup:
    """A full backup (a dump with data and oplog.bson) or a log (an oplog slice) from a dump folder."""
    folder = Path(folder)
    oplog = next((folder / f for f in _OPLOG_FILES if (folder / f).is_file()), None)
    if oplog is None:
        raise UnreadableInput(f"{folder}: no oplog.bson or local/oplog.rs.bson, so its point in time is "
                              "unknown",
                              hint="take dumps with mongodump --oplog")
    span = read_oplog_range(oplog)
    has_data = any(p.suffix in (".bson", ".gz") and p.parent != folder and p.parent.name != "local"
                   for p in folder.rglob("*.bson*"))
    return Backup(
        name=name or folder.name, kind=Kind.FULL if has_data else Kind.LOG,
        start=position(span.first), end=position(span.last),
        finished=span.last.as_datetime().astimezone(UTC),
        details={"oplog": str(oplog), "entries": span.entries,
                 "first": format_position(position(span.first)),
                 "last": format_position(position(span.last))},
    )


def chain_from_dumps(folders: Iterable[str | Path]) -> Chain:
    """A Chain from mongodump folders (full dumps with --oplog, and oplog slices)."""
    return Chain(ENGINE, sorted((backup_from_dump(f) for f in folders), key=lambda b: b.start),
                 format_position=format_position)


def oplog_gaps(chain: Chain) -> list[tuple[Backup, Backup]]:
    """Consecutive backups (by first oplog entry) whose oplogs do not overlap: nothing proves
    the writes between them are in any backup."""
    ordered = sorted(chain.backups, key=lambda b: (b.start, b.end))
    gaps = []
    reach = ordered[0] if ordered else None
    for backup in ordered[1:]:
        assert reach is not None
        if backup.start > reach.end:
            gaps.append((reach, backup))
        if backup.end >= reach.end:
            reach = backup
    return gaps



class Mongo(RestoreEngine):
    """MongoDB: mongodump folders with oplogs; oplog timestamps as positions (SECONDS:INCREMENT)."""

    name = ENGINE
    aliases = ("mongodb",)
    position_name = "ts"
    point_hint = "give an oplog SECONDS:INCREMENT"

    def load_history(self, sources: Sequence[Source], *, wal_archive: str | Path | None = None,
                     verify_files: bool = False) -> Chain:
        if not sources or not all(isinstance(s, str | Path) for s in sources):
            raise self.cannot_read(sources, "mongodump folders")
        return chain_from_dumps([Path(str(s)) for s in sources])

    def native_position(self, value: Any) -> int | None:
        return position(value) if isinstance(value, Timestamp) else None

    def parse_position(self, text: str) -> int | None:
        if re.fullmatch(r"\d+", text):
            # YAML 1.1 reads an unquoted 1700000000:7 as a base-60 integer
            raise UnreadableInput(f"{ENGINE}: restore point {text} is not an oplog timestamp",
                                  hint='write it as quoted text "SECONDS:INCREMENT", '
                                  'e.g. point: "1700000000:7"')
        match = re.fullmatch(r"(\d+):(\d+)", text)
        return position(Timestamp(int(match.group(1)), int(match.group(2)))) if match else None

    def format_position(self, position_: int) -> str:
        ts = timestamp(position_)
        return f"{ts.time}:{ts.inc}"
