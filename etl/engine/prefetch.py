"""Read a partition's next batches while the current one is mapped and written.

The reader thread takes a slot of the run's in-flight budget before it pulls each batch, and the
consumer gives the slot back once the batch is checkpointed, so the batches held in memory by
the whole run never exceed the budget however many partitions run. A stop request (signal,
max_rejects) ends reading; the batches already read are still handed over and committed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from etl.engine.control import RunControl
from etl.records import Batch


@dataclass
class _End:
    stopped: bool


@dataclass
class _Failed:
    error: BaseException


class Prefetcher:
    """Iterate over `batches` on a reader thread, at most `depth` batches ahead of the consumer, and
    one batch before the consumer starts: a partition reading ahead of its turn (the local
    executor's lanes) hides its first query's wait without taking the budget's slots from the
    partitions writing meanwhile."""

    def __init__(self, batches: Iterator[Batch], control: RunControl, *, depth: int, name: str,
                 on_end: Callable[[], None] | None = None) -> None:
        self._batches = batches
        self._on_end = on_end
        """Called on the reader thread once reading has ended (the last batch read, a stop, an error)."""
        self._control = control
        self._queue: queue.Queue[Batch | _End | _Failed] = queue.Queue(maxsize=max(1, depth))
        self._abandon = threading.Event()
        self._consuming = threading.Event()
        self.stopped = False
        """True when reading ended because the run is stopping, not because the partition ended."""
        self._thread = threading.Thread(target=self._read, name=f"read {name}", daemon=True)
        self._thread.start()

    def _put(self, item: Batch | _End | _Failed) -> bool:
        while not self._abandon.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _consumer_started(self) -> bool:
        """Wait until the consumer asks for its first batch; False if abandoned first."""
        while not self._consuming.wait(0.2):
            if self._abandon.is_set():
                return False
        return True

    def _read(self) -> None:
        try:
            read = 0
            while True:
                if read == 1 and not self._consumer_started():
                    return
                read += 1
                if self._abandon.is_set() or not self._control.acquire_slot():
                    self._put(_End(stopped=True))
                    return
                try:
                    batch = next(self._batches)
                except StopIteration:
                    self._control.release_slot()
                    self._put(_End(stopped=False))
                    return
                except BaseException:
                    self._control.release_slot()
                    raise
                if not self._put(batch):
                    self._control.release_slot()
                    return
        except BaseException as error:  # handed to the consumer, which re-raises it
            self._put(_Failed(error))
        finally:
            close = getattr(self._batches, "close", None)
            if close is not None:
                close()
            if self._on_end is not None:
                self._on_end()

    def __iter__(self) -> Iterator[Batch]:
        """Each yielded batch holds a slot; the consumer calls `control.release_slot()` when done."""
        self._consuming.set()
        while True:
            item = self._queue.get()
            if isinstance(item, Batch):
                yield item
            elif isinstance(item, _End):
                self.stopped = item.stopped
                return
            else:
                raise item.error

    def abandon(self) -> None:
        """Stop reading and give back the slots of batches read but never consumed."""
        self._abandon.set()
        while self._thread.is_alive() or not self._queue.empty():
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if isinstance(item, Batch):
                self._control.release_slot()
        self._thread.join()
