"""SQL Server backup history: msdb.dbo.backupset rows or RESTORE HEADERONLY output, as a Chain.

Column meanings (Microsoft documentation):
- backupset: https://learn.microsoft.com/en-us/sql/relational-databases/system-tables/backupset-transact-sql
  `type` D = database, I = differential database, L = log; `differential_base_lsn` "changes with
  LSNs greater than or equal to differential_base_lsn are included"; `differential_base_guid` is the
  backup_set_uuid of the differential's base full; `is_copy_only` fulls do not reset the
  differential base; `first_recovery_fork_guid` / `last_recovery_fork_guid` name the fork at the
  start and end of the backup; `family_guid` identifies the database across restores.
- RESTORE HEADERONLY: https://learn.microsoft.com/en-us/sql/t-sql/statements/restore-statements-headeronly-transact-sql
  BackupType 1 = database, 2 = transaction log, 5 = differential database; the same facts under
  CamelCase names (FirstLSN, DifferentialBaseGUID, FirstRecoveryForkID, RecoveryForkID, ...).
- Log chains: https://learn.microsoft.com/en-us/sql/relational-databases/backup-restore/transaction-log-backups-sql-server
  a log backup's first_lsn equals the previous log backup's last_lsn; the first log restored
  after a data backup must contain that backup's last_lsn.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from etl.inputs import json_rows, parse_json, read_text
from etl.restore.chain import Backup, Chain, ChainError, Kind, first_present

BACKUPSET_QUERY = """
SELECT backup_set_id, backup_set_uuid, name, type, is_copy_only, database_name,
       first_lsn, last_lsn, checkpoint_lsn, database_backup_lsn,
       differential_base_lsn, differential_base_guid, family_guid,
       first_recovery_fork_guid, last_recovery_fork_guid,
       backup_start_date, backup_finish_date
FROM msdb.dbo.backupset
WHERE database_name = ? AND type IN ('D', 'I', 'L')
ORDER BY backup_finish_date, backup_set_id
"""
"""The rows `read_msdb` needs (run through pyodbc with the database name as parameter)."""

_TYPES = {"D": Kind.FULL, "I": Kind.DIFFERENTIAL, "L": Kind.LOG,
          "1": Kind.FULL, "5": Kind.DIFFERENTIAL, "2": Kind.LOG}


def chain_from_rows(rows: Iterable[Mapping[str, Any]], *, source: str = "backup history") -> Chain:
    """A Chain from backupset rows or RESTORE HEADERONLY rows (either column naming, any case)."""
    raw = [dict(row) for row in rows]
    fulls = {_guid(first_present(r, "backup_set_uuid", "BackupSetGUID")): (r, _name(r, i))
             for i, r in enumerate(raw, start=1)}
    backups = [_backup(row, i, fulls, source) for i, row in enumerate(raw, start=1)]
    backups = [b for b in backups if b is not None]
    return Chain("sqlserver", backups, format_position=str)


def load_history(path: str | Path) -> Chain:
    """A Chain from a CSV (header row) or JSON (list of objects) export of backupset or HEADERONLY."""
    path = Path(path)
    text = read_text(path, "SQL Server backup history")
    if path.suffix.lower() == ".json":
        rows = json_rows(parse_json(text, path), path, "backupset")
    else:
        rows = list(csv.DictReader(text.splitlines()))
    return chain_from_rows(rows, source=str(path))


def read_msdb(connection: Any, database: str) -> Chain:
    """A Chain from a live server: `connection` is a DB-API connection (pyodbc) to the instance."""
    cursor = connection.cursor()
    cursor.execute(BACKUPSET_QUERY, database)
    columns = [c[0] for c in cursor.description]
    return chain_from_rows((dict(zip(columns, row, strict=True)) for row in cursor.fetchall()),
                           source=f"msdb.dbo.backupset for {database}")


def _backup(row: dict[str, Any], number: int, by_uuid: dict[str | None, tuple[dict, str]],
            source: str) -> Backup | None:
    type_code = str(first_present(row, "type", "BackupType") or "").strip().upper()
    kind = _TYPES.get(type_code)
    if kind is None:
        return None  # file, filegroup and partial backups are outside database restores
    name = _name(row, number)
    first_lsn = _lsn(row, source, name, "first_lsn", "FirstLSN")
    last_lsn = _lsn(row, source, name, "last_lsn", "LastLSN")
    copy_only = _flag(first_present(row, "is_copy_only", "IsCopyOnly"))
    details = {"backup_set_uuid": _guid(first_present(row, "backup_set_uuid", "BackupSetGUID")),
               "first_lsn": first_lsn, "last_lsn": last_lsn, "is_copy_only": copy_only}
    start, base, missing_base = first_lsn, None, None
    if kind is Kind.DIFFERENTIAL:
        base_guid = _guid(first_present(row, "differential_base_guid", "DifferentialBaseGUID"))
        base_lsn = _lsn(row, source, name, "differential_base_lsn", "DifferentialBaseLSN")
        base_row, base_name = by_uuid.get(base_guid, ({}, ""))
        # The base full is the one whose backup_set_uuid is differential_base_guid and whose
        # checkpoint_lsn is differential_base_lsn.
        if base_row and _lsn(base_row, source, base_name, "checkpoint_lsn", "CheckpointLSN") == base_lsn:
            base = base_name
        else:
            missing_base = f"full backup_set_uuid {base_guid} at checkpoint_lsn {base_lsn}"
        start = base_lsn
        details.update(differential_base_guid=base_guid, differential_base_lsn=base_lsn)
    return Backup(
        name=name, kind=kind, start=start, end=last_lsn, base=base, missing_base=missing_base,
        lineage_start=_guid(first_present(row, "first_recovery_fork_guid", "FirstRecoveryForkID")),
        lineage_end=_guid(first_present(row, "last_recovery_fork_guid", "RecoveryForkID")),
        system=_guid(first_present(row, "family_guid", "FamilyGUID")),
        can_be_base=not (kind is Kind.FULL and copy_only),
        finished=_date(first_present(row, "backup_finish_date", "BackupFinishDate"), source, name),
        details=details | ({"why_no_base": "a copy-only full"} if copy_only else {}),
    )


def _name(row: dict[str, Any], number: int) -> str:
    name = first_present(row, "name", "BackupName")
    if name:
        return str(name)
    set_id = first_present(row, "backup_set_id", "Position")
    return f"backup set {set_id if set_id is not None else number}"


def _lsn(row: dict[str, Any], source: str, name: str, *columns: str) -> int:
    value = first_present(row, *columns)
    try:
        return int(Decimal(str(value)))
    except (ArithmeticError, ValueError) as error:
        problem = "missing" if value is None else "not a number"
        raise ChainError(f"{source}: backup {name}: {columns[0]} is {problem}",
                         hint="export the LSN columns as numbers (numeric(25,0))") from error


def _guid(value: Any) -> str | None:
    return None if value is None else str(value).strip("{}").lower()


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in {"1", "true", "yes"}


def _date(value: Any, source: str, name: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError as error:
        raise ChainError(f"{source}: backup {name}: backup_finish_date {value!r} is not an ISO date",
                         hint="export dates as YYYY-MM-DD HH:MM:SS") from error
