"""Row hashes and bucket numbers: 128-bit MD5 digests of canonical encodings.

MD5 is used as a checksum, not for security: it is 128 bits, it is in Python's standard library
and it is built into PostgreSQL (``md5(bytea)``), so a same-engine comparison can compute the
very same row hashes in SQL (see `postgres_sql.py`) instead of moving every row to Python.
"""

from __future__ import annotations

from collections.abc import Callable
from hashlib import md5

from etl.checksum.canonical import MISSING, encode, encoder_for
from etl.checksum.tolerances import Tolerances
from etl.records import TableSpec


class RowHasher:
    """Everything needed per row of one table, prepared once: column order and bound encoders.

    The row encoding is, for every column of the spec in order of name (code points),
    ``encode(name) + encode(value)``; a column absent from the row encodes as *missing*.
    The key encoding is ``encode(value, is_key=True)`` of the key columns in `spec.key` order.
    """

    def __init__(self, spec: TableSpec, tolerances: Tolerances | None = None) -> None:
        self.spec = spec
        self.tolerances = tolerances or Tolerances()
        key_columns = set(spec.key)
        self.columns: list[tuple[str, bytes, Callable[[object], bytes]]] = [
            (
                column.name,
                encode(column.name),
                encoder_for(column.type, self.tolerances, is_key=column.name in key_columns),
            )
            for column in sorted(spec.columns, key=lambda c: c.name)
        ]
        by_name = {column.name: column for column in spec.columns}
        self.key_encoders: list[tuple[str, Callable[[object], bytes]]] = [
            (name, encoder_for(by_name[name].type if name in by_name else "", self.tolerances, is_key=True))
            for name in spec.key
        ]
        names = [name for name, _code, _enc in self.columns]
        # Key columns are encoded alike in the row and the key encoding, so the row's codes are
        # reused for the key when every key column is a column of the spec.
        self._key_positions: list[int] | None = (
            [2 * names.index(name) + 1 for name in spec.key] if all(n in names for n in spec.key) else None
        )

    def encode_row(self, row: dict) -> bytes:
        get = row.get
        return b"".join([name_code + enc(get(name, MISSING)) for name, name_code, enc in self.columns])

    def bucket_and_hash(self, row: dict, buckets: int) -> tuple[int, int]:
        """`(bucket_of(key_encoding(row), buckets), row_hash(row))`, encoding each value once."""
        get = row.get
        parts: list[bytes] = []
        append = parts.append
        for name, name_code, enc in self.columns:
            append(name_code)
            append(enc(get(name, MISSING)))
        if self._key_positions is None:
            key = self.key_encoding(row)
        else:
            key = b"".join([parts[i] for i in self._key_positions])
        digest = md5(b"".join(parts)).digest()  # noqa: S324 - a checksum
        return bucket_of(key, buckets), int.from_bytes(digest, "big")

    def row_hash(self, row: dict) -> int:
        return int.from_bytes(md5(self.encode_row(row)).digest(), "big")  # noqa: S324 - a checksum

    def key_encoding(self, row: dict) -> bytes:
        get = row.get
        return b"".join(enc(get(name, MISSING)) for name, enc in self.key_encoders)

    def field_encodings(self, row: dict) -> dict[str, bytes]:
        """Each column's value encoding, for naming the fields that differ."""
        get = row.get
        return {name: enc(get(name, MISSING)) for name, _code, enc in self.columns}


def bucket_of(key_encoding: bytes, buckets: int) -> int:
    """A row's bucket: the first 4 bytes of MD5(key encoding), unsigned big-endian, mod `buckets`."""
    return int.from_bytes(md5(key_encoding).digest()[:4], "big") % buckets  # noqa: S324 - a checksum


def row_hash(row: dict, spec: TableSpec, tolerances: Tolerances | None = None) -> int:
    """The 128-bit hash of one row (prefer a `RowHasher` when hashing many rows of a table)."""
    return RowHasher(spec, tolerances).row_hash(row)
