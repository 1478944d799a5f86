"""The loader's backend is killed mid-run (pg_terminate_backend): batches retry, every row lands once."""

import threading
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


KILLED_BATCHES = (5, 15, 25, 35)
"""Batches whose first attempt is killed mid-batch."""


def blocked_loader(admin: psycopg.Connection, writer: threading.Thread) -> int | None:
    """The loader's backend once it waits on the test's lock: inside its batch's transaction, the
    parents written, the children not. Waits for that state, never for a length of time; None when
    the writer ended without reaching it."""
    while writer.is_alive():
        row = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'etl_loader_under_test'"
            " AND wait_event_type = 'Lock'"
        ).fetchone()
        if row:
            return row[0]
        writer.join(0.01)  # returns at once when the writer ends
    return None


def test_terminated_backends_do_not_lose_or_double_rows(pg_database):
    """Four batches lose their connection in the middle of their transaction: each is held on a lock
    of the child table (so the kill lands after its parents were written, before its children), its
    backend terminated, the lock released. The retries write every row exactly once."""
    dsn = pg_database + " application_name=etl_loader_under_test"
    sink = postgres.open_sink(
        "pg", postgres.Config(type="postgres", dsn=dsn, create="if_missing", max_attempts=20, base_delay_ms=5)
    )
    sink.prepare([PARENTS, CHILDREN])
    loaded = {"accounts": 0, "entries": 0}
    failures: list[BaseException] = []

    def write(number: int) -> None:
        try:
            result = sink.write(make_batch(number))
            assert result.rejects == []
            for table, count in result.loaded.items():
                loaded[table] += count
        except BaseException as error:  # reported by the test thread
            failures.append(error)

    killed = 0
    with psycopg.connect(pg_database, autocommit=True) as admin:
        for number in range(BATCHES):
            if number not in KILLED_BATCHES:
                write(number)
                continue
            with psycopg.connect(pg_database) as holder:  # a transaction holding the child table
                holder.execute("LOCK TABLE entries IN ACCESS EXCLUSIVE MODE")
                writer = threading.Thread(target=write, args=(number,))
                writer.start()
                pid = blocked_loader(admin, writer)
                if pid is not None and admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]:
                    killed += 1
                holder.rollback()  # the retry (on a new connection) can now write the batch
            writer.join()
    assert failures == []
    assert killed == len(KILLED_BATCHES)  # the loader really lost its connection mid-batch four times
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
