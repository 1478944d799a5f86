"""The Chinook sample database in PostgreSQL, for the relational-source tests: the loader and
the row count of every table (lerocha/chinook-database, the figures its SQLite file gives)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from load_chinook_postgres import CHINOOK_DIR, load_chinook  # noqa: E402

CHINOOK_COUNTS = {
    "album": 347,
    "artist": 275,
    "customer": 59,
    "employee": 8,
    "genre": 25,
    "invoice": 412,
    "invoice_line": 2240,
    "media_type": 5,
    "playlist": 18,
    "playlist_track": 8715,
    "track": 3503,
}

__all__ = ["CHINOOK_COUNTS", "CHINOOK_DIR", "load_chinook"]
