"""PostgreSQL backups: backup_manifest files, backup folders, incremental chains and WAL archives.

- Manifest format (versions 1 and 2): https://www.postgresql.org/docs/current/backup-manifest-format.html
  `Manifest-Checksum` is the SHA-256 of every line before its own; each file entry has `Path`
  (or hex `Encoded-Path`), `Size`, `Checksum-Algorithm` (CRC32C by default, SHA224/256/384/512, NONE)
  and `Checksum`; `WAL-Ranges` list `Timeline`, `Start-LSN`, `End-LSN`; version 2 (PostgreSQL 17)
  adds `System-Identifier`. A CRC32C is written as the hex of its four bytes in memory order
  (little-endian), as `pg_checksum_final` copies it.
- What pg_verifybackup skips on disk: https://www.postgresql.org/docs/current/app-pgverifybackup.html
  (backup_manifest, pg_wal, postgresql.auto.conf, recovery.signal, standby.signal).
- Incremental backups (PostgreSQL 17): https://www.postgresql.org/docs/17/app-pgcombinebackup.html
  backup_label's `INCREMENTAL FROM LSN` / `INCREMENTAL FROM TLI` name the start LSN and timeline of
  the backup it was taken against; pg_combinebackup needs the chain oldest first, of one system.
- WAL segment file names: https://www.postgresql.org/docs/current/wal-internals.html
  timeline, then the segment number as two 8-hex-digit halves.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import google_crc32c

from etl.errors import EtlError
from etl.inputs import parse_json, read_text, whole_number
from etl.restore.chain import Backup, BrokenChain, Chain, ChainError, Kind, PositionGap, UnreadableInput
from etl.restore.engine import RestoreEngine, Source

ENGINE = "postgres"
DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
"""wal_segment_size unless initdb --wal-segsize chose another."""

_NOT_IN_MANIFEST = {"backup_manifest", "pg_wal", "postgresql.auto.conf", "recovery.signal", "standby.signal"}
_SEGMENT = re.compile(r"^[0-9A-F]{24}$")
_HASHES = {"SHA224": "sha224", "SHA256": "sha256", "SHA384": "sha384", "SHA512": "sha512"}


class BackupDamaged(EtlError):
    """A backup folder or its manifest does not match: a file changed, went missing or appeared."""

    exit_code = 1


class MalformedManifest(BackupDamaged, UnreadableInput):
    """A backup_manifest that is missing or breaks a rule of its format (a bad input: exit 2)."""

    exit_code = 2


def parse_lsn(text: str) -> int:
    """`0/3000028` -> 50331688."""
    if not isinstance(text, str):
        raise UnreadableInput(f"{text!r} is not a PostgreSQL LSN", hint="write LSNs as X/Y in hex")
    high, _, low = text.partition("/")
    try:
        high_part, low_part = int(high, 16), int(low, 16)
        if not (0 <= high_part <= 0xFFFFFFFF and 0 <= low_part <= 0xFFFFFFFF):
            raise ValueError(text)
        return (high_part << 32) | low_part
    except ValueError:
        raise UnreadableInput(f"{text!r} is not a PostgreSQL LSN", hint="write LSNs as X/Y in hex") from None


def format_lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


@dataclass(frozen=True)
class ManifestFile:
    path: str
    size: int
    algorithm: str
    checksum: str | None


@dataclass(frozen=True)
class WalRange:
    timeline: int
    start: int
    end: int


@dataclass
class BackupManifest:
    """A parsed and checksum-verified backup_manifest."""

    version: int
    system_identifier: int | None
    files: list[ManifestFile]
    wal_ranges: list[WalRange]


_MANIFEST_FIELDS = ("PostgreSQL-Backup-Manifest-Version", "System-Identifier", "Files", "WAL-Ranges",
                    "Manifest-Checksum")
_FILE_FIELDS = ("Path", "Encoded-Path", "Size", "Last-Modified", "Checksum-Algorithm", "Checksum")
_WAL_RANGE_FIELDS = ("Timeline", "Start-LSN", "End-LSN")
_CHECKSUM_BYTES = {"NONE": 0, "CRC32C": 4, "SHA224": 28, "SHA256": 32, "SHA384": 48, "SHA512": 64}
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})*$")


class _Object(list):
    """A JSON object as its (name, value) pairs in order, told apart from an array."""


def _damaged(path: Path, place: str, rule: str) -> BackupDamaged:
    return MalformedManifest(f"{path}: {place}: {rule}",
                         hint="pg_verifybackup refuses this manifest too; take the backup again or restore "
                         "the original backup_manifest")


def read_manifest(path: str | Path) -> BackupManifest:
    """Parse a backup_manifest by pg_verifybackup's rules (src/common/parse_manifest.c and
    src/bin/pg_verifybackup): each broken rule is a BackupDamaged naming the rule and the place."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise MalformedManifest(f"cannot read {path}: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _damaged(path, f"byte offset {error.start}", "not UTF-8 text") from None
    pairs = parse_json(text, path, error=MalformedManifest, object_pairs_hook=_Object)
    if not isinstance(pairs, _Object):
        raise _damaged(path, "top level", f"unexpected {_json_type(pairs)}: the manifest must be an object")
    fields = _fields(pairs, path, "top level", _MANIFEST_FIELDS, "unrecognized top-level field")
    if not pairs or pairs[0][0] != "PostgreSQL-Backup-Manifest-Version":
        raise _damaged(path, "top level", "expected version indicator (PostgreSQL-Backup-Manifest-Version "
                       "must be the first field)")
    if pairs[-1][0] != "Manifest-Checksum":
        rule = "manifest has no checksum" if "Manifest-Checksum" not in fields else \
            "Manifest-Checksum must be the last field"
        raise _damaged(path, "top level", rule)
    version = _integer(fields["PostgreSQL-Backup-Manifest-Version"], path,
                       "PostgreSQL-Backup-Manifest-Version", "manifest version not an integer")
    if version not in (1, 2):
        raise _damaged(path, "PostgreSQL-Backup-Manifest-Version", f"unexpected manifest version {version}")
    system = fields.get("System-Identifier")
    if system is not None:
        system = _integer(system, path, "System-Identifier", "manifest system identifier not an integer")
        if version == 1:
            raise _damaged(path, "System-Identifier", "a version 1 manifest has no System-Identifier")
    elif version == 2:
        raise _damaged(path, "top level", "a version 2 manifest needs System-Identifier")
    files = [_manifest_file(entry, path, number)
             for number, entry in enumerate(_array(fields, "Files", path), start=1)]
    seen: dict[str, int] = {}
    for number, entry in enumerate(files, start=1):
        if entry.path in seen:
            raise _damaged(path, f"Files entry {number} ({entry.path})",
                           f"duplicate path name (also Files entry {seen[entry.path]})")
        seen[entry.path] = number
    ranges = [_wal_range(entry, path, number)
              for number, entry in enumerate(_array(fields, "WAL-Ranges", path), start=1)]
    _check_manifest_checksum(raw, fields["Manifest-Checksum"], path)
    return BackupManifest(version, system, files, ranges)


def _json_type(value: object) -> str:
    if isinstance(value, _Object):
        return "object"
    return "array" if isinstance(value, list) else "scalar"


def _shown(value: object) -> str:
    return _json_type(value) if isinstance(value, list) else json.dumps(value)


def _fields(pairs: list, path: Path, place: str, allowed: tuple[str, ...], unknown: str) -> dict:
    fields: dict = {}
    for name, value in pairs:
        if name not in allowed:
            raise _damaged(path, place, f"{unknown} {name!r}")
        if name in fields:
            raise _damaged(path, place, f"duplicate field {name!r}")
        fields[name] = value
    return fields


def _array(fields: dict, name: str, path: Path) -> list:
    """`Files` and `WAL-Ranges`: arrays of objects."""
    if name not in fields:
        raise _damaged(path, "top level", f"no {name} array")
    value = fields[name]
    if not isinstance(value, list) or isinstance(value, _Object):
        raise _damaged(path, name, f"unexpected {_json_type(value)}: {name} must be an array")
    for number, entry in enumerate(value, start=1):
        if not isinstance(entry, _Object):
            raise _damaged(path, f"{name} entry {number}", f"unexpected {_json_type(entry)}: "
                           "each entry must be an object")
    return value


def _integer(value: object, path: Path, place: str, rule: str) -> int:
    """A JSON number or digit string holding a non-negative whole number (strtoul's input)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise _damaged(path, place, f"{rule}: {_shown(value)}")


def _manifest_file(entry: list, path: Path, number: int) -> ManifestFile:
    where = f"Files entry {number}"
    fields = _fields(entry, path, where, _FILE_FIELDS, "unexpected file field")
    for name, value in fields.items():
        if isinstance(value, list):
            raise _damaged(path, where, f"{name}: unexpected {_json_type(value)}")
    if "Path" in fields and "Encoded-Path" in fields:
        raise _damaged(path, where, "both path name and encoded path name")
    if "Encoded-Path" in fields:
        encoded = fields["Encoded-Path"]
        try:
            name = bytes.fromhex(encoded).decode("utf-8") \
                if isinstance(encoded, str) and _HEX.match(encoded) else None
        except UnicodeDecodeError:
            name = None
        if name is None:
            raise _damaged(path, where, f"could not decode file name {encoded!r}")
    elif "Path" in fields:
        name = fields["Path"]
    else:
        raise _damaged(path, where, "missing path name")
    parts = name.split("/") if isinstance(name, str) else []
    if not isinstance(name, str) or not name or "\0" in name or name.startswith("/") or ".." in parts:
        raise _damaged(path, where, f"path name {name!r} is not a relative file name")
    where = f"Files entry {number} ({name})"
    if "Size" not in fields:
        raise _damaged(path, where, "missing size")
    size = _integer(fields["Size"], path, where, "file size is not an integer")
    algorithm, checksum = fields.get("Checksum-Algorithm"), fields.get("Checksum")
    if algorithm is None and checksum is not None:
        raise _damaged(path, where, "checksum without algorithm")
    if algorithm is not None and (not isinstance(algorithm, str) or algorithm.upper() not in _CHECKSUM_BYTES):
        raise _damaged(path, where, f"unrecognized checksum algorithm: {json.dumps(algorithm)}")
    algorithm = "NONE" if algorithm is None else algorithm.upper()
    if checksum is not None and (not isinstance(checksum, str) or not _HEX.match(checksum)):
        raise _damaged(path, where, f"invalid checksum: {json.dumps(checksum)}")
    length = len(checksum or "") // 2
    if length != _CHECKSUM_BYTES[algorithm]:
        raise _damaged(path, where, f"{algorithm} checksum of {length} bytes, "
                       f"expected {_CHECKSUM_BYTES[algorithm]}")
    return ManifestFile(path=name, size=size, algorithm=algorithm,
                        checksum=checksum.lower() if checksum else None)


def _wal_range(entry: list, path: Path, number: int) -> WalRange:
    where = f"WAL-Ranges entry {number}"
    fields = _fields(entry, path, where, _WAL_RANGE_FIELDS, "unexpected WAL range field")
    for name, rule in (("Timeline", "missing timeline"), ("Start-LSN", "missing start LSN"),
                       ("End-LSN", "missing end LSN")):
        if name not in fields:
            raise _damaged(path, where, rule)
    timeline = _integer(fields["Timeline"], path, where, "timeline is not an integer")
    lsns = []
    for name, rule in (("Start-LSN", "could not parse start LSN"), ("End-LSN", "could not parse end LSN")):
        try:
            lsns.append(parse_lsn(fields[name]))
        except ChainError:
            raise _damaged(path, where, f"{rule}: {_shown(fields[name])}") from None
    return WalRange(timeline, lsns[0], lsns[1])


def _check_manifest_checksum(raw: bytes, expected: object, path: Path) -> None:
    """The SHA-256 of every byte up to and including the newline before the last line."""
    if raw.count(b"\n") < 2:
        raise _damaged(path, "the manifest text", "expected at least 2 lines")
    if not raw.endswith(b"\n"):
        raise _damaged(path, "the last line", "last line not newline-terminated")
    penultimate = raw.rindex(b"\n", 0, len(raw) - 1)
    if not isinstance(expected, str) or len(expected) != 64 or not _HEX.match(expected):
        raise _damaged(path, "Manifest-Checksum", f"invalid manifest checksum: {json.dumps(expected)}")
    actual = hashlib.sha256(raw[: penultimate + 1]).hexdigest()
    if actual != expected.lower():
        raise BackupDamaged(f"{path}: Manifest-Checksum: manifest checksum mismatch: the manifest says "
                            f"{expected} but its text hashes to {actual}: the manifest was changed",
                            hint="take the backup again or restore the original backup_manifest")


def file_checksum(path: Path, algorithm: str) -> str | None:
    """The checksum pg_basebackup would write for `path` (streamed; files may be large)."""
    if algorithm == "NONE":
        return None
    if algorithm == "CRC32C":
        crc = google_crc32c.Checksum()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                crc.update(chunk)
        return int.from_bytes(crc.digest(), "big").to_bytes(4, "little").hex()
    if algorithm not in _HASHES:
        raise BackupDamaged(f"{path}: unknown checksum algorithm {algorithm}")
    digest = hashlib.new(_HASHES[algorithm])
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_backup_folder(folder: str | Path) -> BackupManifest:
    """Check every file of a plain-format backup against its backup_manifest, the way
    pg_verifybackup does; raise BackupDamaged naming each file that differs."""
    folder = Path(folder)
    manifest = read_manifest(folder / "backup_manifest")
    problems: list[str] = []
    listed = set()
    for entry in manifest.files:
        listed.add(entry.path)
        path = folder / entry.path
        try:
            if not path.is_file():
                problems.append(f"{entry.path}: in the manifest but not in the backup")
                continue
            size = path.stat().st_size
            if size != entry.size:
                problems.append(f"{entry.path}: {size} bytes, the manifest says {entry.size}")
                continue
            actual = file_checksum(path, entry.algorithm)
        except OSError as error:
            problems.append(f"{entry.path}: cannot be read ({error.strerror or error})")
            continue
        if actual != entry.checksum:
            problems.append(f"{entry.path}: {entry.algorithm} checksum {actual}, "
                            f"the manifest says {entry.checksum}")
    for unlisted in _files_on_disk(folder):
        if unlisted not in listed:
            problems.append(f"{unlisted}: in the backup but not in the manifest")
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise BackupDamaged(f"{folder}: {len(problems)} file(s) do not match backup_manifest:"
                            f"\n  {shown}{more}",
                            hint="the backup cannot be trusted; take it again")
    return manifest


def _files_on_disk(folder: Path) -> Iterable[str]:
    for root, dirs, names in os.walk(folder):
        relative_root = Path(root).relative_to(folder)
        if relative_root == Path("."):
            dirs[:] = [d for d in dirs if d not in _NOT_IN_MANIFEST]
            names = [n for n in names if n not in _NOT_IN_MANIFEST]
        for name in names:
            yield (relative_root / name).as_posix()


@dataclass(frozen=True)
class BackupLabel:
    start_lsn: int
    timeline: int
    incremental_from_lsn: int | None = None
    incremental_from_tli: int | None = None
    label: str = ""


def read_backup_label(path: str | Path) -> BackupLabel:
    fields: dict[str, str] = {}
    for line in read_text(path, "backup_label", error=UnreadableInput).splitlines():
        name, _, value = line.partition(": ")
        fields[name.strip()] = value.strip()
    start = fields.get("START WAL LOCATION", "").split(" ")[0]
    if not start:
        raise UnreadableInput(f"{path}: no START WAL LOCATION line", hint="is this a backup_label file?")
    incremental = fields.get("INCREMENTAL FROM LSN")
    try:
        start_lsn = parse_lsn(start)
        incremental_from_lsn = parse_lsn(incremental) if incremental else None
    except ChainError as error:
        raise UnreadableInput(f"{path}: {error.message}", hint=error.hint) from None
    return BackupLabel(start_lsn=start_lsn,
                       timeline=whole_number(fields.get("START TIMELINE", "1"), str(path), "START TIMELINE",
                                             error=UnreadableInput),
                       incremental_from_lsn=incremental_from_lsn,
                       incremental_from_tli=whole_number(fields["INCREMENTAL FROM TLI"], str(path),
                                                         "INCREMENTAL FROM TLI", error=UnreadableInput)
                       if "INCREMENTAL FROM TLI" in fields else None,
                       label=fields.get("LABEL", ""))


def system_identifier(folder: Path, manifest: BackupManifest) -> int:
    """From the v2 manifest, or else from global/pg_control (its first field, a uint64)."""
    if manifest.system_identifier is not None:
        return manifest.system_identifier
    control = folder / "global" / "pg_control"
    try:
        with control.open("rb") as handle:
            head = handle.read(8)
    except OSError as error:
        raise UnreadableInput(f"cannot read {control} for the system identifier: {error.strerror}",
                              hint="a version 1 backup_manifest needs global/pg_control") from None
    if len(head) < 8:
        raise UnreadableInput(f"{control}: {len(head)} bytes, too short for a system identifier")
    return int.from_bytes(head, "little")


def backup_from_folder(folder: str | Path, *, name: str | None = None, verify: bool = False) -> Backup:
    """A full or incremental Backup from a plain-format backup folder (backup_label + backup_manifest)."""
    folder = Path(folder)
    manifest = verify_backup_folder(folder) if verify else read_manifest(folder / "backup_manifest")
    label = read_backup_label(folder / "backup_label")
    if not manifest.wal_ranges:
        raise MalformedManifest(f"{folder}/backup_manifest: no WAL-Ranges",
                                hint="was the manifest cut short?")
    wal_end = max(r.end for r in manifest.wal_ranges)
    incremental = label.incremental_from_lsn is not None
    # With -X stream/fetch the backup carries the WAL to its end LSN; without, replay starts at
    # its start LSN from an archive.
    self_contained = all(not wal_coverage(folder / "pg_wal", r.timeline, r.start, r.end).missing
                         for r in manifest.wal_ranges) if (folder / "pg_wal").is_dir() else False
    return Backup(
        name=name or folder.name, kind=Kind.INCREMENTAL if incremental else Kind.FULL,
        start=label.incremental_from_lsn if label.incremental_from_lsn is not None else label.start_lsn,
        end=wal_end if self_contained else label.start_lsn, consistent=wal_end,
        lineage_start=f"timeline {label.incremental_from_tli if incremental else label.timeline}",
        lineage_end=f"timeline {label.timeline}",
        system=str(system_identifier(folder, manifest)),
        details={"start_lsn": format_lsn(label.start_lsn), "end_lsn": format_lsn(wal_end),
                 "manifest_version": manifest.version, "label": label.label, "wal_included": self_contained,
                 "incremental_from": format_lsn(label.incremental_from_lsn)
                 if label.incremental_from_lsn is not None else None},
    )


def _link_incrementals(backups: list[Backup]) -> list[Backup]:
    """Name each incremental's base, whatever order the folders are listed in: the backups of the
    same system whose start LSN is its INCREMENTAL FROM LSN on its INCREMENTAL FROM TLI. Backups at
    that point with one end (an incremental and its pg_combinebackup output) are equal bases; ones
    that differ are ambiguous. Without a match of the same system and timeline, a match of another
    timeline or system is named so that planning reports the mismatch."""
    linked = []
    for b in backups:
        if b.kind is Kind.INCREMENTAL:
            b = _link(b, backups)
        linked.append(b)
    return linked


def _link(incremental: Backup, backups: list[Backup]) -> Backup:
    at_lsn = [b for b in backups
              if b is not incremental and b.details["start_lsn"] == format_lsn(incremental.start)]
    same_system = [b for b in at_lsn if b.system == incremental.system]
    for matches in ([b for b in same_system if b.ends_on == incremental.lineage_start], same_system, at_lsn):
        if matches:
            break
    else:
        others = sorted(f"{b.name} at {b.details['start_lsn']} on {b.ends_on}" for b in backups
                        if b.system == incremental.system and b is not incremental)
        missing = (f"a backup of system {incremental.system} starting at {format_lsn(incremental.start)} on "
                   f"{incremental.lineage_start} (candidates of that system start: "
                   f"{', '.join(others) or 'none'})")
        return replace(incremental, base=None, missing_base=missing)
    matches = sorted(matches, key=lambda b: (b.kind is not Kind.INCREMENTAL, b.name))
    if len({(b.system, b.ends_on, b.details["end_lsn"]) for b in matches}) > 1:
        shown = ", ".join(f"{b.name} (system {b.system}, {b.ends_on}, ends at {b.details['end_lsn']})"
                          for b in matches)
        raise BrokenChain(f"{ENGINE}: incremental {incremental.name} is taken from "
                          f"{format_lsn(incremental.start)} on {incremental.lineage_start}, where "
                          f"{len(matches)} different backups start: {shown}; its base cannot be told",
                          hint="keep only the backup the incremental was taken against in the history")
    return replace(incremental, base=matches[0].name, base_alternatives=tuple(b.name for b in matches[1:]),
                   missing_base=None)


def segment_name(timeline: int, position: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    """The WAL file holding `position` on `timeline`."""
    number = position // segment_size
    per_id = 0x100000000 // segment_size
    return f"{timeline:08X}{number // per_id:08X}{number % per_id:08X}"


def _segment_start(name: str, segment_size: int) -> tuple[int, int]:
    per_id = 0x100000000 // segment_size
    timeline, high, low = int(name[:8], 16), int(name[8:16], 16), int(name[16:], 16)
    return timeline, (high * per_id + low) * segment_size


def wal_archive_logs(archive: str | Path, segment_size: int = DEFAULT_SEGMENT_SIZE) -> list[Backup]:
    """The archive's WAL segments as LOG backups, one per run of consecutive segments."""
    archive = Path(archive)
    try:
        names = sorted(n for n in os.listdir(archive) if _SEGMENT.match(n))
    except OSError as error:
        raise UnreadableInput(f"cannot list WAL archive {archive}: {error.strerror}") from error
    runs: list[tuple[int, int, int, str, str]] = []  # timeline, start, end, first name, last name
    for name in names:
        timeline, start = _segment_start(name, segment_size)
        if runs and runs[-1][0] == timeline and runs[-1][2] == start:
            runs[-1] = (timeline, runs[-1][1], start + segment_size, runs[-1][3], name)
        else:
            runs.append((timeline, start, start + segment_size, name, name))
    return [Backup(name=f"WAL {first}" if first == last else f"WAL {first}..{last}", kind=Kind.LOG,
                   start=start, end=end, lineage_start=f"timeline {timeline}",
                   details={"first_segment": first, "last_segment": last})
            for timeline, start, end, first, last in runs]


def chain_from_folders(backups: Iterable[str | Path], wal_archive: str | Path | None = None, *,
                       segment_size: int = DEFAULT_SEGMENT_SIZE, verify: bool = False) -> Chain:
    """A Chain from backup folders (full and PostgreSQL 17 incremental) and an optional WAL archive."""
    data = _link_incrementals([backup_from_folder(folder, verify=verify) for folder in backups])
    logs = wal_archive_logs(wal_archive, segment_size) if wal_archive is not None else []
    return Chain(ENGINE, data + logs, format_position=format_lsn)


@dataclass
class WalCoverage:
    """Whether a WAL archive holds every segment from `start` to `end` on one timeline."""

    timeline: int
    start: int
    end: int
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing


def wal_coverage(archive: str | Path, timeline: int, start: int, end: int,
                 segment_size: int = DEFAULT_SEGMENT_SIZE) -> WalCoverage:
    """The segments needed to replay `start`..`end` that the archive lacks (by file name)."""
    try:
        present = {n for n in os.listdir(archive) if _SEGMENT.match(n)}
    except OSError as error:
        raise UnreadableInput(f"cannot list WAL archive {archive}: {error.strerror or error}") from None
    coverage = WalCoverage(timeline, start, end)
    position = start - start % segment_size
    while position <= end:
        name = segment_name(timeline, position, segment_size)
        if name not in present:
            coverage.missing.append(name)
        position += segment_size
    return coverage


def require_wal_coverage(archive: str | Path, timeline: int, start: int, end: int,
                         segment_size: int = DEFAULT_SEGMENT_SIZE) -> None:
    """Raise PositionGap naming the missing segments when the archive has a hole."""
    coverage = wal_coverage(archive, timeline, start, end, segment_size)
    if not coverage.ok:
        shown = ", ".join(coverage.missing[:5]) + (" ..." if len(coverage.missing) > 5 else "")
        raise PositionGap(f"WAL archive {archive} lacks {len(coverage.missing)} segment(s) needed for "
                         f"{format_lsn(start)}..{format_lsn(end)} on timeline {timeline}: {shown}",
                          hint="recover the missing WAL files, or restore to a point before the first one")


class Postgres(RestoreEngine):
    """PostgreSQL: plain-format backup folders (backup_label, backup_manifest) and a WAL archive;
    WAL LSN positions written X/Y."""

    name = ENGINE
    aliases = ("postgresql",)
    verifies_files = True
    point_hint = "give an LSN like 0/3000060"

    def load_history(self, sources: Sequence[Source], *, wal_archive: str | Path | None = None,
                     verify_files: bool = False) -> Chain:
        if not sources or not all(isinstance(s, str | Path) for s in sources):
            raise self.cannot_read(sources, "backup folders (and a WAL archive)")
        return chain_from_folders([Path(str(s)) for s in sources], wal_archive, verify=verify_files)

    def verify_files(self, folder: str | Path) -> BackupManifest:
        return verify_backup_folder(folder)

    def native_position(self, value: Any) -> int | None:
        return parse_lsn(value) if isinstance(value, str) else None

    def parse_position(self, text: str) -> int | None:
        return parse_lsn(text) if "/" in text else super().parse_position(text)

    def format_position(self, position: int) -> str:
        return format_lsn(position)

    def current_position(self, reader: Any) -> int | None:
        """The source's current WAL LSN (the replay LSN on a standby), when it is PostgreSQL:
        https://www.postgresql.org/docs/15/functions-admin.html (Backup Control Functions)."""
        if reader.config.type != "postgres":
            return None
        connection = reader.connect()
        try:
            (lsn,) = connection.execute(
                "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
                " ELSE pg_current_wal_lsn() END::text"
            ).fetchone()
        finally:
            connection.close()
        return parse_lsn(lsn)
