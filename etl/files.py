"""Files and folders etl writes are private to the user running it: files 0600, folders 0700.

Every writer (dead letters, reports, the state store, manifests, differences files, the audit
trail, plots) goes through these helpers. The modes are set with chmod right after creation, so
they hold whatever the process umask is; a file etl writes again (a dead-letter file from an
earlier run) is made 0600 too. Folders that already exist are left as they are.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def make_folder(path: str | Path) -> Path:
    """Create `path` and its missing parents, each 0700; an existing folder is left as it is."""
    target = path = Path(path)
    missing = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=FOLDER_MODE)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue
        os.chmod(folder, FOLDER_MODE)
    return target


def open_descriptor(path: str | Path, flags: int) -> int:
    """`os.open(path, flags | O_CREAT)` with the file made 0600 (its folder is created 0700)."""
    path = Path(path)
    make_folder(path.parent)
    descriptor = os.open(path, flags | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(descriptor, FILE_MODE)
    except PermissionError:
        pass  # another user's file: its owner chose its mode
    return descriptor


def open_private(path: str | Path, mode: str = "w", **options: Any) -> IO:
    """Like `open(path, mode)` for writing (`w`, `a`, `wb`, `ab`), the file made 0600."""
    if mode.rstrip("b") not in ("w", "a"):
        raise ValueError(f"open_private writes only: mode {mode!r}")
    flags = os.O_WRONLY | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    return os.fdopen(open_descriptor(path, flags), mode, **options)


def write_private(path: str | Path, data: str | bytes, encoding: str = "utf-8") -> None:
    """Write the whole file (replacing what was there), 0600."""
    if isinstance(data, bytes):
        with open_private(path, "wb") as handle:
            handle.write(data)
    else:
        with open_private(path, "w", encoding=encoding) as handle:
            handle.write(data)


def make_private(path: str | Path) -> Path:
    """Create `path` empty when missing and make it 0600, for files a library opens by name
    (SQLite keeps its -wal and -shm files at the mode of the database file)."""
    os.close(open_descriptor(path, os.O_WRONLY))
    return Path(path)
