"""Result objects: DataFrames, JSON and HTML for notebooks and reports."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from etl.checksum import JobValidation, validate_table
from etl.errors import ValidationDifferences
from etl.records import Column, TableSpec

SPEC = TableSpec(
    "ddb",
    "patients",
    ("pk",),
    (Column("pk", "string"), Column("name_hash", "string", pii="hmac"), Column("n", "int")),
)


def job() -> JobValidation:
    source = [{"pk": f"P#{i}", "name_hash": f"hm{i:04d}", "n": i} for i in range(40)]
    target = [dict(row) for row in source]
    target[5]["name_hash"] = "hmXXXX"
    del target[9]
    changed = validate_table(SPEC, lambda: source, lambda: target)
    equal = validate_table(
        TableSpec("ddb", "visits", SPEC.key, SPEC.columns), lambda: source, lambda: reversed(source)
    )
    return JobValidation([changed, equal])


def test_summary_has_one_row_per_table() -> None:
    summary = job().summary()
    assert summary[
        ["table", "ok", "rows_source", "rows_target", "missing", "extra", "changed"]
    ].values.tolist() == [
        ["patients", False, 40, 39, 1, 0, 1],
        ["visits", True, 40, 40, 0, 0, 0],
    ]


def test_differences_show_pii_fields_as_stored() -> None:
    frame = job().differences("patients").sort_values("kind")
    assert frame[["key", "kind", "field", "source_value", "target_value"]].values.tolist() == [
        ["pk='P#5'", "changed", "name_hash", "hm0005", "hmXXXX"],
        ["pk='P#9'", "missing", None, None, None],
    ]


def test_json_and_html() -> None:
    result = job()
    data = json.loads(result.to_json())
    assert data["ok"] is False
    assert [t["table"] for t in data["tables"]] == ["patients", "visits"]
    changed = [d for d in data["tables"][0]["differences"] if d["kind"] == "changed"]
    assert changed == [
        {
            "kind": "changed",
            "key": {"pk": "P#5"},
            "bucket": changed[0]["bucket"],
            "fields": [{"field": "name_hash", "source_value": "hm0005", "target_value": "hmXXXX"}],
        }
    ]
    page = result._repr_html_()
    assert "differences found" in page and "#cf222e" in page and "FAIL" in page and "pass" in page
    assert len(result.to_pandas()) == 2


def test_json_renders_every_canonical_type() -> None:
    from etl.checksum.results import json_value

    assert json_value(Decimal("1.50")) == "1.50"
    assert json_value(b"\x00\x01") == "base64:AAE="
    assert json_value(float("nan")) == "nan"


def test_raise_if_different_names_the_table_and_keys() -> None:
    import pytest

    from etl.errors import ValidationDifferences

    with pytest.raises(ValidationDifferences) as error:
        job().raise_if_different()
    assert error.value.exit_code == 1
    assert (
        "ddb.patients: 1 missing, 0 extra, 1 changed, 0 duplicate keys, 0 unresolved buckets"
        in error.value.message
    )
    assert "pk='P#5'" in error.value.message and "pk='P#9'" in error.value.message
    assert "visits" not in error.value.message
    JobValidation([job().tables[1]]).raise_if_different()


def test_a_source_count_holds_the_reader_and_the_load_to_what_the_source_says():
    from etl.checksum import SourceCount

    assert SourceCount("mongo.a", 10, 10, 10).ok and SourceCount("mongo.a", 10, 10, 10).problem() is None
    short_reader = SourceCount("mongo.a", 10, 8, 8)
    assert not short_reader.ok
    assert short_reader.problem() == ("source mongo.a holds 10 records by its own count, but validation "
                                      "read 8 and the load extracted 8")
    assert SourceCount("dump.a", None, 7, 6).problem() == (
        "source dump.a holds 7 records, but the load extracted 6")
    assert SourceCount("dump.a", None, 7, None).ok  # --validate-only of a table not fully loaded
    with pytest.raises(ValidationDifferences, match="source mongo.a holds 10 records by its own count"):
        JobValidation([], [short_reader]).raise_if_different()
