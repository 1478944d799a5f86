"""The merge of a child stream with its parent: equality only, and a stream out of step refused."""

from __future__ import annotations

import pytest

from etl.errors import EtlError
from etl.sources import sqlnested
from etl.sources.sql import ReadPlan, SqlColumn, TableMeta


def stream(rows: list[tuple]) -> sqlnested.Stream:
    """A child stream over `rows` of (parent key, own key) as its query would return them."""
    source = type("Source", (), {"engine": "PostgreSQL", "name": "pg"})()
    meta = TableMeta("artist.albums", "public", "album", (SqlColumn("album_id", "INT4"),), ("album_id",))
    plan = ReadPlan(names=["album_id"], expressions=['"album_id"', '"etl_a0"."etl_k0"'], converters=[None],
                    key_positions=[0], fixed_width=8, extra_positions=[1])
    made = sqlnested.Stream.__new__(sqlnested.Stream)
    made.level, made.plan, made.path_at, made._source = sqlnested.Level(meta, None), plan, [1], source
    made._rows = iter([(own, parent) for parent, own in rows])
    made._head = next(made._rows, None)
    return made


def test_children_are_taken_by_equal_parent_keys_and_parents_without_children_get_none():
    albums = stream([(1, 10), (1, 11), (3, 30)])
    assert [albums.take((key,)) for key in (1, 2, 3)] == [[(10, 1), (11, 1)], [], [(30, 3)]]
    albums.finish()


def test_a_number_keyed_row_behind_its_parent_stops_the_read_at_once():
    albums = stream([(1, 10), (2, 20), (4, 40)])  # parent 2 was not read: its album is stranded
    assert albums.take((1,)) == [(10, 1)]
    with pytest.raises(EtlError, match="'artist.albums': rows match no parent read before them"):
        albums.take((3,))


def test_text_keys_are_only_compared_for_equality_and_leftovers_refused_at_the_end():
    albums = stream([("a", 10), ("B", 20), ("zz", 30)])  # a collation's order, not Python's
    assert albums.take(("a",)) == [(10, "a")]
    assert albums.take(("B",)) == [(20, "B")]
    assert albums.take(("c",)) == []
    with pytest.raises(EtlError, match="not read at the same point in time as its parent"):
        albums.finish()
