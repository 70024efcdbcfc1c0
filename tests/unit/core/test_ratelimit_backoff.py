"""Token bucket and jittered backoff, with time passed in."""

from __future__ import annotations

import pytest

from pykubeedge.core.backoff import Backoff
from pykubeedge.core.ratelimit import TokenBucket


def test_bucket_allows_the_burst_then_the_rate() -> None:
    b = TokenBucket(rate=30, burst=60, now=0.0)
    assert [b.reserve(0.0) for _ in range(60)] == [0.0] * 60
    assert b.reserve(0.0) == pytest.approx(1 / 30)
    assert b.reserve(0.0) == pytest.approx(2 / 30)  # reservations queue up
    assert b.reserve(10.0) == 0.0  # refilled (capped at the burst)
    assert [b.reserve(10.0) for _ in range(59)] == [0.0] * 59
    assert b.reserve(10.0) > 0


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=0, burst=1, now=0)


def test_backoff_jitter_spreads_reconnects() -> None:
    delays = [Backoff(initial=1, cap=30).next_delay() for _ in range(200)]
    assert all(0.5 <= d <= 1.0 for d in delays)
    assert len({round(d, 3) for d in delays}) > 100  # not all at the same instant
    b = Backoff(initial=1, cap=30)
    for _ in range(100):  # never overflows, never exceeds the cap
        assert b.next_delay() <= 30
