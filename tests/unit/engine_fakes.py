"""Small real in-memory implementations of the Source and Sink protocols, for engine unit tests.

They keep the protocols' contracts (key order, resume after a position, idempotent writes) so
the engine is exercised exactly as with a server, only without one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from etl.records import Batch, Json, Partition, Reject, TableRows, TableSpec
from etl.sinks.base import WriteResult


class ListSource:
    """Records `{"_id": int, ...}` of one table, read in `_id` order in batches of `batch_size`."""

    def __init__(self, name: str, tables: dict[str, list[dict]], batch_size: int = 10,
                 fail_after: int | None = None) -> None:
        self.name = name
        self.tables = {t: sorted(rows, key=lambda r: r["_id"]) for t, rows in tables.items()}
        self.batch_size = batch_size
        self.fail_after = fail_after
        """Raise after yielding this many batches (a source that breaks mid-partition)."""
        self.fields_seen: list[Sequence[str] | None] = []
        self.closed = False

    def check(self) -> None:
        pass

    def plan(self, table: str, partitions: int) -> list[Partition]:
        ids = [r["_id"] for r in self.tables[table]]
        count = max(1, min(partitions, len(ids)))
        bounds = [ids[len(ids) * i // count] for i in range(count)] if ids else [0]
        return [
            Partition(self.name, table, i, count, None if i == 0 else bounds[i],
                      None if i == count - 1 else bounds[i + 1])
            for i in range(count)
        ]

    def read(self, partition: Partition, *, resume_after: Json = None,
             fields: Sequence[str] | None = None) -> Iterator[Batch]:
        self.fields_seen.append(fields)
        rows = [r for r in self.tables[partition.table]
                if (partition.lower is None or r["_id"] >= partition.lower)
                and (partition.upper is None or r["_id"] < partition.upper)
                and (resume_after is None or r["_id"] > resume_after)]
        for n, start in enumerate(range(0, len(rows), self.batch_size)):
            if self.fail_after is not None and n >= self.fail_after:
                raise ConnectionError("source connection reset")
            chunk = rows[start:start + self.batch_size]
            records = [dict(r) for r in chunk if not r.get("corrupt")]
            rejects = [Reject(partition.table, f"_id={r['_id']}", "corrupt document", stage="extract")
                       for r in chunk if r.get("corrupt")]
            yield Batch(records, chunk[-1]["_id"], rejects)

    def key_text(self, table: str, record: dict) -> str:
        return f"_id={record['_id']}"

    def sample(self, table: str, n: int) -> list[dict]:
        return [dict(r) for r in self.tables[table][:n]]

    def count(self, table: str) -> int | None:
        return len(self.tables[table])

    def close(self) -> None:
        self.closed = True


class DictSink:
    """Rows kept by key per table; refuses rows whose `value` is negative (a load reject)."""

    replaces_children = False

    def __init__(self, name: str, specs: Sequence[TableSpec]) -> None:
        self.name = name
        self.specs = {s.table: s for s in specs}
        self.tables: dict[str, dict[tuple, dict]] = {s.table: {} for s in specs}
        self.writes = 0
        self._lock = threading.Lock()

    def prepare(self, tables: Sequence[TableSpec], *, empty_at_start: frozenset[str] = frozenset()
                ) -> frozenset[str]:
        for spec in tables:
            self.tables.setdefault(spec.table, {})
        return frozenset()

    def write(self, batch: Mapping[str, TableRows]) -> WriteResult:
        result = WriteResult()
        with self._lock:
            self.writes += 1
            for table, rows in batch.items():
                key_columns = self.specs[table].key
                for row, source_key in zip(rows.rows, rows.source_keys, strict=True):
                    if row.get("value", 0) < 0:
                        result.rejects.append(Reject(table, source_key, "negative value refused",
                                                     stage="load", target=table))
                        continue
                    self.tables[table][tuple(row[k] for k in key_columns)] = dict(row)
                    result.loaded[table] = result.loaded.get(table, 0) + 1
        return result

    def delete(self, table: TableSpec, keys: Sequence[dict]) -> int:
        with self._lock:
            rows = self.tables[table.table]
            found = [key for key in (tuple(k[c] for c in table.key) for k in keys) if key in rows]
            for key in found:
                del rows[key]
        return len(found)

    def read_back(self, table: TableSpec, *, segments: int = 4, consistent: bool = False) -> Iterator[dict]:
        yield from list(self.tables[table.table].values())

    def stored_form(self, table: TableSpec) -> None:
        return None  # rows are kept as they are written

    def close(self) -> None:
        pass


@dataclass
class Mapped:
    rows: dict[tuple[str, str], TableRows] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)
    filtered: int = 0


class ItemsMapping:
    """Maps `{"_id", "value", "items": [..]}` to `target.parents` and one `target.children` row per item.

    Records with `skip` are filtered; records whose value is not an int are rejected.
    """

    def __init__(self, target: str = "mem") -> None:
        from etl.records import Column

        self.tables = [
            TableSpec(target, "parents", ("id",), (Column("id", "int"), Column("value", "int"))),
            TableSpec(target, "children", ("id", "n"), (Column("id", "int"), Column("n", "int")),
                      parent="parents", parent_key=("id",)),
        ]
        self.target = target
        self.fields = ["_id", "value", "items", "skip"]
        self.reads: list = []
        """No source paths to note (tests of what the worker notes use a compiled mapping)."""

    def apply(self, records: list[dict], key_text, *, source_table: str = "") -> Mapped:
        out = Mapped()
        parents = out.rows.setdefault((self.target, "parents"), TableRows())
        children = out.rows.setdefault((self.target, "children"), TableRows())
        for record in records:
            key = key_text(record)
            if record.get("skip"):
                out.filtered += 1
                continue
            if not isinstance(record.get("value"), int):
                out.rejects.append(Reject("items", key, "value is not an integer", field_path="value",
                                          value_type=type(record.get("value")).__name__))
                continue
            parents.rows.append({"id": record["_id"], "value": record["value"]})
            parents.source_keys.append(key)
            for n, _ in enumerate(record.get("items", [])):
                children.rows.append({"id": record["_id"], "n": n})
                children.source_keys.append(key)
        return out


class MemoryDeadLetters:
    def __init__(self) -> None:
        self.written: list[Reject] = []
        self.flushed = 0
        self._lock = threading.Lock()

    def add(self, rejects: Sequence[Reject]) -> int:
        with self._lock:
            self.written.extend(rejects)
        return len(rejects)

    def flush(self) -> None:
        self.flushed = len(self.written)


def records(n: int, *, start: int = 1, items: int = 2) -> list[dict]:
    return [{"_id": i, "value": i * 10, "items": list(range(items))} for i in range(start, start + n)]
