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
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import google_crc32c

from etl.errors import EtlError
from etl.inputs import parse_json, read_text, whole_number
from etl.restore.chain import Backup, Chain, ChainError, Kind, PositionGap

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
"""wal_segment_size unless initdb --wal-segsize chose another."""

_NOT_IN_MANIFEST = {"backup_manifest", "pg_wal", "postgresql.auto.conf", "recovery.signal", "standby.signal"}
_SEGMENT = re.compile(r"^[0-9A-F]{24}$")
_CHECKSUM_LINE = '\n"Manifest-Checksum"'
_HASHES = {"SHA224": "sha224", "SHA256": "sha256", "SHA384": "sha384", "SHA512": "sha512"}


class BackupDamaged(EtlError):
    """A backup folder or its manifest does not match: a file changed, went missing or appeared."""

    exit_code = 1


def parse_lsn(text: str) -> int:
    """`0/3000028` -> 50331688."""
    if not isinstance(text, str):
        raise ChainError(f"{text!r} is not a PostgreSQL LSN", hint="write LSNs as X/Y in hex")
    high, _, low = text.partition("/")
    try:
        high_part, low_part = int(high, 16), int(low, 16)
        if not (0 <= high_part <= 0xFFFFFFFF and 0 <= low_part <= 0xFFFFFFFF):
            raise ValueError(text)
        return (high_part << 32) | low_part
    except ValueError:
        raise ChainError(f"{text!r} is not a PostgreSQL LSN", hint="write LSNs as X/Y in hex") from None


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


def read_manifest(path: str | Path) -> BackupManifest:
    """Parse a backup_manifest and check its Manifest-Checksum."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise BackupDamaged(f"cannot read {path}: {error.strerror}") from error
    text = raw.decode("utf-8", errors="replace")
    cut = text.rfind(_CHECKSUM_LINE)
    if cut < 0:
        raise BackupDamaged(f"{path}: no Manifest-Checksum line", hint="is this a backup_manifest file?")
    data = parse_json(text, path, error=BackupDamaged)
    if not isinstance(data, dict):
        raise BackupDamaged(f"{path}: not a JSON object", hint="is this a backup_manifest file?")
    actual = hashlib.sha256(raw[: len(text[: cut + 1].encode("utf-8"))]).hexdigest()
    if actual != data.get("Manifest-Checksum"):
        raise BackupDamaged(f"{path}: Manifest-Checksum is {data.get('Manifest-Checksum')} but the manifest "
                            f"text hashes to {actual}: the manifest was changed",
                            hint="take the backup again or restore the original backup_manifest")
    try:
        return _parse_manifest(data, path)
    except ChainError as error:
        if isinstance(error, BackupDamaged):
            raise
        raise BackupDamaged(f"{path}: {error.message}", hint=error.hint) from None


def _parse_manifest(data: dict, path: Path) -> BackupManifest:
    """The fields of a checksum-verified manifest, each checked for its type."""
    version = whole_number(data.get("PostgreSQL-Backup-Manifest-Version", 0), str(path),
                           "PostgreSQL-Backup-Manifest-Version", error=BackupDamaged)
    if version not in (1, 2):
        raise BackupDamaged(f"{path}: manifest version {version} is not 1 or 2")
    files = [_manifest_file(entry, path, number)
             for number, entry in enumerate(_list(data, "Files", path), start=1)]
    ranges = []
    for number, entry in enumerate(_list(data, "WAL-Ranges", path), start=1):
        where = f"{path}: WAL-Ranges entry {number}"
        if not isinstance(entry, dict) or not {"Timeline", "Start-LSN", "End-LSN"} <= entry.keys():
            raise BackupDamaged(f"{where}: needs Timeline, Start-LSN and End-LSN")
        ranges.append(WalRange(whole_number(entry["Timeline"], where, "Timeline", error=BackupDamaged),
                               parse_lsn(entry["Start-LSN"]), parse_lsn(entry["End-LSN"])))
    system = data.get("System-Identifier")
    return BackupManifest(version, None if system is None else
                          whole_number(system, str(path), "System-Identifier", error=BackupDamaged),
                          files, ranges)


def _list(data: dict, key: str, path: Path) -> list:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise BackupDamaged(f"{path}: {key} is {type(value).__name__}, not a list")
    return value


def _manifest_file(entry: object, path: Path, number: int) -> ManifestFile:
    where = f"{path}: Files entry {number}"
    if not isinstance(entry, dict):
        raise BackupDamaged(f"{where} is not an object")
    try:
        name = entry["Path"] if "Path" in entry else bytes.fromhex(entry["Encoded-Path"]).decode()
    except (KeyError, TypeError, ValueError):
        raise BackupDamaged(f"{where}: no Path, and no hex Encoded-Path of UTF-8 text") from None
    algorithm, checksum = entry.get("Checksum-Algorithm", "NONE"), entry.get("Checksum")
    if not isinstance(name, str) or not name or "\0" in name:
        raise BackupDamaged(f"{where}: Path {name!r} is not a file name")
    if not isinstance(algorithm, str) or not (checksum is None or isinstance(checksum, str)):
        raise BackupDamaged(f"{where} ({name}): Checksum-Algorithm and Checksum must be text")
    if "Size" not in entry:
        raise BackupDamaged(f"{where} ({name}): no Size")
    return ManifestFile(path=name, size=whole_number(entry["Size"], where, "Size", error=BackupDamaged),
                        algorithm=algorithm, checksum=checksum)


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
    for path in _files_on_disk(folder):
        if path not in listed:
            problems.append(f"{path}: in the backup but not in the manifest")
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
    for line in read_text(path, "backup_label", error=ChainError).splitlines():
        name, _, value = line.partition(": ")
        fields[name.strip()] = value.strip()
    start = fields.get("START WAL LOCATION", "").split(" ")[0]
    if not start:
        raise ChainError(f"{path}: no START WAL LOCATION line", hint="is this a backup_label file?")
    incremental = fields.get("INCREMENTAL FROM LSN")
    try:
        start_lsn = parse_lsn(start)
        incremental_from_lsn = parse_lsn(incremental) if incremental else None
    except ChainError as error:
        raise ChainError(f"{path}: {error.message}", hint=error.hint) from None
    return BackupLabel(start_lsn=start_lsn,
                       timeline=whole_number(fields.get("START TIMELINE", "1"), str(path), "START TIMELINE",
                                             error=ChainError),
                       incremental_from_lsn=incremental_from_lsn,
                       incremental_from_tli=whole_number(fields["INCREMENTAL FROM TLI"], str(path),
                                                         "INCREMENTAL FROM TLI", error=ChainError)
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
        raise ChainError(f"cannot read {control} for the system identifier: {error.strerror}",
                         hint="a version 1 backup_manifest needs global/pg_control") from None
    if len(head) < 8:
        raise ChainError(f"{control}: {len(head)} bytes, too short for a system identifier")
    return int.from_bytes(head, "little")


def backup_from_folder(folder: str | Path, *, name: str | None = None, verify: bool = False) -> Backup:
    """A full or incremental Backup from a plain-format backup folder (backup_label + backup_manifest)."""
    folder = Path(folder)
    manifest = verify_backup_folder(folder) if verify else read_manifest(folder / "backup_manifest")
    label = read_backup_label(folder / "backup_label")
    if not manifest.wal_ranges:
        raise ChainError(f"{folder}/backup_manifest: no WAL-Ranges", hint="was the manifest cut short?")
    wal_end = max(r.end for r in manifest.wal_ranges)
    incremental = label.incremental_from_lsn is not None
    # With -X stream/fetch the backup carries the WAL to its end LSN; without, replay starts at
    # its start LSN from an archive.
    self_contained = all(not wal_coverage(folder / "pg_wal", r.timeline, r.start, r.end).missing
                         for r in manifest.wal_ranges) if (folder / "pg_wal").is_dir() else False
    return Backup(
        name=name or folder.name, kind=Kind.INCREMENTAL if incremental else Kind.FULL,
        start=label.incremental_from_lsn if incremental else label.start_lsn,
        end=wal_end if self_contained else label.start_lsn, consistent=wal_end,
        lineage_start=f"timeline {label.incremental_from_tli if incremental else label.timeline}",
        lineage_end=f"timeline {label.timeline}",
        system=str(system_identifier(folder, manifest)),
        details={"start_lsn": format_lsn(label.start_lsn), "end_lsn": format_lsn(wal_end),
                 "manifest_version": manifest.version, "label": label.label, "wal_included": self_contained,
                 "incremental_from": format_lsn(label.incremental_from_lsn) if incremental else None},
    )


def _link_incrementals(backups: list[Backup]) -> list[Backup]:
    """Name each incremental's base: the backup starting at its INCREMENTAL FROM LSN (the
    timelines are checked when the chain is planned, so a mismatch is reported as one)."""
    by_start = {b.details["start_lsn"]: b.name for b in backups}
    linked = []
    for b in backups:
        if b.kind is Kind.INCREMENTAL:
            base = by_start.get(format_lsn(b.start))
            missing = None if base else f"a backup starting at {format_lsn(b.start)} on {b.lineage_start}"
            b = replace(b, base=base, missing_base=missing)
        linked.append(b)
    return linked


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
        raise ChainError(f"cannot list WAL archive {archive}: {error.strerror}") from error
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
    return Chain("postgresql", data + logs, format_position=format_lsn)


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
    present = {n for n in os.listdir(archive) if _SEGMENT.match(n)}
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
