"""One rule for rejected records in validation: left out of both sides, and counted as rejects.

A record the mapping rejects makes no row on either side (validation maps it again and rejects it
again). A record a target refused at load is in the dead letters, not in the target; without this
rule validation would map it again and report its row "missing". Here its rows are left out of
that target table's source side, read from the dead letters of the job's current generation
(`etl.engine.verdict`), so a reject is a reject on every path.
"""

from __future__ import annotations

import threading

from etl.records import TableRows


class Refused:
    """Source keys each target table (`target.table`) refused at load, and which of them were met."""

    def __init__(self, keys: dict[str, set[str]] | None = None) -> None:
        self.keys = keys or {}
        self._met: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def rows(self, target: str, table: str, rows: TableRows) -> list[dict]:
        """The rows of `rows` whose source record the table did not refuse."""
        name = f"{target}.{table}"
        refused = self.keys.get(name)
        if not refused:
            return rows.rows
        kept, met = [], set()
        for row, key in zip(rows.rows, rows.source_keys, strict=True):
            if key in refused:
                met.add(key)
            else:
                kept.append(row)
        if met:
            with self._lock:
                self._met.setdefault(name, set()).update(met)
        return kept

    def count(self, target: str, table: str) -> int:
        """Records refused by the table whose rows the source side met (and left out)."""
        return len(self._met.get(f"{target}.{table}", ()))
