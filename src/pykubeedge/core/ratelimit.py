"""A token bucket (sans IO): ``rate`` tokens per second, at most ``burst`` saved up.

    >>> b = TokenBucket(rate=30, burst=60, now=0.0)
    >>> b.reserve(now=0.0)      # seconds to wait before sending: none while tokens last
    0.0
"""

from __future__ import annotations


class TokenBucket:
    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got {rate}, {burst}")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    def reserve(self, now: float) -> float:
        """Take one token; return how long to wait before using it (0 if available now)."""
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate
