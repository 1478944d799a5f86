"""A PostgreSQL cluster of a test module's own, with wal_level = logical (the shared local server runs
with wal_level = replica, which logical decoding cannot use): initdb and pg_ctl on a free port in a
temporary folder, stopped (pg_ctl stop: the postmaster of that folder's pid file) at the end."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL's server programs refuse to run as root: run them as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def logical_dsn():
    """The DSN of the `postgres` database of a cluster with wal_level = logical."""
    if not (BIN / "initdb").exists():
        pytest.skip(f"no PostgreSQL server programs in {BIN}: no cluster with wal_level = logical")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: initdb refuses root")
    folder = Path(tempfile.mkdtemp(prefix="etl_logical_"))
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    port = _free_port()
    started = False
    try:
        made = subprocess.run(
            _as_postgres([str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                          "--no-sync"]),
            capture_output=True, text=True, timeout=120, check=False,
        )
        if made.returncode != 0:
            pytest.skip(f"initdb failed here: {made.stderr.strip()[-300:]}")
        options = (
            f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={folder}"
            " -c wal_level=logical -c max_replication_slots=4 -c max_wal_senders=4 -c fsync=off"
        )
        start = subprocess.run(
            _as_postgres([str(BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"),
                          "-w", "-t", "60", "start"]),
            capture_output=True, text=True, timeout=90, check=False,
        )
        if start.returncode != 0:
            pytest.skip(f"the test's own cluster did not start: {start.stderr.strip()[-300:]}")
        started = True
        yield f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    finally:
        if started:
            subprocess.run(_as_postgres([str(BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                           capture_output=True, timeout=60, check=False)
        shutil.rmtree(folder, ignore_errors=True)
