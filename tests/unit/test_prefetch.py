"""The read-ahead thread: one batch before its consumer starts, then up to its depth."""

from __future__ import annotations

import threading

import pytest

from etl.engine.control import RunControl
from etl.engine.prefetch import Prefetcher
from etl.records import Batch


@pytest.fixture
def waiting(monkeypatch) -> threading.Event:
    """Set when a reader starts waiting for its consumer."""
    event = threading.Event()
    wait = Prefetcher._consumer_started

    def noted_wait(self):
        event.set()
        return wait(self)

    monkeypatch.setattr(Prefetcher, "_consumer_started", noted_wait)
    return event


def test_a_reader_holds_one_batch_until_its_consumer_starts_then_reads_the_rest_in_order(waiting):
    pulled: list[int] = []

    def batches():
        for n in range(5):
            pulled.append(n)
            yield Batch([{"_id": n}], n)

    control = RunControl(max_in_flight=10)
    reader = Prefetcher(batches(), control, depth=3, name="p")
    assert waiting.wait(60), "the reader never waited for its consumer"
    assert pulled == [0]
    got = []
    for batch in reader:
        got.append(batch.resume_after)
        control.release_slot()
    assert got == [0, 1, 2, 3, 4] and pulled == [0, 1, 2, 3, 4]
    reader.abandon()


def test_an_abandoned_reader_waiting_for_its_consumer_gives_its_batch_back(waiting):
    control = RunControl(max_in_flight=1)
    ended = threading.Event()
    reader = Prefetcher(iter([Batch([{"_id": 1}], 1), Batch([{"_id": 2}], 2)]), control, depth=2, name="p",
                        on_end=ended.set)
    assert waiting.wait(60), "the reader never waited for its consumer"
    reader.abandon()
    assert ended.is_set()
    assert control.acquire_slot()  # the one slot of the budget, which the first batch held, is free again
