"""Cores the whole machine kept busy over an interval, from /proc/stat.

Its own module, without the workloads' imports (pymongo, ...), for `engine_child.py`."""

from __future__ import annotations

import os
import time


class BusyCores:
    """How many cores the whole machine kept busy over an interval (every process, PostgreSQL's
    included): user, nice, system, irq, softirq and steal jiffies of /proc/stat's `cpu` line over
    the interval's wall time. On N cores, N / (cores busy at 1 worker) is the most 2 workers can
    gain over 1. None where /proc/stat is missing (not Linux)."""

    FIELDS = (0, 1, 2, 5, 6, 7)
    """user nice system idle iowait irq softirq steal: all but idle and iowait."""

    def __init__(self) -> None:
        self._jiffies, self._started = self._busy(), time.perf_counter()

    @classmethod
    def _busy(cls) -> int | None:
        try:
            with open("/proc/stat") as stat:
                values = stat.readline().split()[1:]
        except OSError:
            return None
        return sum(int(values[i]) for i in cls.FIELDS if i < len(values))

    def cores(self) -> float | None:
        """Since this object was made."""
        now, seconds = self._busy(), time.perf_counter() - self._started
        if now is None or self._jiffies is None or seconds <= 0:
            return None
        return (now - self._jiffies) / os.sysconf("SC_CLK_TCK") / seconds
