"""The dead-letter store: every rejected record, with why, where and the record as far as it is safe.

One JSON object per line in a local file (`dead_letter: {path: ...}`): job, table, target, source_key,
stage, reason, field_path, value_type and the record. The record arrives with PII fields already
transformed by the mapping; its values are encoded losslessly (Decimal as its exact
string, bytes as base64, datetimes as ISO 8601) so a fixed record can be replayed as it was.
With a `Sealer` (`dead_letter: {raw: encrypted}`) an entry also holds the raw source record, sealed
(`raw_record`, etl/sinks/deadletter_seal.py); `read_dead_letters(path, keys=...)` opens it.
`flush()` makes everything written so far durable; the engine calls it before it checkpoints.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from etl.files import open_private
from etl.records import Reject
from etl.sinks import jsontext

if TYPE_CHECKING:
    from etl.sinks.deadletter_seal import KeyProvider, Sealer

FIELDS = ("job", "table", "target", "source_key", "stage", "reason", "field_path", "value_type")


def dead_letter(job: str, reject: Reject, generation: str | None = None, sealer: Sealer | None = None) -> str:
    """The JSON line for one reject (without the trailing newline). The raw record is written only
    sealed, and only with a `sealer`."""
    entry: dict = {"job": job}
    entry.update((name, getattr(reject, name)) for name in FIELDS if name != "job")
    if generation is not None:
        entry["generation"] = generation
    entry["recorded_at"] = dt.datetime.now(dt.UTC).isoformat()
    entry["record"] = reject.record
    if sealer is not None and reject.raw is not None:
        raw = jsontext.dumps(reject.raw, decimals_as_strings=True).encode("utf-8")
        entry["raw_record"] = sealer.seal(raw, entry)
    return jsontext.dumps(entry, decimals_as_strings=True)


class DeadLetterStore:
    """JSON lines in a local file; thread-safe; `flush()` writes through to disk (fsync).

    Each `add` is one write of whole lines to a file opened for appending, so several processes
    (local worker processes, Dask workers on one machine) may add to the same file at once without
    ever splitting a line."""

    def __init__(self, path: str | Path, *, job: str, generation: str | None = None,
                 sealer: Sealer | None = None) -> None:
        """`generation`: the job's verdict generation (`etl.engine.verdict`), written in every entry
        so validation tells this load's rejects from those of runs before a full refresh. `sealer`:
        raw records are kept, encrypted (`keeps_raw`)."""
        self.path = Path(path)
        self.job = job
        self.generation = generation
        self.sealer = sealer
        self.keeps_raw = sealer is not None
        self._file = open_private(self.path, "ab", buffering=0)
        self._lock = threading.Lock()
        self.count = 0

    def add(self, rejects: Iterable[Reject]) -> int:
        lines = [dead_letter(self.job, reject, self.generation, self.sealer) + "\n" for reject in rejects]
        data = memoryview("".join(lines).encode("utf-8"))
        with self._lock:
            while data:  # a regular file takes it in one write; a short write continues where it stopped
                data = data[self._file.write(data):]
            self.count += len(lines)
        return len(lines)

    def flush(self) -> None:
        with self._lock:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                os.fsync(self._file.fileno())
                self._file.close()


def read_dead_letters(path: str | Path, *, keys: KeyProvider | None = None) -> Iterator[dict]:
    """The entries of a dead-letter file, in the order written. With `keys` (`KmsKeys` or, in tests,
    `LocalKeys`) an entry that holds a sealed raw record gets it opened, as `raw` (its values encoded as
    in `record`); a key that does not open it raises `SealError` naming the file and line."""
    opener = None
    if keys is not None:
        from etl.sinks.deadletter_seal import Opener  # cryptography only where raw records are sealed

        opener = Opener(keys)
    with Path(path).open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                entry = json.loads(line)
                if opener is not None and "raw_record" in entry:
                    entry["raw"] = json.loads(opener.open(entry, f"{path}:{number}"))
                yield entry


def load_rejects(path: str | Path, *, job: str, generation: str) -> dict[str, set[str]]:
    """Source keys of the records each target table refused at load (`target.table` -> keys), for
    one job and verdict generation; empty when there is no dead-letter file."""
    refused: dict[str, set[str]] = {}
    if not Path(path).exists():
        return refused
    for entry in read_dead_letters(path):
        ours = entry.get("job") == job and entry.get("generation") == generation
        if ours and entry.get("stage") == "load" and entry.get("target"):
            refused.setdefault(entry["target"], set()).add(entry["source_key"])
    return refused
