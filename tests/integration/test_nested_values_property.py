"""Property: any MongoDB document, through a real job into PostgreSQL and DynamoDB Local, is loaded and
validates equal, or is rejected with the path of the value at fault; nothing crashes and every record
is accounted for.

Documents are generated over every BSON type, nested several levels deep, with the extremes
(Decimal128 NaN/Infinity, 1E+6144, 1E-6176 and 34 digits; dates outside Python's years 1-9999; every
binary subtype; NUL in strings; empty and dotted keys; int64 limits; subnormal and huge doubles),
written as a mongodump `.bson` file and moved by a job whose mapping keeps a sub-document whole
(`doc`) and every other field in a DMS-style `_doc` map. An oracle, written from the documented rules
(docs/types.md, docs/sinks.md), says for each document where it must end:

- a date outside years 1-9999 anywhere: rejected at extract, at that date's path;
- else NaN or ±Infinity (double or Decimal128) anywhere: rejected by the mapping's json cast, at
  that number's path;
- else PostgreSQL refuses it when a string holds U+0000, DynamoDB when a number lies outside its
  range (1E-130 .. 9.99E+125) or a map key is empty; each at the path of such a value;
- otherwise loaded in both, and validation finds it equal.

Examples are derandomised, so every run checks the same documents.
"""

from __future__ import annotations

import itertools
import math
import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from bson import Binary, Code, DBRef, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from bson.datetime_ms import DatetimeMS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.dump_jobs import dump_job

pytestmark = pytest.mark.integration

MIN_DATE_MS = -62135596800000  # 0001-01-01T00:00:00Z
MAX_DATE_MS = 253402300799999  # 9999-12-31T23:59:59.999Z


def sometimes(rare: st.SearchStrategy, common: st.SearchStrategy, one_in: int) -> st.SearchStrategy:
    """`rare` one draw in `one_in`, else `common`: extremes in most documents would reject nearly all."""
    return st.integers(0, one_in - 1).flatmap(lambda n: rare if n == 0 else common)


CHARACTERS = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))
KEYS = sometimes(st.just(""), st.one_of(  # BSON keys hold no NUL
    st.sampled_from(["a", "b", "a.b", "$x", "x y", "é", "id", "doc"]),
    st.text(CHARACTERS, min_size=1, max_size=4)),
    one_in=80)
TEXT = st.text(CHARACTERS, max_size=6)
NUL_TEXT = st.sampled_from(["\x00", "a\x00b", "\x00\x00"])
EXTREME_DECIMALS = st.sampled_from([
    "NaN", "-NaN", "Infinity", "-Infinity", "1E+6144", "-1E+6144", "1E-6176", "0E-6176",
    "9.999999999999999999999999999999999E+6144", "1E+126", "1E-131"]).map(Decimal128)
DECIMALS = st.one_of(
    st.sampled_from(["-0", "1234567890123456789012345678901234", "-0.000", "1.10", "1E+125", "1E-130",
                     "-9.999999999999999999999999999999999E+125"]),
    st.builds(lambda digits, exponent: str(Decimal(digits).scaleb(exponent)),
              st.integers(-(10**34) + 1, 10**34 - 1), st.integers(-90, 90)),
).map(Decimal128)
DATES = st.one_of(
    st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999000), timezones=st.just(UTC)).map(
        lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000)),  # BSON keeps ms
    st.sampled_from([MIN_DATE_MS, MAX_DATE_MS, 0, -1]).map(lambda ms: DatetimeMS(ms).as_datetime()),
)
OUT_OF_RANGE_DATES = st.sampled_from([MIN_DATE_MS - 1, MAX_DATE_MS + 1, -(2**62), 2**62]).map(DatetimeMS)
SUBTYPES = [0, 1, 2, 3, 4, 5, 6, 7, 8, 0x80, 0xFF]
BINARIES = st.sampled_from(SUBTYPES).flatmap(
    lambda subtype: st.binary(min_size=16, max_size=16) if subtype in (3, 4) else st.binary(max_size=12)
).flatmap(lambda data: st.sampled_from([s for s in SUBTYPES if (len(data) == 16) or s not in (3, 4)]).map(
    lambda subtype: Binary(data, subtype)))
COMMON_LEAVES = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(2**31), 2**31 - 1),
    st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([-(2**63), 2**63 - 1])).map(Int64),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e100, max_value=1e100),
    st.sampled_from([-0.0, 0.0, 1e-100]),
    TEXT, DECIMALS, DATES, BINARIES,
    st.builds(ObjectId, st.binary(min_size=12, max_size=12)),
    st.builds(Regex, st.sampled_from(["^a.c$", "", "x+"]), st.sampled_from([0, 2, 10])),
    st.sampled_from([Code("function () {}"), Code("x", {"a": 1}), MinKey(), MaxKey(), DBRef("c", 1, "db"),
                     Timestamp(0, 0), Timestamp(2**32 - 1, 2**32 - 1)]),
)
RARE_LEAVES = st.one_of(
    NUL_TEXT, EXTREME_DECIMALS, OUT_OF_RANGE_DATES,
    st.sampled_from([math.nan, math.inf, -math.inf, 5e-324, 1.7976931348623157e308, 1e-131, 1e126]),
)
LEAVES = sometimes(RARE_LEAVES, COMMON_LEAVES, one_in=40)

VALUES = st.recursive(LEAVES, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=4)), max_leaves=12)
DOCUMENT_BODIES = st.tuples(
    st.fixed_dictionaries({"doc": st.dictionaries(KEYS, VALUES, max_size=4)}, optional={
        "name": sometimes(NUL_TEXT, TEXT, one_in=20), "other": VALUES, "a.b": VALUES, "$top": VALUES}),
    sometimes(VALUES.map(lambda value: {"": value}), st.just({}), one_in=15),  # a top-level empty key
).map(lambda parts: {**parts[0], **parts[1]})


# ---------------------------------------------------------------- the oracle

def _walk(value, path: str):
    """("value", path, value) of `value` and every value inside it; ("key", path, name) of every key."""
    yield "value", path, value
    if isinstance(value, dict):
        for name, member in value.items():
            key = name or '""'  # an empty key is written "" in field paths
            child = f"{path}.{key}" if path else key
            yield "key", child, name
            yield from _walk(member, child)
    elif isinstance(value, list):
        for index, member in enumerate(value):
            yield from _walk(member, f"{path}[{index}]")


def _columns(document: dict) -> list[tuple[str, object]]:
    """(path prefix, value) as the mapping lays the document out: `doc`, `name`, and `_doc` for the rest."""
    rest = {name: value for name, value in document.items() if name not in ("_id", "name", "doc")}
    return [("doc", document["doc"]), ("name", document.get("name")), ("_doc", rest)]


def _not_finite(value) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    return isinstance(value, Decimal128) and not value.to_decimal().is_finite()


def _beyond_dynamodb(value) -> bool:
    if isinstance(value, Decimal128):
        value = value.to_decimal()
    elif isinstance(value, float):
        value = Decimal(repr(value))
    else:
        return False
    return value != 0 and not -130 <= value.adjusted() <= 125


def _paths(document: dict, prefix_of, predicate) -> set[str]:
    return {path for prefix, value in prefix_of(document) for kind, path, item in _walk(value, prefix)
            if predicate((kind, item) if kind == "key" else item)}


def expected(document: dict) -> tuple[str, dict[str, set[str]]]:
    """("extract" | "map" | "load" | "loaded", {target: paths of the values a reject may name})."""
    in_document = lambda d: [("", {k: v for k, v in d.items() if k != "_id"})]  # noqa: E731
    dates = _paths(document, in_document, lambda v: isinstance(v, DatetimeMS))
    if dates:
        return "extract", {"": dates}
    nan = _paths(document, _columns, _not_finite)
    if nan:
        return "map", {"": nan}
    refused = {
        "pg": _paths(document, _columns, lambda v: isinstance(v, str) and "\x00" in v),
        "dynamo": _paths(document, _columns, lambda v: _beyond_dynamodb(v) or v == ("key", "")),
    }
    refused = {target: paths for target, paths in refused.items() if paths}
    return ("load" if refused else "loaded"), refused


# ---------------------------------------------------------------- the property

_runs = itertools.count()


def check(bodies: list[dict], pg_dsn: str, dynamo_prefix: str) -> None:
    documents = [{"_id": index, **body} for index, body in enumerate(bodies, 1)]
    with tempfile.TemporaryDirectory() as folder:
        job = dump_job(Path(folder), documents, pg_dsn=pg_dsn, dynamo_prefix=dynamo_prefix,
                       name=f"prop{next(_runs)}")
        outcome = {document["_id"]: expected(document) for document in documents}
        report = job.run()
        (table,) = report.tables
        loaded = [key for key, (stage, _) in outcome.items() if stage == "loaded"]
        assert (table.extracted, table.loaded, table.rejected, table.filtered) == (
            len(documents), len(loaded), len(documents) - len(loaded), 0)

        targets = {f"pg.{job.pg_table}": "pg", f"dynamo.{job.dynamo_table}": "dynamo"}
        refused: dict[str, set[int]] = {"pg": set(), "dynamo": set()}
        for letter in job.dead_letters():
            key = int(letter["source_key"].removeprefix("_id="))
            stage, paths = outcome[key]
            target = targets.get(letter["target"], "") if letter["stage"] == "load" else ""
            assert (letter["stage"], letter["field_path"] in paths.get(target, ())) == (
                "load" if stage == "load" else stage, True), (letter, outcome[key])
            if target:
                refused[target].add(key)
        for target in ("pg", "dynamo"):
            assert refused[target] == {key for key, (stage, paths) in outcome.items()
                                       if stage == "load" and target in paths}
        mapped = {key for key, (stage, _) in outcome.items() if stage in ("load", "loaded")}

        # a record a target refused is a reject on both sides of its validation, never a missing row
        unmapped = sum(1 for stage, _ in outcome.values() if stage in ("extract", "map"))
        validation = {t.target: t for t in job.validate().tables}
        for target in ("pg", "dynamo"):
            result = validation[target]
            assert (result.rows_source, result.rows_target, result.rejected) == (
                len(mapped) - len(refused[target]), len(mapped) - len(refused[target]),
                len(refused[target]) + unmapped)
            assert (result.missing, result.extra, result.changed, result.duplicates,
                    result.unresolved_buckets) == (0, 0, 0, 0, 0)
            assert result.differences == []


def examples(count: int):
    """Derandomised (every run checks the same documents), with no deadline: each example is a job."""
    return settings(max_examples=count, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


@examples(30)
@given(bodies=st.lists(DOCUMENT_BODIES, min_size=3, max_size=30))
def test_every_document_is_loaded_and_equal_or_rejected_at_its_path(pg_database, dynamodb_table_prefix,
                                                                    bodies):
    check(bodies, pg_database, dynamodb_table_prefix)


@pytest.mark.slow
@examples(200)
@given(bodies=st.lists(DOCUMENT_BODIES, min_size=3, max_size=60))
def test_the_same_over_more_and_larger_examples(pg_database, dynamodb_table_prefix, bodies):
    check(bodies, pg_database, dynamodb_table_prefix)
