"""The loader's backend is killed mid-run (pg_terminate_backend): batches retry, every row lands once."""

import threading
import time
from decimal import Decimal

import psycopg
import pytest

from etl.records import Column, TableRows, TableSpec
from etl.sinks import postgres

pytestmark = pytest.mark.integration

PARENTS = TableSpec(
    "pg", "accounts", ("account_id",), (Column("account_id", "int"), Column("name", "string"))
)
CHILDREN = TableSpec(
    "pg",
    "entries",
    ("entry_id",),
    (
        Column("entry_id", "int"),
        Column("account_id", "int"),
        Column("amount", "decimal(12,2)"),
    ),
    parent="accounts",
    parent_key=("account_id",),
)
BATCHES, PARENTS_PER_BATCH, CHILDREN_PER_PARENT = 40, 200, 5


def make_batch(number):
    parents, children = TableRows(), TableRows()
    for p in range(number * PARENTS_PER_BATCH, (number + 1) * PARENTS_PER_BATCH):
        parents.rows.append({"account_id": p, "name": f"account {p}"})
        parents.source_keys.append(str(p))
        for c in range(CHILDREN_PER_PARENT):
            children.rows.append(
                {"entry_id": p * 10 + c, "account_id": p, "amount": Decimal(c) + Decimal("0.25")}
            )
            children.source_keys.append(str(p))
    return {"accounts": parents, "entries": children}


def test_terminated_backends_do_not_lose_or_double_rows(pg_database):
    dsn = pg_database + " application_name=etl_loader_under_test"
    sink = postgres.open_sink(
        "pg", postgres.Config(type="postgres", dsn=dsn, create="if_missing", max_attempts=20, base_delay_ms=5)
    )
    sink.prepare([PARENTS, CHILDREN])
    loaded = {"accounts": 0, "entries": 0}
    failures: list[BaseException] = []

    def run():
        try:
            for number in range(BATCHES):
                result = sink.write(make_batch(number))
                assert result.rejects == []
                for table, count in result.loaded.items():
                    loaded[table] += count
        except BaseException as error:  # reported by the test thread
            failures.append(error)

    writer = threading.Thread(target=run)
    writer.start()
    killed = 0
    with psycopg.connect(pg_database, autocommit=True) as admin:
        while writer.is_alive() and killed < 4:
            row = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'etl_loader_under_test'"
                " AND state IN ('active', 'idle in transaction') LIMIT 1"
            ).fetchone()
            if row and admin.execute("SELECT pg_terminate_backend(%s)", row).fetchone()[0]:
                killed += 1
                time.sleep(0.1)  # let the sink reconnect and get into its next batch
    writer.join()
    assert failures == []
    assert killed == 4  # the loader really lost its connection mid-batch four times
    assert loaded == {
        "accounts": BATCHES * PARENTS_PER_BATCH,
        "entries": BATCHES * PARENTS_PER_BATCH * CHILDREN_PER_PARENT,
    }
    with psycopg.connect(pg_database) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT account_id) FROM accounts").fetchone() == (
            8000,
            8000,
        )
        count, distinct, total = conn.execute(
            "SELECT count(*), count(DISTINCT entry_id), sum(amount) FROM entries"
        ).fetchone()
    assert (count, distinct) == (40_000, 40_000)
    assert total == Decimal("90000.00")  # 8000 accounts x (0.25 + 1.25 + 2.25 + 3.25 + 4.25)
    sink.close()
