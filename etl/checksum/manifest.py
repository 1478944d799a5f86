"""Manifests: a side's bucket checksums per table, the position they were taken at, saved to files.

A manifest lets one side be compared later without its rows: restore verification compares a
restored database with the manifest taken when the backup was. Each table is split into
key-range *segments* (boundaries given by the caller, e.g. the source's partition bounds), each
with its own bucket checksums. A *differential* manifest holds only the segments that changed
since its base; `Manifest.compose(base, differential)` replaces the base's segments with the
differential's, just as a restore applies a differential backup over its full backup.

Files: JSON (`.json`) or Parquet (`.parquet`; one row per table x segment x bucket, the rest
of the manifest as JSON in the schema metadata under ``etl.manifest``).

Segment boundaries are lists of key values that JSON can hold (str, int, float, bool) in the
order of `TableSpec.key`; a row is in segment i when ``boundaries[i-1] <= key < boundaries[i]``
(compared as Python tuples), the first segment being unbounded below and the last above.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from etl.checksum.buckets import BucketChecksums
from etl.checksum.results import Difference, TableValidation
from etl.checksum.rowhash import RowHasher
from etl.checksum.tolerances import Tolerances
from etl.errors import EtlError
from etl.files import open_private, write_private
from etl.inputs import load_json
from etl.records import TableSpec

ENCODING = "etl-canonical-1/md5"
"""Names the canonical encoding and digest; manifests of another encoding cannot be compared."""
_METADATA_KEY = b"etl.manifest"


class ManifestError(EtlError):
    """A manifest file is unreadable, or does not fit the table or manifest it is used with."""


class ManifestFileError(ManifestError):
    """A manifest's content breaks the format (a field missing or of the wrong type, a count that is
    not a whole number...): a bad input file, like a bad job file."""

    exit_code = 2


_SCALARS = (str, int, float, bool)
"""What a key value in segment bounds and boundaries may be."""


def _get(data: Any, name: str, kinds: type | tuple[type, ...], where: str) -> Any:
    """`data[name]`, checked to be one of `kinds` (an int is never a bool); the error names the field
    by its path in the manifest (`tables[0].segments[2].counts`)."""
    if not isinstance(data, dict):
        raise ManifestFileError(f"{where or 'the manifest'}: expected an object, found {_kind(data)}")
    place = f"{where}.{name}" if where else name
    if name not in data:
        raise ManifestFileError(f"{place}: missing")
    value = data[name]
    allowed = kinds if isinstance(kinds, tuple) else (kinds,)
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        names = " or ".join("null" if k is type(None) else k.__name__ for k in allowed)
        raise ManifestFileError(f"{place}: expected {names}, found {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _count(value: Any, place: str, *, least: int = 0, most: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least or (most is not None
                                                                                 and value > most):
        bound = f"from {least} to {most}" if most is not None else f"at least {least}"
        shown = value if isinstance(value, int) and not isinstance(value, bool) else _kind(value)
        raise ManifestFileError(f"{place}: expected a whole number {bound}, found {shown}")
    return value


def _key_values(value: Any, place: str) -> list:
    if not isinstance(value, list) or not value or not all(isinstance(v, _SCALARS) for v in value):
        found = repr(value)[:60] if isinstance(value, list) else _kind(value)
        raise ManifestFileError(f"{place}: expected a non-empty list of key values (text, numbers or "
                                f"booleans), found {found}")
    return list(value)


def _checksums(data: dict, where: str) -> BucketChecksums:
    buckets = _count(_get(data, "buckets", int, where), f"{where}.buckets", least=1, most=1_000_000)
    counts = _get(data, "counts", list, where)
    sums = _get(data, "sums", list, where)
    for name, values in (("counts", counts), ("sums", sums)):
        if len(values) != buckets:
            raise ManifestFileError(f"{where}.{name}: expected {buckets} entries (one per bucket), found "
                                    f"{len(values)}")
    for index, count in enumerate(counts):
        _count(count, f"{where}.counts[{index}]")
    for index, total in enumerate(sums):
        if not isinstance(total, str) or not _HEX.fullmatch(total):
            raise ManifestFileError(f"{where}.sums[{index}]: expected 32 hexadecimal digits, found "
                                    f"{_kind(total) if not isinstance(total, str) else repr(total[:40])}")
    return BucketChecksums(buckets, list(counts), [int(s, 16) for s in sums])


_HEX = re.compile(r"[0-9a-f]{32}")


@dataclass
class Segment:
    """One key range of a table and its bucket checksums."""

    index: int
    lower: list | None
    """Inclusive lower bound (key values), None: unbounded."""
    upper: list | None
    """Exclusive upper bound, None: unbounded."""
    checksums: BucketChecksums

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "lower": self.lower, "upper": self.upper, **self.checksums.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "segment") -> Segment:
        """Raises ManifestFileError naming the field (under `where`) that breaks the format."""
        index = _count(_get(data, "index", int, where), f"{where}.index")
        lower, upper = (_get(data, name, (list, type(None)), where) for name in ("lower", "upper"))
        return cls(index, None if lower is None else _key_values(lower, f"{where}.lower"),
                   None if upper is None else _key_values(upper, f"{where}.upper"), _checksums(data, where))


def _segments_for(boundaries: Sequence[Sequence[Any]], buckets: int) -> list[Segment]:
    bounds: list[list | None] = [None, *[list(b) for b in boundaries], None]
    return [Segment(i, bounds[i], bounds[i + 1], BucketChecksums(buckets)) for i in range(len(bounds) - 1)]


@dataclass
class TableManifest:
    """Bucket checksums of one table, per key-range segment."""

    table: str
    target: str
    key: list[str]
    buckets: int
    tolerances: dict[str, Any]
    """`Tolerances.model_dump()` the checksums were taken with (they quantise the encoding)."""
    boundaries: list[list]
    segments: dict[int, Segment]
    """Segment index -> segment. A differential manifest holds only the changed segments."""

    @classmethod
    def build(
        cls,
        spec: TableSpec,
        rows: Iterable[dict],
        *,
        buckets: int = 256,
        tolerances: Tolerances | None = None,
        boundaries: Sequence[Sequence[Any]] = (),
        only_segments: Iterable[int] | None = None,
    ) -> TableManifest:
        """Checksum `rows` of `spec` per segment; with `only_segments`, keep just those (a
        differential manifest: rows of other segments are read but not kept)."""
        tolerances = tolerances or Tolerances()
        hasher = RowHasher(spec, tolerances)
        segments = _segments_for(boundaries, buckets)
        split_keys = [tuple(b) for b in boundaries]
        for row in rows:
            segment = segments[bisect.bisect_right(split_keys, tuple(row.get(k) for k in spec.key))]
            segment.checksums.add_hash(*hasher.bucket_and_hash(row, buckets))
        keep = set(range(len(segments))) if only_segments is None else set(only_segments)
        return cls(
            spec.table,
            spec.target,
            list(spec.key),
            buckets,
            tolerances.model_dump(),
            [list(b) for b in boundaries],
            {s.index: s for s in segments if s.index in keep},
        )

    @property
    def rows(self) -> int:
        return sum(s.checksums.rows for s in self.segments.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "target": self.target,
            "key": self.key,
            "buckets": self.buckets,
            "tolerances": self.tolerances,
            "boundaries": self.boundaries,
            "segments": [s.to_dict() for s in sorted(self.segments.values(), key=lambda s: s.index)],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "table") -> TableManifest:
        """Raises ManifestFileError naming the field (under `where`) that breaks the format: a field
        missing or of the wrong type, tolerances this version does not know, a segment whose buckets
        or bounds are not the table's."""
        name = _get(data, "table", str, where)
        target = _get(data, "target", str, where)
        key = _get(data, "key", list, where)
        if not key or not all(isinstance(column, str) for column in key):
            raise ManifestFileError(f"{where}.key: expected a non-empty list of column names")
        buckets = _count(_get(data, "buckets", int, where), f"{where}.buckets", least=1, most=1_000_000)
        tolerances = _get(data, "tolerances", dict, where)
        try:
            Tolerances.model_validate(tolerances)
        except ValidationError as error:
            problem = error.errors()[0]
            field = ".".join(str(part) for part in problem["loc"])
            raise ManifestFileError(f"{where}.tolerances.{field}: {problem['msg']}") from None
        boundaries = [_key_values(b, f"{where}.boundaries[{i}]")
                      for i, b in enumerate(_get(data, "boundaries", list, where))]
        bounds: list[list | None] = [None, *boundaries, None]
        segments: dict[int, Segment] = {}
        for number, item in enumerate(_get(data, "segments", list, where)):
            place = f"{where}.segments[{number}]"
            segment = Segment.from_dict(item, place)
            if segment.index >= len(bounds) - 1 or segment.index in segments:
                raise ManifestFileError(f"{place}.index: {segment.index} is not one of the table's "
                                        f"{len(bounds) - 1} segments, or is given twice")
            if (segment.lower, segment.upper) != (bounds[segment.index], bounds[segment.index + 1]):
                raise ManifestFileError(f"{place}: lower and upper are not the boundaries around segment "
                                        f"{segment.index}")
            if segment.checksums.buckets != buckets:
                raise ManifestFileError(f"{place}.buckets: {segment.checksums.buckets}, the table has "
                                        f"{buckets}")
            segments[segment.index] = segment
        return cls(name, target, list(key), buckets, dict(tolerances), boundaries, segments)


@dataclass
class Manifest:
    """Bucket checksums of every table of one side, and where in its history they were taken."""

    tables: dict[str, TableManifest] = field(default_factory=dict)
    """Table name -> its checksums."""
    position: dict[str, Any] = field(default_factory=dict)
    """Where the side was when checksummed, e.g. {"lsn": "0/3000060"}, {"scn": 1234567},
    {"resume_token": {...}}; opaque JSON to this module."""
    taken_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    kind: str = "full"
    """"full", or "differential" (only segments changed since `base`)."""
    base: str | None = None
    """For a differential: `taken_at` (or another id the caller chose) of its base manifest."""
    encoding: str = ENCODING

    def add(self, table: TableManifest) -> None:
        self.tables[table.table] = table

    @staticmethod
    def compose(base: Manifest, differential: Manifest) -> Manifest:
        """The manifest of `base` after `differential`: each differential segment replaces the
        base's segment with the same index. Position and time are the differential's.

        Raises ManifestError when the two do not fit (other encoding, buckets, tolerances or
        segment boundaries), because composing them would compare unlike checksums.
        """
        if differential.kind != "differential":
            raise ManifestError(
                f"manifest taken at {differential.taken_at} is {differential.kind}, not differential",
                hint="compose a full manifest with a differential one",
            )
        if base.encoding != differential.encoding:
            raise ManifestError(f"encodings differ: {base.encoding} and {differential.encoding}")
        tables = {name: replace(table, segments=dict(table.segments)) for name, table in base.tables.items()}
        for name, change in differential.tables.items():
            current = tables.get(name)
            if current is None:
                tables[name] = change
                continue
            for attribute in ("buckets", "tolerances", "boundaries", "key"):
                if getattr(current, attribute) != getattr(change, attribute):
                    raise ManifestError(
                        f"table {name}: {attribute} of the differential manifest taken at "
                        f"{differential.taken_at} differs from its base taken at {base.taken_at}",
                        hint="take the differential with the same segments, buckets and tolerances",
                    )
            current.segments.update(change.segments)
        return Manifest(
            tables, dict(differential.position), differential.taken_at, base.kind, base.base, base.encoding
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "encoding": self.encoding,
            "kind": self.kind,
            "base": self.base,
            "taken_at": self.taken_at,
            "position": self.position,
            "tables": [t.to_dict() for t in self.tables.values()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """The manifest `to_dict` gave; raises ManifestFileError (exit code 2) naming the first field
        that breaks the format, never a bare TypeError or KeyError."""
        encoding = _get(data, "encoding", str, "")
        if encoding != ENCODING:
            raise ManifestFileError(
                f"manifest encoding {encoding[:60]!r} is not {ENCODING!r}",
                hint="take the manifest again with this version",
            )
        kind = _get(data, "kind", str, "")
        if kind not in ("full", "differential"):
            raise ManifestFileError(f"kind: expected 'full' or 'differential', found {kind[:40]!r}")
        base = _get(data, "base", (str, type(None)), "")
        taken_at = _get(data, "taken_at", str, "")
        position = _get(data, "position", dict, "")
        tables: dict[str, TableManifest] = {}
        for number, item in enumerate(_get(data, "tables", list, "")):
            table = TableManifest.from_dict(item, f"tables[{number}]")
            if table.table in tables:
                raise ManifestFileError(f"tables[{number}].table: {table.table!r} is given twice")
            tables[table.table] = table
        return cls(tables, position, taken_at, kind, base, encoding)

    def save(self, path: str | Path) -> None:
        """Write as JSON or Parquet, chosen by the file suffix (.json / .parquet)."""
        path = Path(path)
        if path.suffix == ".parquet":
            self._save_parquet(path)
        else:
            write_private(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        path = Path(path)
        try:
            if path.suffix == ".parquet":
                return cls._load_parquet(path)
            data = load_json(path, "checksum manifest", error=ManifestError)
            if not isinstance(data, dict):
                raise ManifestError(f"{path}: not a readable manifest (a JSON {type(data).__name__}, "
                                    "not an object)")
            return cls.from_dict(data)
        except ManifestError as error:
            prefix = f"{path}:"
            if error.message.startswith(prefix) and "not a readable manifest" not in error.message:
                detail = error.message.removeprefix(prefix).lstrip()
                raise ManifestFileError(f"{path}: not a readable manifest ({detail})",
                                        hint=error.hint) from None
            if str(path) in error.message:
                raise ManifestFileError(error.message, hint=error.hint) from None
            raise ManifestFileError(f"{path}: {error.message}", hint=error.hint) from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError,
                ArithmeticError, NotImplementedError) as error:
            raise ManifestFileError(
                f"{path}: not a readable manifest ({type(error).__name__}: {error})"
            ) from None

    def _save_parquet(self, path: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns: dict[str, list] = {"table": [], "segment": [], "bucket": [], "count": [], "sum": []}
        header = self.to_dict()
        for table in header["tables"]:
            for segment in table["segments"]:
                for bucket, (count, total) in enumerate(
                    zip(segment.pop("counts"), segment.pop("sums"), strict=True)
                ):
                    columns["table"].append(table["table"])
                    columns["segment"].append(segment["index"])
                    columns["bucket"].append(bucket)
                    columns["count"].append(count)
                    columns["sum"].append(total)
        schema = pa.schema(
            [
                ("table", pa.string()),
                ("segment", pa.int32()),
                ("bucket", pa.int32()),
                ("count", pa.int64()),
                ("sum", pa.string()),
            ],
            metadata={_METADATA_KEY: json.dumps(header).encode()},
        )
        with open_private(path, "wb") as handle:
            pq.write_table(pa.table(columns, schema=schema), handle)

    @classmethod
    def _load_parquet(cls, path: Path) -> Manifest:
        import pyarrow.parquet as pq

        data = pq.read_table(path)
        header = json.loads(data.schema.metadata[_METADATA_KEY])
        segments = {(t["table"], s["index"]): s for t in header["tables"] for s in t["segments"]}
        for segment in segments.values():
            segment["counts"] = [0] * segment["buckets"]
            segment["sums"] = ["0"] * segment["buckets"]
        columns = data.to_pydict()
        for table, index, bucket, count, total in zip(
            columns["table"],
            columns["segment"],
            columns["bucket"],
            columns["count"],
            columns["sum"],
            strict=True,
        ):
            segment = segments[(table, index)]
            segment["counts"][bucket] = count
            segment["sums"][bucket] = total
        return cls.from_dict(header)


def compare_with_manifest(
    spec: TableSpec,
    expected: TableManifest,
    rows: Iterable[dict],
    *,
    max_differences: int = 100,
) -> TableValidation:
    """Compare a live side (`rows`) with the checksums a manifest recorded for it.

    There are no recorded rows, so differences are localised to (segment, bucket) with both
    row counts, as kind "bucket". Segments absent from `expected` (a differential manifest not
    composed with its base) are not compared. The tolerances are the manifest's own: checksums
    taken with other quantisations cannot be compared. Float ULP tolerance cannot be honoured
    without rows: a bucket differing only within ULPs is reported.
    """
    tolerances = Tolerances.model_validate(expected.tolerances)
    if list(spec.key) != expected.key:
        raise ManifestError(
            f"table {spec.table}: key {list(spec.key)} differs from the manifest's {expected.key}"
        )
    actual = TableManifest.build(
        spec, rows, buckets=expected.buckets, tolerances=tolerances, boundaries=expected.boundaries
    )
    result = TableValidation(
        table=spec.table,
        target=spec.target,
        rows_source=expected.rows,
        rows_target=sum(actual.segments[i].checksums.rows for i in expected.segments),
        buckets=expected.buckets,
        tolerances=tolerances.active(),
        max_differences=max_differences,
    )
    mismatched: set[int] = set()
    for index, segment in sorted(expected.segments.items()):
        live = actual.segments[index].checksums
        for bucket in segment.checksums.mismatched(live):
            mismatched.add(bucket)
            result.unresolved_buckets += 1
            if len(result.differences) < max_differences:
                result.differences.append(
                    Difference(
                        "bucket",
                        {},
                        bucket,
                        segment=str(index),
                        source_count=segment.checksums.counts[bucket],
                        target_count=live.counts[bucket],
                    )
                )
    result.mismatched_buckets = sorted(mismatched)
    return result
