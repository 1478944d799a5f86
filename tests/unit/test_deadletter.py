"""Dead letters: one JSON line per reject, values kept exactly, safe across threads, durable on flush."""

import datetime as dt
import json
import threading
from decimal import Decimal

from etl.records import Reject
from etl.sinks.deadletter import DeadLetterStore, read_dead_letters


def reject(n, **record):
    return Reject(table="customers", source_key=f"_id={n}", reason="total: NaN", stage="load",
                  field_path="total", value_type="Decimal", record=record, target="customers")


def test_entries_round_trip_with_exact_values(tmp_path):
    path = tmp_path / "dl" / "dead.jsonl"
    store = DeadLetterStore(path, job="demo")
    store.add([reject(1, total=Decimal("NaN"), price=Decimal("0.990"), photo=b"\x01\x02",
                      at=dt.datetime(2009, 1, 1, tzinfo=dt.UTC), email_hmac="ab12")])
    store.close()
    [entry] = list(read_dead_letters(path))
    assert entry.pop("recorded_at")
    assert entry == {
        "job": "demo", "table": "customers", "target": "customers", "source_key": "_id=1", "stage": "load",
        "reason": "total: NaN", "field_path": "total", "value_type": "Decimal",
        "record": {"total": "NaN", "price": "0.990", "photo": "AQI=", "at": "2009-01-01T00:00:00+00:00",
                   "email_hmac": "ab12"},
    }


def test_concurrent_writers_never_interleave_lines(tmp_path):
    path = tmp_path / "dead.jsonl"
    store = DeadLetterStore(path, job="demo")

    def writer(base):
        for n in range(200):
            store.add([reject(base + n, text="x" * 500)])

    threads = [threading.Thread(target=writer, args=(i * 1000,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.flush()
    keys = [entry["source_key"] for entry in read_dead_letters(path)]  # every line parses
    assert len(keys) == 800 and len(set(keys)) == 800
    assert store.count == 800
    store.close()


def test_flush_makes_entries_visible_before_close(tmp_path):
    path = tmp_path / "dead.jsonl"
    store = DeadLetterStore(path, job="demo")
    store.add([reject(1), reject(2)])
    store.flush()
    assert [json.loads(line)["source_key"] for line in path.read_text().splitlines()] == ["_id=1", "_id=2"]
    store.close()
