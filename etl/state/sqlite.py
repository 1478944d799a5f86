"""The default state store: one SQLite file beside the job, safe across threads and processes.

WAL journal with `synchronous=FULL`, so every committed save survives a crash or SIGKILL; one
connection per thread and process (a connection inherited across `fork` is never reused); lease
changes run inside `BEGIN IMMEDIATE`, so two processes cannot both take a lease.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

from pydantic import BaseModel, ConfigDict

from etl.errors import RuntimeFailure
from etl.files import make_folder, make_private
from etl.records import Json
from etl.redact import RedactedRepr
from etl.state.base import (
    Checkpoint,
    Lease,
    from_epoch,
    lease_held,
    lease_lost,
    new_lease,
    now,
    to_epoch,
)
from etl.state.liveness import holder_is_dead, log_takeover

BUSY_TIMEOUT_MS = 30_000
_SQLITE_PARAMETERS = 900
"""Keys per IN list: SQLite allows 999 host parameters in a statement before version 3.32."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lease (
    job TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at REAL NOT NULL, token TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint (
    job TEXT NOT NULL, partition TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (job, partition));
CREATE TABLE IF NOT EXISTS value (
    job TEXT NOT NULL, key TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (job, key));
CREATE TABLE IF NOT EXISTS ledger (
    job TEXT NOT NULL, tbl TEXT NOT NULL, key TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (job, tbl, key)) WITHOUT ROWID;
"""


class Config(RedactedRepr, BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["sqlite"] = "sqlite"
    path: str = ".etl/state.sqlite"
    """Database file, relative to the job file's folder."""


class SqliteStateStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            make_folder(path.parent)
        except OSError as error:
            raise RuntimeFailure(
                f"cannot create the state store folder {path.parent}: {error.strerror}"
            ) from None
        try:
            for file in (path, *(path.with_name(path.name + end) for end in ("-wal", "-shm", "-journal"))):
                if file == path or file.exists():
                    make_private(file)
        except OSError as error:
            raise RuntimeFailure(f"cannot create the state store {path}: {error.strerror}") from None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[tuple[int, sqlite3.Connection]] = []
        self._closed = False
        try:
            self._connection().executescript(_SCHEMA)
        except sqlite3.Error as error:
            raise RuntimeFailure(f"cannot create the state store {path}: {error}") from None

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeFailure(f"state store {self.path} is closed")
        owned = getattr(self._local, "connection", None)
        if owned is not None and owned[0] == os.getpid():
            return owned[1]
        try:
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as error:
            raise RuntimeFailure(f"cannot open the state store {self.path}: {error}") from None
        self._local.connection = (os.getpid(), connection)
        with self._lock:
            self._connections.append((os.getpid(), connection))
        return connection

    def _query(self, sql: str, params: tuple) -> list[tuple]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as error:
            raise RuntimeFailure(f"state store {self.path}: {error}") from None

    def _transaction(self) -> _Transaction:
        return _Transaction(self._connection(), self.path)

    def acquire_lease(self, job: str, holder: str, ttl_seconds: float) -> Lease:
        with self._transaction() as db:
            row = db.execute("SELECT holder, expires_at FROM lease WHERE job = ?", (job,)).fetchone()
            if row is not None and row[1] > to_epoch(now()):
                if not holder_is_dead(row[0]):
                    raise lease_held(job, row[0], from_epoch(row[1]))
                log_takeover(job, row[0])
            lease = new_lease(job, holder, ttl_seconds)
            db.execute(
                "INSERT OR REPLACE INTO lease (job, holder, expires_at, token) VALUES (?, ?, ?, ?)",
                (job, holder, to_epoch(lease.expires_at), lease.token),
            )
        return lease

    def renew_lease(self, lease: Lease, ttl_seconds: float) -> Lease:
        renewed = new_lease(lease.job, lease.holder, ttl_seconds)
        renewed = Lease(lease.job, lease.holder, renewed.expires_at, lease.token)
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE lease SET expires_at = ? WHERE job = ? AND token = ?",
                (to_epoch(renewed.expires_at), lease.job, lease.token),
            ).rowcount
        if changed != 1:
            raise lease_lost(lease)
        return renewed

    def release_lease(self, lease: Lease) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM lease WHERE job = ? AND token = ?", (lease.job, lease.token))

    def checkpoints(self, job: str) -> dict[str, Checkpoint]:
        rows = self._query("SELECT data FROM checkpoint WHERE job = ?", (job,))
        found = (Checkpoint.from_json(row[0]) for row in rows)
        return {checkpoint.partition: checkpoint for checkpoint in found}

    def save_checkpoint(self, job: str, checkpoint: Checkpoint) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO checkpoint (job, partition, data) VALUES (?, ?, ?)",
                (job, checkpoint.partition, checkpoint.to_json()),
            )

    def clear(self, job: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM checkpoint WHERE job = ?", (job,))
            db.execute("DELETE FROM value WHERE job = ?", (job,))
            db.execute("DELETE FROM ledger WHERE job = ?", (job,))

    def get_value(self, job: str, key: str) -> Json | None:
        rows = self._query("SELECT data FROM value WHERE job = ? AND key = ?", (job, key))
        return json.loads(rows[0][0]) if rows else None

    def set_value(self, job: str, key: str, value: Json) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO value (job, key, data) VALUES (?, ?, ?)",
                (job, key, json.dumps(value)),
            )

    def ledger_get(self, job: str, table: str, keys: Sequence[str]) -> dict[str, Json]:
        found: dict[str, Json] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _SQLITE_PARAMETERS):
            chunk = unique[start:start + _SQLITE_PARAMETERS]
            marks = ", ".join("?" * len(chunk))
            rows = self._query(f"SELECT key, data FROM ledger WHERE job = ? AND tbl = ? AND key IN ({marks})",
                               (job, table, *chunk))
            found.update((key, json.loads(data)) for key, data in rows)
        return found

    def ledger_put(self, job: str, table: str, entries: Mapping[str, Json | None]) -> None:
        kept = [(job, table, key, json.dumps(value)) for key, value in entries.items() if value is not None]
        gone = [(job, table, key) for key, value in entries.items() if value is None]
        with self._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO ledger (job, tbl, key, data) VALUES (?, ?, ?, ?)", kept)
            db.executemany("DELETE FROM ledger WHERE job = ? AND tbl = ? AND key = ?", gone)

    def ledger_page(self, job: str, table: str, after: str | None, limit: int
                    ) -> tuple[list[tuple[str, Json]], str | None]:
        rows = self._query(
            "SELECT key, data FROM ledger WHERE job = ? AND tbl = ? AND key > ? ORDER BY key LIMIT ?",
            (job, table, "" if after is None else after, limit))
        page = [(key, json.loads(data)) for key, data in rows]
        return page, (page[-1][0] if len(page) == limit else None)

    def ledger_clear(self, job: str, table: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM ledger WHERE job = ? AND tbl = ?", (job, table))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            mine = [c for pid, c in self._connections if pid == os.getpid()]
            self._connections.clear()
        for connection in mine:
            connection.close()


class _Transaction:
    """`BEGIN IMMEDIATE` ... `COMMIT` (or `ROLLBACK` on error): takes the write lock up front."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self.connection = connection
        self.path = path

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise RuntimeFailure(f"state store {self.path}: {error}") from None
        return self.connection

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None:
            try:
                self.connection.execute("COMMIT")
                return
            except sqlite3.Error as commit_error:
                error = commit_error
        self.connection.execute("ROLLBACK")
        if isinstance(error, sqlite3.Error):
            raise RuntimeFailure(f"state store {self.path}: {error}") from None


def open_store(config: Config, *, base_dir: Path) -> SqliteStateStore:
    return SqliteStateStore(base_dir / config.path)
