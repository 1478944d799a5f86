"""Plans: `--shard K/N` deals partitions deterministically and N shards cover a job exactly once;
`--only` picks tables; a stored plan is reused only for the same partition count."""

from __future__ import annotations

import pytest

from etl.engine.plan import Shard, TablePlan, assign_shard, plan_to_state, select_tables, stored_partitions
from etl.errors import JobFileError
from etl.records import Partition


def tables() -> list[TablePlan]:
    def parts(source, table, count):
        return tuple(Partition(source, table, i, count, i * 10, (i + 1) * 10) for i in range(count))

    return [TablePlan("mongo", "customers", "m1.yaml", 4, parts("mongo", "customers", 4)),
            TablePlan("mongo", "orders", "m2.yaml", 3, parts("mongo", "orders", 3)),
            TablePlan("pg", "dbo.items", "m3.yaml", 2, parts("pg", "dbo.items", 2))]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 9, 10])
def test_n_shards_cover_every_partition_exactly_once(count):
    all_ids = [p.id for t in tables() for p in t.partitions]
    owned = [assign_shard(tables(), Shard(k, count)) for k in range(count)]
    assert sorted(pid for shard in owned for pid in shard) == sorted(all_ids)
    assert sum(len(shard) for shard in owned) == 9
    assert max(len(s) for s in owned) - min(len(s) for s in owned) <= 1  # dealt evenly


def test_a_shard_is_deterministic_and_round_robin():
    assert sorted(assign_shard(tables(), Shard(1, 4))) == sorted(assign_shard(tables(), Shard(1, 4)))
    assert sorted(assign_shard(tables(), Shard(1, 4))) == ["mongo.customers#1/4", "mongo.orders#1/3"]
    assert assign_shard(tables(), None) == frozenset(p.id for t in tables() for p in t.partitions)


@pytest.mark.parametrize("text, expected",
                         [("0/1", Shard(0, 1)), ("3/4", Shard(3, 4)), (" 2 / 8 ", Shard(2, 8))])
def test_shard_parse(text, expected):
    assert Shard.parse(text) == expected


@pytest.mark.parametrize("text, message", [
    ("4/4", "--shard '4/4': K must be between 0 and N-1 and N at least 1"),
    ("1/0", "--shard '1/0': K must be between 0 and N-1 and N at least 1"),
    ("a/b", "--shard 'a/b' is not of the form K/N"),
    ("2", "--shard '2' is not of the form K/N"),
])
def test_bad_shards_are_job_errors(text, message):
    with pytest.raises(JobFileError) as caught:
        Shard.parse(text)
    assert caught.value.message == message
    assert caught.value.exit_code == 2


def test_only_selects_by_table_or_source_dot_table_and_names_the_choices():
    pairs = [("mongo", "customers"), ("mongo", "orders"), ("pg", "dbo.items")]
    assert select_tables(pairs, None) == pairs
    assert select_tables(pairs, ["orders", "pg.dbo.items"]) == [("mongo", "orders"), ("pg", "dbo.items")]
    with pytest.raises(JobFileError) as caught:
        select_tables(pairs, ["invoices"])
    assert caught.value.message == "--only 'invoices': no such source table in the job"
    assert caught.value.hint == "the job's tables are mongo.customers, mongo.orders, pg.dbo.items"
    with pytest.raises(JobFileError) as caught:
        select_tables(pairs, ["custmers"])
    assert caught.value.message == ("--only 'custmers': no such source table in the job; "
                                    "did you mean 'customers'?")
    assert caught.value.exit_code == 2


def test_a_stored_plan_is_reused_only_for_the_same_partition_count():
    state = plan_to_state(tables())
    again = stored_partitions(state, "mongo.orders", 3)
    assert again == tables()[1].partitions
    assert stored_partitions(state, "mongo.orders", 5) is None
    assert stored_partitions(state, "mongo.invoices", 3) is None
    assert stored_partitions(None, "mongo.orders", 3) is None
    # other tables' entries survive when one table is re-planned
    replanned = TablePlan("mongo", "orders", "m2.yaml", 1, (Partition("mongo", "orders", 0, 1),))
    merged = plan_to_state([replanned], state)
    assert stored_partitions(merged, "mongo.orders", 1) == replanned.partitions
    assert stored_partitions(merged, "mongo.customers", 4) == tables()[0].partitions
