"""The restore functions notebooks and the command call: load a history, plan, check, verify."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from bson.timestamp import Timestamp

from etl.errors import EtlError
from etl.restore import mongo, oracle, postgres, sqlserver
from etl.restore.chain import Chain, RestorePlan

ENGINES = ("sqlserver", "oracle", "postgresql", "mongodb")


def load_chain(engine: str, *sources: str | Path | Iterable[Mapping[str, Any]],
               wal_archive: str | Path | None = None, verify_files: bool = False) -> Chain:
    """An engine's backup history as a Chain.

    - sqlserver: one CSV/JSON export of msdb.dbo.backupset or RESTORE HEADERONLY, or rows (dicts)
    - oracle: one folder of exported views (v$backup_set, v$backup_datafile, v$backup_redolog)
    - postgresql: backup folders (full and PostgreSQL 17 incremental), `wal_archive` optional;
      `verify_files` checks every file against its backup_manifest first
    - mongodb: mongodump folders (full dumps with --oplog, and oplog slices)
    """
    if engine == "sqlserver" and len(sources) == 1:
        source = sources[0]
        return sqlserver.load_history(source) if isinstance(source, str | Path) \
            else sqlserver.chain_from_rows(source)
    if engine == "oracle" and len(sources) == 1 and isinstance(sources[0], str | Path):
        return oracle.load_views(sources[0])
    if engine == "postgresql" and sources and all(isinstance(s, str | Path) for s in sources):
        return postgres.chain_from_folders([Path(str(s)) for s in sources], wal_archive, verify=verify_files)
    if engine == "mongodb" and sources and all(isinstance(s, str | Path) for s in sources):
        return mongo.chain_from_dumps([Path(str(s)) for s in sources])
    if engine not in ENGINES:
        raise EtlError(f"unknown backup engine {engine!r}", hint=f"use one of {', '.join(ENGINES)}")
    raise EtlError(f"{engine}: cannot read a backup history from {len(sources)} source(s) of that kind",
                   hint="see etl.restore.load_chain for what each engine takes")


def plan_restore(chain: Chain, target: Any = None, *, full: str | None = None,
                 sequence: Sequence[str] | None = None) -> RestorePlan:
    """The minimal restore sequence reaching `target`, or the check of a given `sequence`.

    `target` is None (the latest point), a datetime, or a position in the engine's terms: an LSN
    (SQL Server number, PostgreSQL `X/Y` text), an SCN, or an oplog `bson.Timestamp`. Raises a
    ChainError subclass naming the backups when no valid sequence exists.
    """
    point = to_position(chain.engine, target)
    if sequence is not None:
        return chain.check(list(sequence), point)
    return chain.plan(point, full=full)


def to_position(engine: str, target: Any) -> int | datetime | None:
    """A target in the engine's own notation, on the chain's number line."""
    if target is None or isinstance(target, datetime):
        return target
    if isinstance(target, Timestamp):
        return mongo.position(target)
    if engine == "postgresql" and isinstance(target, str):
        return postgres.parse_lsn(target)
    try:
        return int(Decimal(str(target)))
    except ArithmeticError:
        raise EtlError(f"{engine}: restore target {target!r} is not a position",
                       hint="give an LSN, SCN, oplog Timestamp or a datetime") from None
