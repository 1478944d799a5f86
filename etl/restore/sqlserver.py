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
- Recovery forks: https://learn.microsoft.com/en-us/sql/relational-databases/backup-restore/recovery-paths
  `fork_point_lsn` is set when first_recovery_fork_guid differs from last_recovery_fork_guid.
- dbatools `Get-DbaDbBackupHistory` (https://docs.dbatools.io/Get-DbaDbBackupHistory): one object
  per backup set with `Type` as text (Full, Differential, Log, File, Differential File, Partial
  Full, Partial Differential), `FirstLsn`, `LastLsn`, `CheckpointLsn`, `DatabaseBackupLsn`,
  `IsCopyOnly`, `LastRecoveryForkGuid`, `Start`/`End`, and `Path`/`FullName` (a list for a
  striped backup); no name, backup_set_uuid nor differential_base_guid. `ConvertTo-Json` writes
  dates as `/Date(milliseconds since 1970 UTC)/` and Windows PowerShell's `>` writes UTF-16LE.
  A differential's `DatabaseBackupLsn` is its base full's `CheckpointLsn` (dbatools links them so).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path, PureWindowsPath
from typing import Any

from etl.inputs import csv_rows, json_rows, parse_json, read_text
from etl.restore.chain import Backup, BrokenChain, Chain, Kind, UnreadableInput, as_utc, first_present
from etl.restore.engine import RestoreEngine, Source

BACKUPSET_QUERY = """
SELECT b.backup_set_id, b.backup_set_uuid, b.name, b.type, b.is_copy_only, b.database_name,
       b.first_lsn, b.last_lsn, b.checkpoint_lsn, b.database_backup_lsn,
       b.differential_base_lsn, b.differential_base_guid, b.family_guid,
       b.first_recovery_fork_guid, b.last_recovery_fork_guid, b.fork_point_lsn,
       b.backup_start_date, b.backup_finish_date,
       (SELECT TOP 1 f.physical_device_name FROM msdb.dbo.backupmediafamily AS f
        WHERE f.media_set_id = b.media_set_id ORDER BY f.family_sequence_number) AS physical_device_name
FROM msdb.dbo.backupset AS b
WHERE b.database_name = ?
ORDER BY b.backup_finish_date, b.backup_set_id
"""
"""The rows `read_msdb` needs (run through pyodbc with the database name as parameter)."""

ENGINE = "mssql"
"""The engine's name, as sources call it."""
_TYPES = {"d": Kind.FULL, "1": Kind.FULL, "full": Kind.FULL, "database": Kind.FULL,
          "i": Kind.DIFFERENTIAL, "5": Kind.DIFFERENTIAL, "differential": Kind.DIFFERENTIAL,
          "database differential": Kind.DIFFERENTIAL, "differential database": Kind.DIFFERENTIAL,
          "l": Kind.LOG, "2": Kind.LOG, "log": Kind.LOG, "transaction log": Kind.LOG}
"""backupset `type`, HEADERONLY `BackupType` and their descriptions (dbatools `Type`, SSMS)."""
_NOT_DATABASE_RESTORES = {"f", "4", "file", "filegroup", "g", "6", "differential file", "p", "7", "partial",
                          "partial full", "q", "8", "partial differential", "differential partial"}
"""File, filegroup and partial backups: a database restore plan does not use them."""
_JSON_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
_DATE_FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M")
"""Dates as SQL Server tools write them in US English (`3/24/2021 9:15:00 PM`)."""
_FILE_COLUMNS = ("physical_device_name", "FullName", "Path", "BackupPath")
"""backupmediafamily's file, dbatools' FullName/Path: how a backup without a name is known."""


def chain_from_rows(rows: Iterable[Mapping[str, Any]], *, source: str = "backup history") -> Chain:
    """A Chain from backupset rows, RESTORE HEADERONLY rows or dbatools objects (any column naming,
    any case). Rows that are no database backup are kept in `Chain.skipped` with why."""
    raw = [dict(row) for row in rows]
    names = _names(raw)
    fulls = [(row, name) for row, name in zip(raw, names, strict=True) if _kind(row) is Kind.FULL]
    backups, skipped = [], []
    for row, name in zip(raw, names, strict=True):
        kind = _kind(row)
        if kind is None:
            skipped.append((name, _why_skipped(row)))
        else:
            backups.append(_backup(row, name, kind, fulls, source))
    return Chain(ENGINE, backups, format_position=str, stops_after_last_log=True, skipped=skipped)


def load_history(path: str | Path) -> Chain:
    """A Chain from a CSV (header row) or JSON (a list of objects, or one object) export of
    backupset, HEADERONLY or dbatools' Get-DbaDbBackupHistory, UTF-8 or UTF-16 with a BOM."""
    path = Path(path)
    text = read_text(path, "SQL Server backup history", error=UnreadableInput)
    if path.suffix.lower() == ".json":
        data = parse_json(text, path, error=UnreadableInput)
        rows = json_rows([data] if isinstance(data, dict) else data, path, "backupset", error=UnreadableInput)
    else:
        rows = csv_rows(text, path, error=UnreadableInput)
    return chain_from_rows(rows, source=str(path))


def read_msdb(connection: Any, database: str) -> Chain:
    """A Chain from a live server: `connection` is a DB-API connection (pyodbc) to the instance."""
    cursor = connection.cursor()
    cursor.execute(BACKUPSET_QUERY, database)
    columns = [c[0] for c in cursor.description]
    return chain_from_rows((dict(zip(columns, row, strict=True)) for row in cursor.fetchall()),
                           source=f"msdb.dbo.backupset for {database}")


def _get(row: dict[str, Any], *columns: str) -> Any:
    """A column's value; the text NULL (how SSMS and sqlcmd export a null) counts as missing."""
    value = first_present(row, *columns)
    return None if isinstance(value, str) and value.strip().upper() == "NULL" else value


def _type_text(row: dict[str, Any]) -> str:
    return str(_get(row, "type", "BackupType", "BackupTypeDescription") or "").strip().lower()


def _kind(row: dict[str, Any]) -> Kind | None:
    return _TYPES.get(_type_text(row))


def _why_skipped(row: dict[str, Any]) -> str:
    text = _type_text(row)
    if text in _NOT_DATABASE_RESTORES:
        return f"a file, filegroup or partial backup (type {text!r}): a database restore does not use it"
    return f"unknown backup type {text!r}" if text else "no backup type"


def _files(row: dict[str, Any]) -> list[str]:
    value = _get(row, *_FILE_COLUMNS)
    values = value if isinstance(value, list) else [] if value is None else [value]
    return [str(v) for v in values if v is not None and str(v).strip()]


def _names(rows: list[dict[str, Any]]) -> list[str]:
    """Each row's backup name: `name`, else its (first) file's name, else its backup set id; a
    name shared by several rows (backup sets appended to one file) gets its position or row number."""
    names = []
    for number, row in enumerate(rows, start=1):
        name, files = _get(row, "name", "BackupName"), _files(row)
        if name is not None and str(name).strip():
            names.append(str(name))
        elif files:
            names.append(PureWindowsPath(files[0]).name or files[0])
        else:
            set_id = _get(row, "backup_set_id", "BackupSetId", "Position")
            names.append(f"backup set {set_id if set_id is not None else number}")
    counts = Counter(names)
    return [name if counts[name] == 1 else
            f"{name} #{_get(row, 'position', 'backup_set_id', 'BackupSetId') or number}"
            for number, (row, name) in enumerate(zip(rows, names, strict=True), start=1)]


def _backup(row: dict[str, Any], name: str, kind: Kind, fulls: list[tuple[dict, str]], source: str) -> Backup:
    first_lsn = _lsn(row, source, name, "first_lsn", "FirstLSN")
    last_lsn = _lsn(row, source, name, "last_lsn", "LastLSN")
    copy_only = _flag(_get(row, "is_copy_only", "IsCopyOnly"))
    lineage_start = _guid(_get(row, "first_recovery_fork_guid", "FirstRecoveryForkID"))
    lineage_end = _guid(_get(row, "last_recovery_fork_guid", "RecoveryForkID", "LastRecoveryForkGuid"))
    details: dict[str, Any] = {
        "backup_set_uuid": _guid(_get(row, "backup_set_uuid", "BackupSetGUID")),
        "first_lsn": first_lsn, "last_lsn": last_lsn, "is_copy_only": copy_only, "files": _files(row)}
    start, base, missing_base = first_lsn, None, None
    if kind is Kind.DIFFERENTIAL:
        start, base, missing_base, link = _differential_base(row, name, fulls, source)
        base_guid = _guid(_get(row, "differential_base_guid", "DifferentialBaseGUID"))
        details.update(differential_base_lsn=start, link=link, differential_base_guid=base_guid)
    # without fork_point_lsn: the backup that crosses to the new fork holds everything from its first
    # LSN, so backups of the older fork past that LSN are not on the way to the new one
    fork_point = _get(row, "fork_point_lsn", "ForkPointLSN")
    return Backup(
        name=name, kind=kind, start=start, end=last_lsn, base=base, missing_base=missing_base,
        lineage_start=lineage_start, lineage_end=lineage_end,
        fork_point=_lsn(row, source, name, "fork_point_lsn", "ForkPointLSN") if fork_point is not None
        else first_lsn if lineage_start not in (None, lineage_end) and lineage_end is not None else None,
        system=_system(row),
        can_be_base=not (kind is Kind.FULL and copy_only),
        finished=_date(_get(row, "backup_finish_date", "BackupFinishDate", "End"), source, name),
        details=details | ({"why_no_base": "a copy-only full"} if copy_only else {}),
    )


def _differential_base(row: dict[str, Any], name: str, fulls: list[tuple[dict, str]],
                       source: str) -> tuple[int, str | None, str | None, str | None]:
    """A differential's base position, base name, how a missing base is named, and how it was linked.

    The base full is the one whose backup_set_uuid is differential_base_guid and whose checkpoint_lsn
    is differential_base_lsn. Without differential_base_guid (dbatools exports none) the base is
    the full of the same database whose checkpoint_lsn is differential_base_lsn (or the
    differential's database_backup_lsn)."""
    base_guid = _guid(_get(row, "differential_base_guid", "DifferentialBaseGUID"))
    if _get(row, "differential_base_lsn", "DifferentialBaseLSN") is not None:
        column = "differential_base_lsn"
        base_lsn = _lsn(row, source, name, "differential_base_lsn", "DifferentialBaseLSN")
    else:
        column = "database_backup_lsn"
        base_lsn = _lsn(row, source, name, "database_backup_lsn", "DatabaseBackupLSN")
    at_lsn = [full_name for full_row, full_name in fulls
              if _system(full_row) == _system(row)
              and _get(full_row, "checkpoint_lsn", "CheckpointLSN") is not None
              and _lsn(full_row, source, full_name, "checkpoint_lsn", "CheckpointLSN") == base_lsn]
    if base_guid is not None:
        named = [full_name for full_row, full_name in fulls if full_name in at_lsn
                 and _guid(_get(full_row, "backup_set_uuid", "BackupSetGUID")) == base_guid]
        if named:
            return base_lsn, named[0], None, None
        return base_lsn, None, f"full backup_set_uuid {base_guid} at checkpoint_lsn {base_lsn}", None
    if len(at_lsn) == 1:
        link = f"linked to {at_lsn[0]} by its checkpoint_lsn = {column} {base_lsn} " \
               "(the history has no differential_base_guid)"
        return base_lsn, at_lsn[0], None, link
    if not at_lsn:
        return base_lsn, None, (f"a full at checkpoint_lsn {base_lsn} ({column}; the history has no "
                                "differential_base_guid)"), None
    raise BrokenChain(f"{source}: differential {name}: {len(at_lsn)} fulls have checkpoint_lsn {base_lsn} "
                      f"({', '.join(sorted(at_lsn))}) and the history has no differential_base_guid to tell "
                      "which is its base", hint="export backupset.differential_base_guid and backup_set_uuid")


def _lsn(row: dict[str, Any], source: str, name: str, *columns: str) -> int:
    value = _get(row, *columns)
    if isinstance(value, float) and abs(value) >= 2**53:
        raise UnreadableInput(f"{source}: backup {name}: {columns[0]} {value!r} was written as a "
                              "floating-point number, which cannot hold every digit of an LSN",
                              hint="export the LSN columns as text or whole numbers")
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
            raise ValueError(value)
        number = Decimal(str(value).strip())
        if not number.is_finite() or number != number.to_integral_value() or number < 0:
            raise ValueError(value)
        return int(number)
    except (ArithmeticError, ValueError, InvalidOperation):
        problem = "missing" if value is None else f"{value!r}, not a whole number"
        raise UnreadableInput(f"{source}: backup {name}: {columns[0]} is {problem}",
                              hint="export the LSN columns as numbers (numeric(25,0))") from None


def _system(row: dict[str, Any]) -> str | None:
    """Which database: its family_guid, else (dbatools exports none) its name."""
    family = _guid(_get(row, "family_guid", "FamilyGUID"))
    if family is not None:
        return family
    name = _get(row, "database_name", "DatabaseName", "Database")
    return None if name is None else f"database {name}"


def _guid(value: Any) -> str | None:
    return None if value is None else str(value).strip().strip("{}").lower()


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in {"1", "true", "yes"}


def _date(value: Any, source: str, name: str) -> datetime | None:
    """ISO text, `/Date(ms)/` (UTC, as ConvertTo-Json writes), an object holding one under `value`
    (Windows PowerShell with extra properties), or `3/24/2021 9:15:00 PM`; as naive UTC when aware."""
    if isinstance(value, dict):
        value = first_present(value, "value", "DateTime")
    if value is None or isinstance(value, datetime):
        return as_utc(value)
    text = str(value).strip()
    if match := _JSON_DATE.match(text):
        milliseconds = int(match.group(1))
        if abs(milliseconds) < 253402300800000:
            return datetime.fromtimestamp(milliseconds / 1000, UTC).replace(tzinfo=None)
    else:
        try:
            return as_utc(datetime.fromisoformat(text))
        except ValueError:
            pass
        for form in _DATE_FORMATS:
            try:
                return datetime.strptime(text, form)
            except ValueError:
                continue
    raise UnreadableInput(f"{source}: backup {name}: backup_finish_date {value!r} is not a date",
                          hint="export dates as YYYY-MM-DD HH:MM:SS, /Date(ms)/ or M/D/YYYY h:mm:ss AM")


class SqlServer(RestoreEngine):
    """SQL Server: histories from msdb.dbo.backupset, RESTORE HEADERONLY or dbatools; LSN positions."""

    name = ENGINE
    aliases = ("sqlserver",)

    def load_history(self, sources: Sequence[Source], *, wal_archive: str | Path | None = None,
                     verify_files: bool = False) -> Chain:
        if len(sources) != 1:
            raise self.cannot_read(sources, "one export file or a list of rows")
        source = sources[0]
        return load_history(source) if isinstance(source, str | Path) else chain_from_rows(source)
