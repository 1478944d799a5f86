"""State in one PostgreSQL table, for jobs on short-lived containers or spread over a Dask cluster.

Every operation is one autocommitted statement, so a save is durable when it returns; the lease
is taken by a single `INSERT .. ON CONFLICT .. DO UPDATE .. WHERE expired`, which PostgreSQL runs
atomically, so two runs can never both win it. Schema and table names are quoted identifiers.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from etl import security
from etl.errors import ConnectionFailed, RuntimeFailure
from etl.records import Json
from etl.redact import RedactedRepr, redact
from etl.state.base import Checkpoint, Lease, from_epoch, lease_held, lease_lost, new_lease, now, to_epoch
from etl.state.liveness import holder_is_dead, log_takeover

IDENTIFIER_MAX = 63
"""PostgreSQL truncates longer identifiers (NAMEDATALEN - 1)."""


class Config(RedactedRepr, BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    type: Literal["postgres"]
    dsn: str
    """libpq connection string or URI; take the password from ${env:..} or ${secret:..}."""
    schema_: str = Field(default="etl", alias="schema", min_length=1, max_length=IDENTIFIER_MAX)
    """Schema of the state table, created if missing."""
    table: str = Field(default="etl_state", min_length=1, max_length=IDENTIFIER_MAX)
    """The state table, created if missing."""


def endpoints(config: Config) -> list[security.Endpoint]:
    """Every host of the DSN and how it is secured (etl/security.py decides whether that is allowed)."""
    return security.libpq_endpoints(config.dsn)


class PostgresStateStore:
    def __init__(self, config: Config) -> None:
        from psycopg import sql

        self._dsn = config.dsn
        self._table = sql.Identifier(config.schema_, config.table)
        self._schema = sql.Identifier(config.schema_)
        self._where = f"PostgreSQL table {config.schema_}.{config.table}"
        self._lock = threading.Lock()
        self._connection: Any = None
        self._pid = 0
        self._create()

    # -- plumbing ------------------------------------------------------------------------------
    def _run(self, query: Any, params: tuple = (), *, fetch: str = "none", tolerate: tuple = ()) -> Any:
        """Run one statement under the lock on this process's connection, reconnecting if it broke.

        Errors of the `tolerate` classes are ignored (the statement returns None).
        """
        import psycopg

        with self._lock:
            try:
                if self._connection is None or self._connection.closed or self._pid != os.getpid():
                    self._connection = psycopg.connect(
                        self._dsn, autocommit=True, **security.libpq_tls_defaults(self._dsn))
                    self._pid = os.getpid()
                cursor = self._connection.execute(query, params)
                if fetch == "one":
                    return cursor.fetchone()
                if fetch == "all":
                    return cursor.fetchall()
                return cursor.rowcount
            except tolerate:
                return None
            except psycopg.OperationalError as error:
                raise ConnectionFailed(f"state store ({self._where}): {redact(str(error)).strip()}") from None
            except psycopg.Error as error:
                raise RuntimeFailure(f"state store ({self._where}): {redact(str(error)).strip()}") from None

    def _create(self) -> None:
        from psycopg import errors, sql

        statements = [
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self._schema),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (job text NOT NULL, kind text NOT NULL, key text NOT NULL,"
                " data text NOT NULL, expires_at double precision, PRIMARY KEY (job, kind, key))"
            ).format(self._table),
        ]
        for statement in statements:
            # two processes creating the same schema or table at once: the loser's error is harmless
            self._run(statement, tolerate=(errors.UniqueViolation,))

    # -- leases --------------------------------------------------------------------------------
    def acquire_lease(self, job: str, holder: str, ttl_seconds: float) -> Lease:
        from psycopg import sql

        take = sql.SQL(
            "INSERT INTO {t} AS s (job, kind, key, data, expires_at) VALUES (%s, 'lease', '', %s, %s)"
            " ON CONFLICT (job, kind, key)"
            " DO UPDATE SET data = EXCLUDED.data, expires_at = EXCLUDED.expires_at"
            " WHERE s.expires_at <= %s OR s.data::json->>'token' = %s RETURNING job"
        ).format(t=self._table)
        read = sql.SQL(
            "SELECT data, expires_at FROM {} WHERE job = %s AND kind = 'lease' AND key = ''"
        ).format(self._table)
        dead: dict[str, str] = {}  # the token and holder of a lease whose process is dead
        while True:
            lease = new_lease(job, holder, ttl_seconds)
            data = json.dumps({"holder": holder, "token": lease.token})
            arguments = (job, data, to_epoch(lease.expires_at), to_epoch(now()), dead.get("token", ""))
            if self._run(take, arguments, fetch="one") is not None:
                if dead:
                    log_takeover(job, dead["holder"])
                return lease
            current = self._run(read, (job,), fetch="one")
            if current is None:  # released in between: try again
                continue
            held = json.loads(current[0])
            if held["token"] == dead.get("token") or not holder_is_dead(held["holder"]):
                raise lease_held(job, held["holder"], from_epoch(current[1]))
            dead = held  # take it over on the next try, only if it is still that lease

    def renew_lease(self, lease: Lease, ttl_seconds: float) -> Lease:
        from psycopg import sql

        renewed = Lease(
            lease.job, lease.holder, new_lease(lease.job, lease.holder, ttl_seconds).expires_at, lease.token
        )
        changed = self._run(
            sql.SQL(
                "UPDATE {} SET expires_at = %s WHERE job = %s AND kind = 'lease' AND key = ''"
                " AND data::json->>'token' = %s"
            ).format(self._table),
            (to_epoch(renewed.expires_at), lease.job, lease.token),
        )
        if changed != 1:
            raise lease_lost(lease)
        return renewed

    def release_lease(self, lease: Lease) -> None:
        from psycopg import sql

        self._run(
            sql.SQL(
                "DELETE FROM {} WHERE job = %s AND kind = 'lease' AND key = '' AND data::json->>'token' = %s"
            ).format(self._table),
            (lease.job, lease.token),
        )

    # -- checkpoints and values ----------------------------------------------------------------
    def checkpoints(self, job: str) -> dict[str, Checkpoint]:
        from psycopg import sql

        rows = self._run(
            sql.SQL("SELECT data FROM {} WHERE job = %s AND kind = 'checkpoint'").format(self._table),
            (job,),
            fetch="all",
        )
        found = (Checkpoint.from_json(row[0]) for row in rows)
        return {checkpoint.partition: checkpoint for checkpoint in found}

    def save_checkpoint(self, job: str, checkpoint: Checkpoint) -> None:
        self._put(job, "checkpoint", checkpoint.partition, checkpoint.to_json())

    def clear(self, job: str) -> None:
        from psycopg import sql

        self._run(sql.SQL("DELETE FROM {} WHERE job = %s AND kind <> 'lease'").format(self._table), (job,))

    def get_value(self, job: str, key: str) -> Json | None:
        from psycopg import sql

        row = self._run(
            sql.SQL("SELECT data FROM {} WHERE job = %s AND kind = 'value' AND key = %s").format(self._table),
            (job, key),
            fetch="one",
        )
        return None if row is None else json.loads(row[0])

    def set_value(self, job: str, key: str, value: Json) -> None:
        self._put(job, "value", key, json.dumps(value))

    def _put(self, job: str, kind: str, key: str, data: str) -> None:
        from psycopg import sql

        self._run(
            sql.SQL(
                "INSERT INTO {} (job, kind, key, data) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (job, kind, key) DO UPDATE SET data = EXCLUDED.data"
            ).format(self._table),
            (job, kind, key, data),
        )

    # -- the ledger: kind `ledger:<table>`, one row per source key ------------------------------
    def ledger_get(self, job: str, table: str, keys: Sequence[str]) -> dict[str, Json]:
        from psycopg import sql

        rows = self._run(
            sql.SQL("SELECT key, data FROM {} WHERE job = %s AND kind = %s AND key = ANY(%s)")
            .format(self._table),
            (job, _ledger_kind(table), list(dict.fromkeys(keys))), fetch="all")
        return {key: json.loads(data) for key, data in rows}

    def ledger_put(self, job: str, table: str, entries: Mapping[str, Json | None]) -> None:
        from psycopg import sql

        kept = {key: json.dumps(value) for key, value in entries.items() if value is not None}
        gone = [key for key, value in entries.items() if value is None]
        kind = _ledger_kind(table)
        # one statement, so the upserts and deletes of a batch are applied together
        self._run(sql.SQL(
            "WITH gone AS (DELETE FROM {t} WHERE job = %s AND kind = %s AND key = ANY(%s))"
            " INSERT INTO {t} (job, kind, key, data)"
            " SELECT %s, %s, k, d FROM unnest(%s::text[], %s::text[]) AS e(k, d)"
            " ON CONFLICT (job, kind, key) DO UPDATE SET data = EXCLUDED.data"
        ).format(t=self._table), (job, kind, gone, job, kind, list(kept), list(kept.values())))

    def ledger_page(self, job: str, table: str, after: str | None, limit: int
                    ) -> tuple[list[tuple[str, Json]], str | None]:
        from psycopg import sql

        rows = self._run(sql.SQL(
            "SELECT key, data FROM {} WHERE job = %s AND kind = %s AND key COLLATE \"C\" > %s"
            " ORDER BY key COLLATE \"C\" LIMIT %s"
        ).format(self._table), (job, _ledger_kind(table), after or "", limit), fetch="all")
        page = [(key, json.loads(data)) for key, data in rows]
        return page, (page[-1][0] if len(page) == limit else None)

    def ledger_clear(self, job: str, table: str) -> None:
        from psycopg import sql

        self._run(sql.SQL("DELETE FROM {} WHERE job = %s AND kind = %s").format(self._table),
                  (job, _ledger_kind(table)))

    def close(self) -> None:
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None


def open_store(config: Config, *, base_dir: Path) -> PostgresStateStore:
    """`base_dir` is unused: the store lives in the database the DSN names."""
    return PostgresStateStore(config)


def _ledger_kind(table: str) -> str:
    return f"ledger:{table}"
