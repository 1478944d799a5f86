"""A pymongo command listener for tests that check which reads the engine sends to MongoDB."""

from __future__ import annotations

import bson
import pymongo.monitoring


class ReadCommands(pymongo.monitoring.CommandListener):
    """The batchSize of every find/getMore sent to one database, each find's filter and
    projection, and how many documents each reply holds (pymongo has no unregister: the listener
    stays on every client made later, so it ignores the other tests' databases)."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.sizes: list[tuple[str, int | None]] = []
        self.finds: list[tuple[dict, dict | None]] = []
        self.hints: list[dict | None] = []
        self.replied: list[int] = []

    def started(self, event):
        if event.database_name == self.database and event.command_name in ("find", "getMore"):
            self.sizes.append((event.command_name, event.command.get("batchSize")))
        if event.database_name == self.database and event.command_name == "find":
            self.finds.append((event.command["filter"], event.command.get("projection")))
            self.hints.append(event.command.get("hint"))

    def succeeded(self, event):
        if event.database_name == self.database and event.command_name in ("find", "getMore"):
            cursor = event.reply["cursor"]
            blobs = cursor.get("firstBatch", cursor.get("nextBatch"))  # a raw cursor's one blob, if any
            self.replied.append(sum(len(bson.decode_all(raw)) for raw in blobs))

    def failed(self, event):
        pass
