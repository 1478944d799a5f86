"""Exponential backoff with full jitter, shared by every sink so they all retry the same way.

"Full jitter" sleeps a uniformly random time between 0 and min(cap, base * 2**attempt): retrying
clients spread out instead of hammering a throttled server in lockstep. Source: AWS Architecture
Blog, "Exponential Backoff And Jitter",
https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/ and the AWS SDK retry
guidance https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """A bounded retry policy: `max_attempts` tries in all, sleeping with full jitter between them."""

    max_attempts: int = 8
    """Total attempts including the first (1 means never retry)."""
    base_delay_ms: float = 50.0
    """Upper bound of the first sleep; doubles with each further attempt."""
    max_delay_ms: float = 20_000.0
    """Cap on the upper bound, so a long outage does not produce hour-long sleeps."""
    rng: random.Random = field(default_factory=random.Random)
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def delay(self, attempt: int) -> float:
        """Seconds to sleep after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.max_delay_ms, self.base_delay_ms * (2 ** (attempt - 1)))
        return self.rng.uniform(0.0, ceiling) / 1000.0

    def can_retry(self, attempt: int) -> bool:
        """True when attempt number `attempt` (1-based) failed and another one is allowed."""
        return attempt < self.max_attempts

    def pause(self, attempt: int) -> None:
        """Sleep the jittered delay that follows failed attempt number `attempt`."""
        self.sleep(self.delay(attempt))
