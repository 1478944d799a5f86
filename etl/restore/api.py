"""The restore functions notebooks and the command call: load a history, plan, check, verify.

Each engine is an object of the registry (`etl.restore.engines`); these functions dispatch to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from etl.restore.chain import Chain, RestorePlan
from etl.restore.engines import ENGINES, get_engine

__all__ = ["ENGINES", "load_chain", "plan_restore", "to_position"]


def load_chain(engine: str, *sources: str | Path | Iterable[Mapping[str, Any]],
               wal_archive: str | Path | None = None, verify_files: bool = False) -> Chain:
    """An engine's backup history as a Chain.

    - mssql: one CSV/JSON export of msdb.dbo.backupset, RESTORE HEADERONLY or dbatools'
      Get-DbaDbBackupHistory, or rows (dicts)
    - oracle: one folder of exported views (v$backup_set, v$backup_datafile, v$backup_redolog)
    - postgres: backup folders (full and PostgreSQL 17 incremental), `wal_archive` optional;
      `verify_files` checks every file against its backup_manifest first
    - mongo: mongodump folders (full dumps with --oplog, and oplog slices)

    The old names sqlserver, postgresql and mongodb are accepted too.
    """
    found = get_engine(engine)
    if verify_files and not found.verifies_files:
        raise found.no_file_checksums()
    return found.load_history(sources, wal_archive=wal_archive, verify_files=verify_files)


def plan_restore(chain: Chain, target: Any = None, *, full: str | None = None,
                 sequence: Sequence[str] | None = None) -> RestorePlan:
    """The minimal restore sequence reaching `target`, or the check of a given `sequence`.

    `target` is None (the latest point), a datetime, or a position in the engine's terms: an LSN
    (SQL Server number, PostgreSQL `X/Y` text), an SCN, or an oplog `bson.Timestamp`. Raises a
    ChainError subclass naming the backups when no valid sequence exists.
    """
    return get_engine(chain.engine).plan(chain, target, full=full, sequence=sequence)


def to_position(engine: str, target: Any) -> int | datetime | None:
    """A target in the engine's own notation, on the chain's number line."""
    return get_engine(engine).to_position(target)
