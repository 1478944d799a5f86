"""Who holds a lease, and whether that holder is provably dead, so a run need not wait for expiry.

A holder is `host:pid:start`, where `start` is the process's start time in clock ticks since
boot (field 22 of `/proc/<pid>/stat`, see proc(5)). A run killed with SIGKILL never releases its
lease; a later run on the same host may take it over at once when the holder's process is gone,
a zombie, or its pid now belongs to a process started at another time (pid reuse). Every state
backend asks `holder_is_dead` before refusing a held lease, so the rule lives only here.

A holder on another host, a holder in another format, or a process whose start time cannot be
read is never judged dead: those leases still block until they expire.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def holder_identity() -> str:
    """This process as a lease holder: `host:pid:start`."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or 'unknown'}"


def holder_is_dead(holder: str) -> bool:
    """True only when `holder` names a process of this host that no longer runs."""
    host, _, rest = holder.rpartition(":")
    host, _, pid_text = host.rpartition(":")
    started = rest
    if host != socket.gethostname() or not pid_text.isdigit() or not started.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it runs, under another user
        pass
    current = _start_time(pid)
    if current is None:  # gone between the two checks
        return not os.path.exists(f"/proc/{pid}")
    return current != started or _is_zombie(pid)


def log_takeover(job: str, holder: str) -> None:
    log.warning("job %s: took over the lease of '%s', whose process on this host is dead", job, holder)


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (after the command name, which may hold spaces or ')')."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            text = stat.read()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def _start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else None


def _is_zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
    return bool(fields and fields[0] in ("Z", "X"))
