"""backup_manifest parsing and checking, PostgreSQL 17 incremental chains, WAL file names.

Backup folders are written here in the layout pg_basebackup produces (backup_label, backup_manifest
with a real Manifest-Checksum, data files with CRC32C checksums); the real thing is exercised in
tests/integration/test_restore_postgres.py.
"""

import hashlib
import json
from pathlib import Path

import google_crc32c
import pytest

from etl.restore.chain import BrokenChain, Kind, LineageMismatch, SystemMismatch, TargetNotCovered, WrongOrder
from etl.restore.postgres import (
    BackupDamaged,
    chain_from_folders,
    format_lsn,
    parse_lsn,
    read_manifest,
    segment_name,
    verify_backup_folder,
    wal_archive_logs,
)

SYSTEM = 7712493533740180766


def crc32c_hex(data: bytes) -> str:
    return google_crc32c.value(data).to_bytes(4, "little").hex()


def write_backup(folder: Path, *, start: str, end: str, timeline: int = 1, version: int = 2,
                 system: int = SYSTEM, incremental_from: tuple[str, int] | None = None,
                 files: dict[str, bytes] | None = None, algorithm: str = "CRC32C") -> Path:
    files = files or {"base/5/16384": b"heap page", "global/pg_control": SYSTEM.to_bytes(8, "little")}
    for path, data in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    label = [f"START WAL LOCATION: {start} (file {segment_name(timeline, parse_lsn(start))})",
             "CHECKPOINT LOCATION: " + start, "BACKUP METHOD: streamed", "BACKUP FROM: primary",
             "START TIME: 2026-11-01 01:00:00 UTC", f"LABEL: {folder.name}", f"START TIMELINE: {timeline}"]
    if incremental_from:
        label += [f"INCREMENTAL FROM LSN: {incremental_from[0]}",
                  f"INCREMENTAL FROM TLI: {incremental_from[1]}"]
    (folder / "backup_label").write_text("\n".join(label) + "\n")
    entries = []
    for path, data in [*files.items(), ("backup_label", (folder / "backup_label").read_bytes())]:
        checksum = crc32c_hex(data) if algorithm == "CRC32C" else hashlib.sha256(data).hexdigest()
        entries.append(json.dumps({"Path": path, "Size": len(data),
                                   "Last-Modified": "2026-11-01 01:00:00 GMT",
                                   "Checksum-Algorithm": algorithm, "Checksum": checksum}))
    head = f'{{ "PostgreSQL-Backup-Manifest-Version": {version},\n'
    if version == 2:
        head += f'"System-Identifier": {system},\n'
    text = (head + '"Files": [\n' + ",\n".join(entries) + "\n],\n" + '"WAL-Ranges": [\n'
            + json.dumps({"Timeline": timeline, "Start-LSN": start, "End-LSN": end}) + "\n],\n")
    text += f'"Manifest-Checksum": "{hashlib.sha256(text.encode()).hexdigest()}"}}\n'
    (folder / "backup_manifest").write_text(text)
    return folder


def test_lsn_text_round_trip():
    assert parse_lsn("0/3000028") == 0x3000028
    assert format_lsn(parse_lsn("1A/FF000010")) == "1A/FF000010"


def test_segment_names():
    assert segment_name(1, parse_lsn("0/3000028")) == "000000010000000000000003"
    assert segment_name(2, parse_lsn("1/FF000000")) == "0000000200000001000000FF"


@pytest.mark.parametrize("version", [1, 2])
def test_manifest_versions_verify(tmp_path, version):
    folder = write_backup(tmp_path / "full", start="0/2000028", end="0/2000100", version=version)
    manifest = verify_backup_folder(folder)
    assert manifest.version == version
    assert manifest.system_identifier == (SYSTEM if version == 2 else None)
    assert [(r.timeline, format_lsn(r.start), format_lsn(r.end)) for r in manifest.wal_ranges] == [
        (1, "0/2000028", "0/2000100")]
    assert sorted(f.path for f in manifest.files) == ["backup_label", "base/5/16384", "global/pg_control"]


def test_sha256_file_checksums(tmp_path):
    folder = write_backup(tmp_path / "full", start="0/2000028", end="0/2000100", algorithm="SHA256")
    assert verify_backup_folder(folder).files[0].algorithm == "SHA256"


def test_edited_manifest_is_caught(tmp_path):
    folder = write_backup(tmp_path / "full", start="0/2000028", end="0/2000100")
    text = (folder / "backup_manifest").read_text().replace('"Size": 9', '"Size": 10')
    (folder / "backup_manifest").write_text(text)
    expected = "Manifest-Checksum is [0-9a-f]{64} but the manifest text hashes to"
    with pytest.raises(BackupDamaged, match=expected):
        read_manifest(folder / "backup_manifest")


def test_missing_extra_and_resized_files_are_named(tmp_path):
    folder = write_backup(tmp_path / "full", start="0/2000028", end="0/2000100")
    (folder / "global" / "pg_control").unlink()
    (folder / "base" / "5" / "16384").write_bytes(b"heap page!")
    (folder / "base" / "5" / "99999").write_bytes(b"stray")
    (folder / "postgresql.auto.conf").write_text("# ignored, as pg_verifybackup does\n")
    with pytest.raises(BackupDamaged) as caught:
        verify_backup_folder(folder)
    assert caught.value.message.splitlines()[1:] == [
        "  base/5/16384: 10 bytes, the manifest says 9",
        "  global/pg_control: in the manifest but not in the backup",
        "  base/5/99999: in the backup but not in the manifest"]


def incremental_history(tmp_path, **third):
    full = write_backup(tmp_path / "full", start="0/2000028", end="0/2000100")
    inc1 = write_backup(tmp_path / "inc1", start="0/4000028", end="0/4000100",
                        incremental_from=("0/2000028", 1))
    options = {"start": "0/6000028", "end": "0/6000100", "incremental_from": ("0/4000028", 1),
               "files": {"base/5/16384": b"heap", "pg_wal/000000010000000000000006": b"wal"}} | third
    inc2 = write_backup(tmp_path / "inc2", **options)
    return chain_from_folders([inc2, full, inc1])


def test_incremental_chain_planned_oldest_first(tmp_path):
    chain = incremental_history(tmp_path)
    assert [(b.name, b.kind, b.base) for b in sorted(chain.backups, key=lambda b: b.end)] == [
        ("full", Kind.FULL, None), ("inc1", Kind.INCREMENTAL, "full"), ("inc2", Kind.INCREMENTAL, "inc1")]
    assert chain.plan().names == ["full", "inc1", "inc2"]
    # Without its WAL (no pg_wal, no archive) inc1 cannot be brought to its end LSN.
    expected = ("inc1 is consistent only once its log from 0/4000028 to 0/4000100 is replayed, and no log "
                "backup covers 0/4000028")
    with pytest.raises(TargetNotCovered, match=expected):
        chain.plan(parse_lsn("0/4000100"))


def test_backup_carrying_its_wal_needs_no_archive(tmp_path):
    full = write_backup(tmp_path / "full", start="0/2000028", end="0/2000100",
                        files={"base/5/16384": b"heap", "pg_wal/000000010000000000000002": b"wal"})
    chain = chain_from_folders([full])
    assert chain.get("full").end == parse_lsn("0/2000100")
    assert chain.plan(parse_lsn("0/2000100")).names == ["full"]


def test_incrementals_in_the_wrong_order(tmp_path):
    chain = incremental_history(tmp_path)
    with pytest.raises(WrongOrder, match="inc1 \\(at 0/4000028\\) is listed after inc2 \\(at 0/6000100\\)"):
        chain.check(["full", "inc2", "inc1"])


def test_incremental_whose_base_is_missing(tmp_path):
    chain = incremental_history(tmp_path, incremental_from=("0/5000028", 1))
    with pytest.raises(BrokenChain, match="incremental inc2 is based on a backup starting at 0/5000028 on "
                                          "timeline 1, which is not in the history"):
        chain.check(["full", "inc1", "inc2"])


def test_incremental_of_another_system(tmp_path):
    chain = incremental_history(tmp_path, system=SYSTEM + 1)
    expected = f"inc2 belongs to database {SYSTEM + 1}, full to database {SYSTEM}"
    with pytest.raises(SystemMismatch, match=expected):
        chain.plan()


def test_incremental_from_another_timeline(tmp_path):
    chain = incremental_history(tmp_path, timeline=2, incremental_from=("0/4000028", 2))
    with pytest.raises(LineageMismatch, match="inc2 starts on timeline 2 but inc1 ends on timeline 1"):
        chain.check(["full", "inc1", "inc2"])


def test_wal_archive_runs_and_gap(tmp_path):
    for name in ["000000010000000000000002", "000000010000000000000003", "000000010000000000000005",
                 "000000010000000000000003.00000028.backup", "00000002.history"]:
        (tmp_path / name).write_bytes(b"")
    logs = wal_archive_logs(tmp_path)
    assert [(log.name, format_lsn(log.start), format_lsn(log.end)) for log in logs] == [
        ("WAL 000000010000000000000002..000000010000000000000003", "0/2000000", "0/4000000"),
        ("WAL 000000010000000000000005", "0/5000000", "0/6000000")]


def test_time_targets_need_dated_backups(tmp_path):
    from datetime import datetime

    chain = incremental_history(tmp_path)
    with pytest.raises(TargetNotCovered, match="carries no time, so a restore point cannot be given"):
        chain.plan(datetime(2026, 11, 2))
