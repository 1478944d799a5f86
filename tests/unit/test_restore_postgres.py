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

from etl.restore.chain import (
    BrokenChain,
    ChainError,
    Kind,
    LineageMismatch,
    SystemMismatch,
    TargetNotCovered,
    WrongOrder,
)
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
    expected = ("Manifest-Checksum: manifest checksum mismatch: the manifest says [0-9a-f]{64} but its "
                "text hashes to")
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
    expected = (f"postgres: incremental inc2 is based on a backup of system {SYSTEM} starting at "
                "0/5000028 on timeline 1 (candidates of that system start: full at 0/2000028 on timeline 1, "
                "inc1 at 0/4000028 on timeline 1), which is not in the history (the restore reaches inc1 at "
                "0/4000028)")
    with pytest.raises(BrokenChain) as caught:
        chain.check(["full", "inc1", "inc2"])
    assert caught.value.message == expected


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



# -- pg_verifybackup's manifest rules (src/common/parse_manifest.c, src/bin/pg_verifybackup) ---------

VERSION, SYSTEM_ID = '"PostgreSQL-Backup-Manifest-Version": 2', f'"System-Identifier": {SYSTEM}'
FILE = ('{"Path": "base/5/16384", "Size": 9, "Checksum-Algorithm": "CRC32C", '
        f'"Checksum": "{crc32c_hex(b"heap page")}"}}')
FILES = f'"Files": [\n{FILE}\n]'
WAL = '"WAL-Ranges": [\n{"Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100"}\n]'


def manifest_bytes(*fields: str, end: str = "\n") -> bytes:
    """A manifest of these top-level fields, one a line, with a correct Manifest-Checksum."""
    body = "{ " + ",\n".join(fields) + ",\n"
    return (body + f'"Manifest-Checksum": "{hashlib.sha256(body.encode()).hexdigest()}"}}' + end).encode()


def files(*entries: str) -> str:
    return '"Files": [\n' + ",\n".join(entries) + "\n]"


def with_file(*entries: str) -> tuple[str, ...]:
    """A version 2 manifest with these file entries."""
    return VERSION, SYSTEM_ID, files(*entries), WAL


@pytest.mark.parametrize(("fields", "message"), [
    ((VERSION, SYSTEM_ID, '"Mode": "fast"', FILES, WAL), "top level: unrecognized top-level field 'Mode'"),
    ((VERSION, SYSTEM_ID, '"Files": {}', WAL), "Files: unexpected object: Files must be an array"),
    (with_file(FILE, FILE),
     "Files entry 2 (base/5/16384): duplicate path name (also Files entry 1)"),
    ((VERSION, SYSTEM_ID, FILES,
      '"WAL-Ranges": [{"Timeline": true, "Start-LSN": "0/1", "End-LSN": "0/2"}]'),
     "WAL-Ranges entry 1: timeline is not an integer: true"),
    ((SYSTEM_ID, VERSION, FILES, WAL),
     "top level: expected version indicator (PostgreSQL-Backup-Manifest-Version must be the first field)"),
    (('"PostgreSQL-Backup-Manifest-Version": 3', SYSTEM_ID, FILES, WAL),
     "PostgreSQL-Backup-Manifest-Version: unexpected manifest version 3"),
    (('"PostgreSQL-Backup-Manifest-Version": "two"', SYSTEM_ID, FILES, WAL),
     'PostgreSQL-Backup-Manifest-Version: manifest version not an integer: "two"'),
    ((VERSION, FILES, WAL), "top level: a version 2 manifest needs System-Identifier"),
    (('"PostgreSQL-Backup-Manifest-Version": 1', SYSTEM_ID, FILES, WAL),
     "System-Identifier: a version 1 manifest has no System-Identifier"),
    ((VERSION, '"System-Identifier": -1', FILES, WAL),
     "System-Identifier: manifest system identifier not an integer: -1"),
    ((VERSION, SYSTEM_ID, FILES, FILES, WAL), "top level: duplicate field 'Files'"),
    ((VERSION, SYSTEM_ID, WAL), "top level: no Files array"),
    (with_file('"base/5/16384"'),
     "Files entry 1: unexpected scalar: each entry must be an object"),
    (with_file('{"Path": "a", "Size": 1, "Mode": 420}'),
     "Files entry 1: unexpected file field 'Mode'"),
    (with_file('{"Size": 1}'), "Files entry 1: missing path name"),
    (with_file('{"Path": "a", "Encoded-Path": "61", "Size": 1}'),
     "Files entry 1: both path name and encoded path name"),
    (with_file('{"Encoded-Path": "6", "Size": 1}'),
     "Files entry 1: could not decode file name '6'"),
    (with_file('{"Path": "../../etc/passwd", "Size": 1}'),
     "Files entry 1: path name '../../etc/passwd' is not a relative file name"),
    (with_file('{"Path": "a"}'), "Files entry 1 (a): missing size"),
    (with_file('{"Path": "a", "Size": 1.5}'),
     "Files entry 1 (a): file size is not an integer: 1.5"),
    (with_file('{"Path": "a", "Size": [1]}'),
     "Files entry 1: Size: unexpected array"),
    (with_file('{"Path": "a", "Size": 1, "Checksum": "00"}'),
     "Files entry 1 (a): checksum without algorithm"),
    (with_file('{"Path": "a", "Size": 1, "Checksum-Algorithm": "MD5", "Checksum": "00"}'),
     'Files entry 1 (a): unrecognized checksum algorithm: "MD5"'),
    (with_file('{"Path": "a", "Size": 1, "Checksum-Algorithm": "CRC32C", "Checksum": "xyz"}'),
     'Files entry 1 (a): invalid checksum: "xyz"'),
    (with_file('{"Path": "a", "Size": 1, "Checksum-Algorithm": "SHA256", "Checksum": "00"}'),
     "Files entry 1 (a): SHA256 checksum of 1 bytes, expected 32"),
    ((VERSION, SYSTEM_ID, FILES, '"WAL-Ranges": [{"Timeline": 1, "Start-LSN": "0/1"}]'),
     "WAL-Ranges entry 1: missing end LSN"),
    ((VERSION, SYSTEM_ID, FILES,
      '"WAL-Ranges": [{"Timeline": 1, "Start-LSN": "nope", "End-LSN": "0/2"}]'),
     'WAL-Ranges entry 1: could not parse start LSN: "nope"'),
    ((VERSION, SYSTEM_ID, FILES, '"WAL-Ranges": [{"Timeline": 1, "Start-LSN": "0/1", "End-LSN": "0/2", '
      '"Segment": 1}]'), "WAL-Ranges entry 1: unexpected WAL range field 'Segment'"),
], ids=["unknown top-level field", "Files {}", "duplicate paths", "Timeline true", "version not first",
        "version 3", "version text", "v2 without system identifier", "v1 with system identifier",
        "negative system identifier", "duplicate top-level field", "no Files", "file entry not an object",
        "unknown file field", "no path", "path and encoded path", "odd encoded path",
        "path escapes the folder",
        "no size", "fractional size", "size array", "checksum without algorithm", "unknown algorithm",
        "checksum not hex", "checksum of the wrong length", "WAL range without end", "WAL range LSN text",
        "unknown WAL range field"])
def test_manifest_rule_broken_under_a_valid_checksum(tmp_path, fields, message):
    path = tmp_path / "backup_manifest"
    path.write_bytes(manifest_bytes(*fields))
    with pytest.raises(BackupDamaged) as caught:
        read_manifest(path)
    assert caught.value.message == f"{path}: {message}"


@pytest.mark.parametrize(("data", "message"), [
    (manifest_bytes(VERSION, SYSTEM_ID, FILES, WAL, end=""),
     "the last line: last line not newline-terminated"),
    (b'{"PostgreSQL-Backup-Manifest-Version": 1, "Files": [], "WAL-Ranges": [], '
     b'"Manifest-Checksum": "00"}\n',
     "the manifest text: expected at least 2 lines"),
    (manifest_bytes(VERSION, SYSTEM_ID, FILES, WAL).replace(b'"Manifest-Checksum": "',
                                                            b'"Manifest-Checksum": "ab'),
     'Manifest-Checksum: invalid manifest checksum: "ab'),
    ((manifest_bytes(VERSION, SYSTEM_ID, FILES, WAL)[:-2] + b',\n"Files": []}\n'),
     "top level: duplicate field 'Files'"),
    (b'{"PostgreSQL-Backup-Manifest-Version": 2,\n"System-Identifier": 1,\n"Files": [],\n"WAL-Ranges": []}\n',
     "top level: manifest has no checksum"),
    (b"[]\n", "top level: unexpected array: the manifest must be an object"),
    (b'{"PostgreSQL-Backup-Manifest-Version": 2, "\xff": 1}\n', "byte offset 43: not UTF-8 text"),
], ids=["no final newline", "one line", "checksum too long", "field after the checksum", "no checksum",
        "array", "not UTF-8"])
def test_manifest_text_rules(tmp_path, data, message):
    path = tmp_path / "backup_manifest"
    path.write_bytes(data)
    with pytest.raises(BackupDamaged) as caught:
        read_manifest(path)
    assert caught.value.message.startswith(f"{path}: {message}")


def test_manifest_built_by_the_rules_helper_is_valid(tmp_path):
    path = tmp_path / "backup_manifest"
    path.write_bytes(manifest_bytes(VERSION, SYSTEM_ID, FILES, WAL))
    manifest = read_manifest(path)
    assert (manifest.version, manifest.system_identifier, [f.path for f in manifest.files]) == (
        2, SYSTEM, ["base/5/16384"])



# -- PostgreSQL 17 incremental chains: linked by system, timeline and LSN ------------------------------

def self_contained(folder: Path, start: str, end: str, *, system: int = SYSTEM,
                   incremental_from: str | None = None) -> Path:
    """A backup taken with -X stream (its WAL in pg_wal), so it restores without an archive."""
    wal = f"pg_wal/{segment_name(1, parse_lsn(start))}"
    return write_backup(folder, start=start, end=end, system=system,
                        incremental_from=(incremental_from, 1) if incremental_from else None,
                        files={"base/5/16384": folder.name.encode(), wal: b"wal"})


def combined_history(tmp_path: Path) -> list[Path]:
    full = self_contained(tmp_path / "full", "0/2000028", "0/2000100")
    inc1 = self_contained(tmp_path / "inc1", "0/4000028", "0/4000100", incremental_from="0/2000028")
    inc2 = self_contained(tmp_path / "inc2", "0/6000028", "0/6000100", incremental_from="0/4000028")
    # pg_combinebackup full inc1 inc2 -o combined: inc2's label without the INCREMENTAL lines
    combined = self_contained(tmp_path / "combined", "0/6000028", "0/6000100")
    inc3 = self_contained(tmp_path / "inc3", "0/8000028", "0/8000100", incremental_from="0/6000028")
    return [full, inc1, inc2, combined, inc3]


def test_originals_and_their_combined_output_in_any_listing_order(tmp_path):
    folders = combined_history(tmp_path)
    for order in (folders, folders[::-1], [folders[3], folders[4], folders[0], folders[2], folders[1]]):
        chain = chain_from_folders(order)
        assert chain.get("inc3").base == "inc2"
        assert chain.get("inc3").base_alternatives == ("combined",)
        plan = chain.plan()
        assert plan.names == ["combined", "inc3"]
        assert plan.unused == (("full", "superseded by the later full combined"),
                               ("inc1", "superseded by combined"), ("inc2", "superseded by combined"))
        # the original sequence is just as valid: no false BrokenChain
        assert chain.check(["full", "inc1", "inc2", "inc3"]).reaches == parse_lsn("0/8000100")


def test_two_clusters_in_one_history_plan_one_at_a_time(tmp_path):
    other = SYSTEM + 1
    folders = [self_contained(tmp_path / "a-full", "0/2000028", "0/2000100"),
               self_contained(tmp_path / "b-full", "0/2000028", "0/2000200", system=other),
               self_contained(tmp_path / "a-inc", "0/4000028", "0/4000100", incremental_from="0/2000028"),
               self_contained(tmp_path / "b-inc", "0/5000028", "0/5000100", system=other,
                              incremental_from="0/2000028")]
    chain = chain_from_folders(folders)
    assert (chain.get("a-inc").base, chain.get("b-inc").base) == ("a-full", "b-full")
    with pytest.raises(ChainError) as caught:
        chain.plan()
    assert caught.value.message == (f"postgres: the history holds backups of 2 databases ({SYSTEM}: "
                                    f"a-full; {other}: b-full); a restore plan is for one")
    assert [c.plan().names for c in chain.clusters()] == [["a-full", "a-inc"], ["b-full", "b-inc"]]


def test_gap_in_an_incremental_chain_is_an_error_not_a_shorter_plan(tmp_path):
    folders = combined_history(tmp_path)
    chain = chain_from_folders([folders[0], folders[1], folders[4]])  # inc2 and combined missing
    expected = (f"postgres: incremental inc3 is based on a backup of system {SYSTEM} starting at 0/6000028 "
                "on timeline 1 (candidates of that system start: full at 0/2000028 on timeline 1, "
                "inc1 at 0/4000028 on timeline 1), which is not in the history (the restore reaches inc1 at "
                "0/4000100)")
    with pytest.raises(BrokenChain) as caught:
        chain.plan()
    assert caught.value.message == expected
    # a point before the gap still plans
    assert chain.plan(parse_lsn("0/4000100")).names == ["full", "inc1"]


def test_ambiguous_incremental_base_names_the_candidates(tmp_path):
    folders = [self_contained(tmp_path / "full-a", "0/2000028", "0/2000100"),
               self_contained(tmp_path / "full-b", "0/2000028", "0/2000300"),
               self_contained(tmp_path / "inc", "0/4000028", "0/4000100", incremental_from="0/2000028")]
    with pytest.raises(BrokenChain) as caught:
        chain_from_folders(folders)
    assert caught.value.message == (
        "postgres: incremental inc is taken from 0/2000028 on timeline 1, where 2 different backups "
        f"start: full-a (system {SYSTEM}, timeline 1, ends at 0/2000100), full-b (system {SYSTEM}, "
        "timeline 1, ends at 0/2000300); its base cannot be told")


def test_backup_folder_without_backup_label(tmp_path):
    folder = self_contained(tmp_path / "full", "0/2000028", "0/2000100")
    (folder / "backup_label").unlink()
    with pytest.raises(ChainError) as caught:
        chain_from_folders([folder], verify=False)
    assert caught.value.message == \
        f"cannot read backup_label {folder / 'backup_label'}: No such file or directory"


def test_incremental_taken_after_a_timeline_switch_plans_over_its_full(tmp_path):
    """A standby promoted to timeline 2 after the full: the incremental's label says INCREMENTAL FROM
    TLI 1 and START TIMELINE 2. Where timeline 2 branched is in the timeline history file, not in the
    backups, so no backup of timeline 1 is ruled out by position."""
    full = self_contained(tmp_path / "full", "0/2000028", "0/2000100")
    wal = f"pg_wal/{segment_name(2, parse_lsn('0/5000028'))}"
    inc = write_backup(tmp_path / "inc", start="0/5000028", end="0/5000100", timeline=2,
                       incremental_from=("0/2000028", 1), files={"base/5/16384": b"inc", wal: b"wal"})
    chain = chain_from_folders([inc, full])
    plan = chain.plan()
    assert plan.names == ["full", "inc"]
    assert plan.unused == ()
