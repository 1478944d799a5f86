"""The shared backoff: full jitter inside a doubling, capped ceiling, and a bounded number of attempts."""

import random

import pytest

from etl.sinks.retry import Backoff


def test_delays_stay_within_the_doubling_ceiling_and_the_cap():
    backoff = Backoff(max_attempts=10, base_delay_ms=100, max_delay_ms=1000, rng=random.Random(7))
    for attempt, ceiling_ms in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (9, 1000)]:
        delays = [backoff.delay(attempt) for _ in range(500)]
        assert all(0.0 <= d <= ceiling_ms / 1000 for d in delays)
        # full jitter: the spread covers most of [0, ceiling], not just its top
        assert min(delays) < 0.1 * ceiling_ms / 1000 and max(delays) > 0.9 * ceiling_ms / 1000


def test_attempts_are_bounded():
    backoff = Backoff(max_attempts=3)
    assert [backoff.can_retry(a) for a in (1, 2, 3, 4)] == [True, True, False, False]


def test_pause_sleeps_the_jittered_delay():
    slept = []
    backoff = Backoff(max_attempts=3, base_delay_ms=1000, rng=random.Random(1), sleep=slept.append)
    expected = Backoff(max_attempts=3, base_delay_ms=1000, rng=random.Random(1)).delay(2)
    backoff.pause(2)
    assert slept == [expected]


def test_at_least_one_attempt():
    with pytest.raises(ValueError):
        Backoff(max_attempts=0)
