"""PostgreSQL restore verification for real: a throw-away source cluster with a WAL archive, a
pg_basebackup, manifests taken while data changes, point-in-time restores to recorded LSNs.

PostgreSQL's server programs refuse to run as root, so they run as the postgres user; every
cluster is stopped and every folder removed even when a test fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from etl.checksum import Manifest, TableManifest
from etl.records import Column, TableSpec
from etl.restore.chain import Kind, PositionGap
from etl.restore.postgres import (
    BackupDamaged,
    chain_from_folders,
    parse_lsn,
    require_wal_coverage,
    verify_backup_folder,
    wal_coverage,
)
from etl.restore.verify import differential_manifest, manifest_at, verify_restore

pytestmark = pytest.mark.integration

BIN = Path("/usr/lib/postgresql/15/bin")
SPEC = TableSpec("restored", "patients", ("id",),
                 (Column("id", "int", nullable=False), Column("name", "string"),
                  Column("updated_at", "timestamptz(6)")))
BOUNDARIES = [[200], [400], [600], [800]]
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def as_postgres(*command: str | Path) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *map(str, command)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A PostgreSQL data folder with a server started as postgres; `stop` is safe to repeat."""

    def __init__(self, data: Path, port: int) -> None:
        self.data, self.port, self.running = data, port, False

    def start(self) -> None:
        as_postgres(BIN / "pg_ctl", "-D", self.data, "-l", self.data / "server.log", "-w", "-t", "60",
                    "start")
        self.running = True

    def stop(self) -> None:
        """Stop the server if it runs, even when `start` failed after launching it."""
        if self.running or (self.data / "postmaster.pid").exists():
            as_postgres(BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
            self.running = False

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                               autocommit=True, options="-c timezone=UTC")

    def rows(self) -> list[dict]:
        with self.connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            return cur.execute("SELECT id, name, updated_at FROM patients").fetchall()

    def lsn(self) -> str:
        with self.connect() as conn:
            return conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]


def take_manifest(cluster: Cluster, lsn: str, base: Manifest | None = None) -> Manifest:
    """A manifest of the cluster at `lsn`; against `base`, only the segments that changed."""
    full = Manifest(position={"lsn": lsn}, taken_at=f"manifest at {lsn}")
    full.add(TableManifest.build(SPEC, cluster.rows(), buckets=64, boundaries=BOUNDARIES))
    return full if base is None else differential_manifest(base, full)


@pytest.fixture(scope="module")
def history():
    """Source cluster + archive + base backup, then two changes with a manifest and LSN each."""
    if not (BIN / "initdb").exists() or shutil.which("runuser") is None or os.geteuid() != 0:
        pytest.skip("needs PostgreSQL 15 server programs and root (to run them as postgres with runuser)")
    root = Path(tempfile.mkdtemp(prefix="etl-restore-"))
    shutil.chown(root, "postgres", "postgres")
    archive = root / "archive"
    archive.mkdir()
    shutil.chown(archive, "postgres", "postgres")
    source = Cluster(root / "source", free_port())
    try:
        as_postgres(BIN / "initdb", "-D", source.data, "-A", "trust", "-U", "postgres", "--no-sync")
        with (source.data / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {source.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{root}'\nwal_level = replica\nfsync = off\n"
                       f"archive_mode = on\narchive_command = 'cp %p {archive}/%f'\n")
        source.start()
        with source.connect() as conn:
            conn.execute("CREATE TABLE patients (id int PRIMARY KEY, name text, updated_at timestamptz)")
            conn.execute("INSERT INTO patients SELECT i, 'patient ' || i, %s FROM generate_series(0, 999) i",
                         (T0,))
        as_postgres(BIN / "pg_basebackup", "-h", "127.0.0.1", "-p", source.port, "-U", "postgres",
                    "-D", root / "base", "-X", "none", "-c", "fast")
        lsn0 = source.lsn()
        m0 = take_manifest(source, lsn0)
        rows = [source.rows()]
        with source.connect() as conn:
            conn.execute("SELECT pg_switch_wal()")
            conn.execute("UPDATE patients SET name = name || ' (moved)', updated_at = %s "
                         "WHERE id BETWEEN 250 AND 259", (datetime(2026, 11, 2, tzinfo=UTC),))
        lsn1 = source.lsn()
        m1 = take_manifest(source, lsn1, base=m0)
        rows.append(source.rows())
        with source.connect() as conn:
            conn.execute("SELECT pg_switch_wal()")
            conn.execute("UPDATE patients SET name = 'renamed', updated_at = %s WHERE id BETWEEN 650 AND 655",
                         (datetime(2026, 11, 3, tzinfo=UTC),))
            conn.execute("DELETE FROM patients WHERE id = 700")
            conn.execute("INSERT INTO patients VALUES (1000, 'new patient', %s)",
                         (datetime(2026, 11, 3, tzinfo=UTC),))
        lsn2 = source.lsn()
        m2 = take_manifest(source, lsn2, base=m0)
        rows.append(source.rows())
        with source.connect() as conn:
            last = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
        deadline = time.monotonic() + 30
        while not (archive / last).exists():
            assert time.monotonic() < deadline, f"WAL segment {last} was not archived within 30 s"
            time.sleep(0.1)
        yield {"root": root, "archive": archive, "source": source, "base": root / "base",
               "lsn": [lsn0, lsn1, lsn2], "manifests": [m0, m1, m2], "rows": rows, "restored": {}}
    finally:
        source.stop()
        shutil.rmtree(root, ignore_errors=True)


def restore(history: dict, target_lsn: str, name: str) -> list[dict]:
    """Restore the base backup to `target_lsn` from the archive, read the table, stop, remove
    (once per LSN for the module)."""
    if target_lsn not in history["restored"]:
        history["restored"][target_lsn] = _restore(history, target_lsn, name)
    return history["restored"][target_lsn]


def _restore(history: dict, target_lsn: str, name: str) -> list[dict]:
    data = history["root"] / name
    shutil.copytree(history["base"], data)
    for folder, _dirs, files in os.walk(data):
        shutil.chown(folder, "postgres", "postgres")
        for file in files:
            shutil.chown(os.path.join(folder, file), "postgres", "postgres")
    os.chmod(data, 0o700)
    cluster = Cluster(data, free_port())
    with (data / "postgresql.auto.conf").open("a") as conf:
        conf.write(f"port = {cluster.port}\nunix_socket_directories = '{history['root']}'\n"
                   f"archive_mode = off\nrestore_command = 'cp {history['archive']}/%f %p'\n"
                   f"recovery_target_lsn = '{target_lsn}'\nrecovery_target_action = 'promote'\n")
    (data / "recovery.signal").touch()
    try:
        cluster.start()
        deadline = time.monotonic() + 30
        while True:
            with cluster.connect() as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    break
            assert time.monotonic() < deadline, f"recovery to {target_lsn} did not finish within 30 s"
            time.sleep(0.1)
        return cluster.rows()
    finally:
        cluster.stop()
        shutil.rmtree(data, ignore_errors=True)


def test_plan_uses_the_base_backup_and_the_archived_wal(history):
    chain = chain_from_folders([history["base"]], history["archive"])
    plan = chain.plan(parse_lsn(history["lsn"][2]))
    assert [step.kind for step in plan.steps] == [Kind.FULL, Kind.LOG]
    assert plan.steps[0].name == "base"
    require_wal_coverage(history["archive"], 1, plan.steps[0].end, parse_lsn(history["lsn"][2]))


def test_restore_to_the_manifests_lsn_is_exact(history):
    lsn2 = history["lsn"][2]
    manifest = manifest_at(history["manifests"], {"lsn": lsn2})
    assert sorted(history["manifests"][2].tables["patients"].segments) == [1, 3, 4]
    result = verify_restore({"patients": restore(history, lsn2, "restore-lsn2")}, manifest, [SPEC])
    assert result.exact, result.describe()
    assert result.table("patients").restored_rows == 1000
    assert [s.restored_rows for s in result.table("patients").segments] == [200, 200, 200, 199, 201]


def test_restore_to_an_earlier_lsn_differs_in_the_later_changes_only(history):
    lsn1, lsn2 = history["lsn"][1], history["lsn"][2]
    restored = restore(history, lsn1, "restore-lsn1")
    at_lsn1 = manifest_at(history["manifests"], {"lsn": lsn1})
    assert verify_restore({"patients": restored}, at_lsn1, [SPEC]).exact
    at_lsn2 = manifest_at(history["manifests"], {"lsn": lsn2})
    result = verify_restore({"patients": restored}, at_lsn2, [SPEC],
                            reference={"patients": history["rows"][2]})
    table = result.table("patients")
    assert not result.ok
    assert table.mismatched_segments == [3, 4]
    found = sorted((d.kind, d.key["id"]) for d in table.real_differences)
    assert found == [("changed", i) for i in range(650, 656)] + [("extra", 700), ("missing", 1000)]


def test_rows_changed_after_the_point_are_drift_but_a_deletion_is_not(history):
    lsn1, lsn2 = history["lsn"][1], history["lsn"][2]
    restored = restore(history, lsn2, "restore-lsn2")
    result = verify_restore({"patients": restored}, manifest_at(history["manifests"], {"lsn": lsn1}), [SPEC],
                            reference={"patients": history["rows"][1]}, change_column="updated_at",
                            point=datetime(2026, 11, 2, 12, tzinfo=UTC))
    table = result.table("patients")
    assert sorted(key["id"] for key in table.drift) == [*range(650, 656), 1000]
    # Row 700 was deleted after the point: no column can show that, so it stays a real difference.
    assert [(d.kind, d.key["id"]) for d in table.real_differences] == [("missing", 700)]
    assert table.mismatched_segments == [3] and not result.ok


def test_base_backup_manifest_verified_then_one_changed_byte_caught(history):
    manifest = verify_backup_folder(history["base"])
    assert manifest.version == 1 and manifest.wal_ranges[0].timeline == 1
    with history["source"].connect() as conn:
        relation = conn.execute("SELECT pg_relation_filepath('patients')").fetchone()[0]
    damaged = history["root"] / "damaged"
    shutil.copytree(history["base"], damaged)
    with (damaged / relation).open("r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(BackupDamaged, match=f"1 file\\(s\\) do not match backup_manifest:\n  {relation}: "
                                            "CRC32C checksum [0-9a-f]{8}, the manifest says [0-9a-f]{8}"):
        verify_backup_folder(damaged)


def test_hole_in_the_wal_archive_is_named(history):
    archive = history["root"] / "archive-with-hole"
    shutil.copytree(history["archive"], archive)
    base = chain_from_folders([history["base"]]).get("base")
    coverage = wal_coverage(archive, 1, base.end, parse_lsn(history["lsn"][2]))
    assert coverage.ok and len(coverage.missing) == 0
    needed = sorted(n for n in os.listdir(archive) if len(n) == 24)
    index = len(needed) // 2
    hole, before, after = needed[index], needed[:index], needed[index + 1:]
    (archive / hole).unlink()
    assert wal_coverage(archive, 1, base.end, parse_lsn(history["lsn"][2])).missing == [hole]
    first_run = f"WAL {before[0]}" + (f"\\.\\.{before[-1]}" if len(before) > 1 else "")
    second_run = f"WAL {after[0]}" + (f"\\.\\.{after[-1]}" if len(after) > 1 else "")
    expected = f"gap between {first_run} \\(ends at [0-9A-F/]+\\) and {second_run} "
    with pytest.raises(PositionGap, match=expected):
        chain_from_folders([history["base"]], archive).plan(parse_lsn(history["lsn"][2]))
