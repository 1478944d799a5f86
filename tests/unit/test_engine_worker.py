"""The partition worker and the local executor, on in-memory sources and sinks and a real SQLite store."""

from __future__ import annotations

import threading

import pytest

from etl.engine.accounting import Counts
from etl.engine.control import RunControl
from etl.engine.local import LocalExecutor
from etl.engine.worker import PartitionWork, PartitionWorker
from etl.job import MaxRejects
from etl.state.sqlite import Config as SqliteConfig
from etl.state.sqlite import open_store
from tests.unit.engine_fakes import DictSink, ItemsMapping, ListSource, MemoryDeadLetters, records

JOB = "unit-job"


@pytest.fixture
def store(tmp_path):
    store = open_store(SqliteConfig(), base_dir=tmp_path)
    yield store
    store.close()


def make_worker(source, sink, store, control, dead_letters=None, mapping=None):
    return PartitionWorker(job=JOB, source=source, mapping=mapping or ItemsMapping(), sinks={"mem": sink},
                           dead_letters=dead_letters or MemoryDeadLetters(), store=store, control=control)


def run_all(source, sink, store, control, *, parallelism=2, table="items", partitions=3, dead_letters=None):
    works = [PartitionWork(p) for p in source.plan(table, partitions)]
    mapping = ItemsMapping()
    dead_letters = dead_letters or MemoryDeadLetters()
    return LocalExecutor(parallelism).run(
        works, lambda w, turn: make_worker(source, sink, store, control, dead_letters, mapping).run(w, turn),
        control)


def test_every_record_is_written_once_and_every_partition_checkpointed_done(store):
    source = ListSource("src", {"items": records(95)}, batch_size=10)
    sink = DictSink("mem", ItemsMapping().tables)
    control = RunControl(max_in_flight=4)
    execution = run_all(source, sink, store, control)

    assert execution.errors == []
    assert len(sink.tables["parents"]) == 95
    assert len(sink.tables["children"]) == 190
    checkpoints = store.checkpoints(JOB)
    assert sorted(checkpoints) == ["src.items#0/3", "src.items#1/3", "src.items#2/3"]
    assert all(c.done for c in checkpoints.values())
    total = Counts()
    for checkpoint in checkpoints.values():
        total.add(Counts.from_checkpoint(checkpoint.counts))
    assert (total.extracted, total.loaded, total.rejected, total.filtered) == (95, 95, 0, 0)
    assert total.rows == {"mem.parents": 95, "mem.children": 190}
    assert control.totals.extracted == 95
    assert source.fields_seen == [["_id", "value", "items", "skip"]] * 3  # projection pushdown


def test_rejects_filters_and_load_rejects_balance_and_reach_the_dead_letters(store):
    data = records(30)
    data[2]["value"] = "abc"          # _id 3: map reject
    data[4]["skip"] = True            # _id 5: filtered
    data[6]["value"] = -1             # _id 7: load reject (its children rows are written)
    data[8]["corrupt"] = True         # _id 9: extract reject
    source = ListSource("src", {"items": data}, batch_size=7)
    sink = DictSink("mem", ItemsMapping().tables)
    dead = MemoryDeadLetters()
    control = RunControl(max_in_flight=2)
    outcome = make_worker(source, sink, store, control, dead).run(PartitionWork(source.plan("items", 1)[0]))

    assert (outcome.counts.extracted, outcome.counts.loaded, outcome.counts.rejected,
            outcome.counts.filtered) == (30, 26, 3, 1)
    assert outcome.counts.balanced
    assert sorted((r.source_key, r.stage, r.reason) for r in dead.written) == [
        ("_id=3", "map", "value is not an integer"),
        ("_id=7", "load", "negative value refused"),
        ("_id=9", "extract", "corrupt document"),
    ]
    assert dead.flushed == 3
    assert outcome.counts.reasons == {"value is not an integer": 1, "negative value refused": 1,
                                      "corrupt document": 1}


def test_resume_continues_after_the_checkpoint_and_counts_stay_cumulative(store):
    source = ListSource("src", {"items": records(50)}, batch_size=10, fail_after=3)
    sink = DictSink("mem", ItemsMapping().tables)
    partition = source.plan("items", 1)[0]
    with pytest.raises(ConnectionError):
        make_worker(source, sink, store, RunControl(max_in_flight=2)).run(PartitionWork(partition))
    checkpoint = store.checkpoints(JOB)[partition.id]
    assert (checkpoint.resume_after, checkpoint.done, checkpoint.counts["extracted"]) == (30, False, 30)

    source.fail_after = None
    writes_before = sink.writes
    work = PartitionWork(partition, checkpoint.resume_after, Counts.from_checkpoint(checkpoint.counts))
    outcome = make_worker(source, sink, store, RunControl(max_in_flight=2)).run(work)
    assert sink.writes - writes_before == 2  # only the 20 records after the checkpoint were read again
    assert outcome.run.extracted == 20
    assert (outcome.counts.extracted, outcome.counts.loaded) == (50, 50)
    assert store.checkpoints(JOB)[partition.id].done is True
    assert len(sink.tables["parents"]) == 50


def test_a_stop_request_finishes_the_batches_in_flight_and_leaves_the_partition_resumable(store):
    source = ListSource("src", {"items": records(100)}, batch_size=10)
    sink = DictSink("mem", ItemsMapping().tables)
    control = RunControl(max_in_flight=2)
    original = control.committed

    def stop_after_third(table, delta):
        original(table, delta)
        if control.totals.extracted >= 30:
            control.stop("signal", "stopped by SIGTERM")

    control.committed = stop_after_third
    partition = source.plan("items", 1)[0]
    outcome = make_worker(source, sink, store, control).run(PartitionWork(partition))

    checkpoint = store.checkpoints(JOB)[partition.id]
    assert outcome.done is False and checkpoint.done is False
    # batches already read ahead (at most the 2-batch budget) are still committed, never lost
    assert 30 <= outcome.counts.extracted <= 50
    assert checkpoint.counts["extracted"] == outcome.counts.extracted
    assert checkpoint.resume_after == outcome.counts.extracted
    assert len(sink.tables["parents"]) == outcome.counts.extracted


def test_max_rejects_stops_the_run(store):
    data = records(100)
    for record in data[:20]:
        record["value"] = "bad"
    source = ListSource("src", {"items": data}, batch_size=10)
    sink = DictSink("mem", ItemsMapping().tables)
    control = RunControl(max_in_flight=2, reject_policy=MaxRejects.model_validate("5%"))
    make_worker(source, sink, store, control).run(PartitionWork(source.plan("items", 1)[0]))
    assert control.stop_reason is not None and control.stop_reason.kind == "max_rejects"
    assert control.stop_reason.message.startswith("too many rejected records: 10 of 10 extracted")


def test_limit_takes_at_most_n_records_per_table_and_saves_no_checkpoint(store):
    source = ListSource("src", {"items": records(100)}, batch_size=10)
    sink = DictSink("mem", ItemsMapping().tables)
    control = RunControl(max_in_flight=4, limit=25)
    works = [PartitionWork(p) for p in source.plan("items", 2)]
    mapping = ItemsMapping()
    dead = MemoryDeadLetters()
    execution = LocalExecutor(2).run(works, lambda w, turn: PartitionWorker(
        job=JOB, source=source, mapping=mapping, sinks={"mem": sink}, dead_letters=dead, store=None,
        control=control).run(w, turn), control)
    assert execution.errors == []
    assert len(sink.tables["parents"]) == 25
    assert sum(o.run.extracted for o in execution.outcomes) == 25
    assert store.checkpoints(JOB) == {}


def test_batches_in_flight_never_exceed_the_budget(store):
    source = ListSource("src", {"items": records(400)}, batch_size=5)
    sink = DictSink("mem", ItemsMapping().tables)
    control = RunControl(max_in_flight=3)
    held = {"now": 0, "max": 0}
    lock = threading.Lock()
    acquire, release = control.acquire_slot, control.release_slot

    def counting_acquire():
        ok = acquire()
        if ok:
            with lock:
                held["now"] += 1
                held["max"] = max(held["max"], held["now"])
        return ok

    def counting_release():
        with lock:
            held["now"] -= 1
        release()

    control.acquire_slot, control.release_slot = counting_acquire, counting_release
    execution = run_all(source, sink, store, control, parallelism=4, partitions=4)
    assert execution.errors == []
    assert len(sink.tables["parents"]) == 400
    assert held["max"] <= 3
    assert held["now"] == 0


def test_a_failing_partition_stops_the_others_and_is_reported(store):
    source = ListSource("src", {"items": records(200)}, batch_size=10, fail_after=2)
    sink = DictSink("mem", ItemsMapping().tables)
    control = RunControl(max_in_flight=4)
    execution = run_all(source, sink, store, control, parallelism=1, partitions=2)
    assert [pid for pid, _ in execution.errors] == ["src.items#0/2"]
    assert isinstance(execution.errors[0][1], ConnectionError)
    assert execution.skipped == ["src.items#1/2"]
    assert control.stop_reason.kind == "failure"


class SecondReadSignal(ListSource):
    """Sets `reading` when partition 1 has read its first batch."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reading = threading.Event()

    def read(self, partition, **kwargs):
        for batch in super().read(partition, **kwargs):
            if partition.index == 1:
                self.reading.set()
            yield batch


def test_a_lane_reads_its_next_partition_while_the_current_one_writes_and_writes_it_afterwards(store):
    """One lane, three partitions of 30 records: partition 0's last write waits until partition 1
    has read its first batch (the read ahead), yet every write of partition 1 comes after partition
    0's last one (a lane writes one partition at a time)."""
    class OrderSink(DictSink):
        order: list[int] = []

        def write(self, batch):
            first, last = (int(key.removeprefix("_id=")) for key in batch["parents"].source_keys[::9])
            if last == 30:
                assert next_read.wait(60), "partition 1 did not start reading before partition 0 finished"
            self.order.append(first)
            return super().write(batch)

    source = SecondReadSignal("src", {"items": records(90)}, batch_size=10)
    next_read = source.reading
    sink = OrderSink("mem", ItemsMapping().tables)
    execution = run_all(source, sink, store, RunControl(max_in_flight=3), parallelism=1, partitions=3)
    assert execution.errors == [] and execution.skipped == []
    assert sink.order == [1, 11, 21, 31, 41, 51, 61, 71, 81]
    assert sorted(key[0] for key in sink.tables["parents"]) == list(range(1, 91))
    assert all(checkpoint.done for checkpoint in store.checkpoints(JOB).values())


def test_a_partition_whose_turn_comes_after_a_stop_writes_nothing_and_is_skipped(store):
    """Partition 0 stops the run (as SIGTERM would) after its first batch, once partition 1 is
    reading ahead: partition 1 never writes, and it and partition 2 are reported skipped."""
    control = RunControl(max_in_flight=3)
    source = SecondReadSignal("src", {"items": records(30)}, batch_size=10)
    next_read = source.reading
    sink = DictSink("mem", ItemsMapping().tables)
    original = control.committed

    def stop_once_the_next_reads(table, delta):
        original(table, delta)
        assert next_read.wait(60)
        control.stop("signal", "stopped by SIGTERM")

    control.committed = stop_once_the_next_reads
    execution = run_all(source, sink, store, control, parallelism=1, partitions=3)
    assert execution.errors == []
    assert sorted(execution.skipped) == ["src.items#1/3", "src.items#2/3"]
    assert [outcome.partition for outcome in execution.outcomes] == ["src.items#0/3"]
    assert sorted(key[0] for key in sink.tables["parents"]) == list(range(1, 11))
    assert sorted(store.checkpoints(JOB)) == ["src.items#0/3"]


def test_a_partition_no_thread_can_run_fails_the_run_and_the_rest_are_skipped(store, monkeypatch):
    start = threading.Thread.start

    def no_thread_for_partition_1(thread):
        if thread.name == "partition src.items#1/3":
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", no_thread_for_partition_1)
    source = ListSource("src", {"items": records(30)}, batch_size=10)
    sink = DictSink("mem", ItemsMapping().tables)
    control = RunControl(max_in_flight=3)
    execution = run_all(source, sink, store, control, parallelism=1, partitions=3)
    assert [(partition, str(error)) for partition, error in execution.errors] == [
        ("src.items#1/3", "can't start new thread")]
    assert execution.skipped == ["src.items#2/3"]
    assert [outcome.partition for outcome in execution.outcomes] == ["src.items#0/3"]
    assert control.stop_reason.kind == "failure"
