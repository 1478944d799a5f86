"""Oplog replay: update formats, transactions, and idempotence."""

from __future__ import annotations

import copy

import pytest

from etl.errors import EtlError
from etl.sources.mongo_oplog import DELETED, OplogReplay, apply_update


@pytest.mark.parametrize(("update", "expected"), [
    ({"$set": {"a.b": 2, "list.1": "y"}}, {"_id": 1, "a": {"b": 2, "c": 3}, "list": ["x", "y", "z"]}),
    ({"$unset": {"a.c": True, "list.0": True}}, {"_id": 1, "a": {"b": 1}, "list": [None, "q", "z"]}),
    ({"$v": 2, "diff": {"i": {"new": 1}, "d": {"a": False}}}, {"_id": 1, "list": ["x", "q", "z"], "new": 1}),
    ({"$v": 2, "diff": {"sa": {"u": {"b": 9}}}}, {"_id": 1, "a": {"b": 9, "c": 3}, "list": ["x", "q", "z"]}),
    ({"$v": 2, "diff": {"slist": {"a": True, "l": 2, "u1": "w"}}},
     {"_id": 1, "a": {"b": 1, "c": 3}, "list": ["x", "w"]}),
    ({"$v": 2, "diff": {"slist": {"a": True, "u4": "e"}}},
     {"_id": 1, "a": {"b": 1, "c": 3}, "list": ["x", "q", "z", None, "e"]}),
])
def test_update_formats_apply_and_are_idempotent(update, expected):
    document = {"_id": 1, "a": {"b": 1, "c": 3}, "list": ["x", "q", "z"]}
    apply_update(document, update)
    assert document == expected
    again = copy.deepcopy(document)
    apply_update(again, update)
    assert again == expected


def test_operators_that_are_not_idempotent_are_refused():
    with pytest.raises(EtlError, match=r"oplog update uses \$inc, which cannot be replayed"):
        apply_update({"_id": 1, "n": 1}, {"$inc": {"n": 1}})


def test_transactions_are_unpacked_and_other_namespaces_ignored():
    replay = OplogReplay("db.c")
    replay.add_all([
        {"ts": 1, "op": "c", "ns": "admin.$cmd", "o": {"applyOps": [
            {"op": "i", "ns": "db.c", "o": {"_id": 1, "v": 1}},
            {"op": "i", "ns": "db.other", "o": {"_id": 2}},
            {"op": "d", "ns": "db.c", "o": {"_id": 3}},
        ]}},
        {"ts": 2, "op": "u", "ns": "db.c", "o2": {"_id": 1}, "o": {"$set": {"v": 2}}},
        {"ts": 3, "op": "u", "ns": "db.c", "o2": {"_id": 4}, "o": {"$set": {"v": 4}}},
        {"ts": 4, "op": "c", "ns": "other.$cmd", "o": {"drop": "c"}},
    ])
    assert replay.last_ts == 4 and replay.entries == 4
    assert [(h.key, h.settled) for h in replay.settled()] == [(1, {"_id": 1, "v": 2}), (3, DELETED)]
    assert replay.on_base({"_id": 1, "v": 0}) is None  # settled by the oplog
    assert replay.on_base({"_id": 4, "v": 0, "w": 1}) == {"_id": 4, "v": 4, "w": 1}  # pending update applied
    assert replay.on_base({"_id": 9}) == {"_id": 9}
