"""Driver rows -> record dicts by the generated maker: same dicts as dict(zip(names, row))."""

from __future__ import annotations

from etl.sources.rowrecords import record_maker


def test_record_is_the_row_by_name_whatever_the_names_hold():
    names = ["id", 'we"ird\'; import os; os.system("x") #', "{k0}", "row[0]", "k1", ""]
    row = (7, "a", None, 2.5, b"\x00", [1])
    assert record_maker(names)(row) == dict(zip(names, row, strict=True))
    assert list(record_maker(names)(row)) == names


def test_extra_row_values_after_the_names_are_left_out():
    # Converted key columns are selected a second time, raw, after the record's columns.
    assert record_maker(["a", "b"])((1, 2, 3)) == {"a": 1, "b": 2}


def test_each_maker_keeps_its_own_names_and_returns_a_new_dict():
    first, second = record_maker(["a", "b"]), record_maker(["x", "y"])
    assert first((1, 2)) == {"a": 1, "b": 2} and second((1, 2)) == {"x": 1, "y": 2}
    assert first((1, 2)) is not first((1, 2))


def test_wide_and_empty_select_lists():
    names = [f"c{i}" for i in range(3000)]
    record = record_maker(names)(range(3000))
    assert len(record) == 3000 and record["c0"] == 0 and record["c2999"] == 2999
    assert record_maker([])(()) == {}
