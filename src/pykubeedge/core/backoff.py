"""Exponential backoff with jitter, capped: reconnects, retries, informer re-lists.

Jitter matters at scale: after a cloudcore restart a thousand edges must not reconnect in the
same millisecond (upstream KubeEdge has no jitter; reconnect storms follow).

    >>> b = Backoff(initial=1, cap=30)
    >>> 0.5 <= b.next_delay() <= 1.0
    True
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Backoff:
    """Delay n is uniform in [d/2, d] with d = min(cap, initial * 2**n); ``reset`` on success."""

    initial: float = 0.5
    cap: float = 30.0
    attempt: int = 0

    def next_delay(self, rnd: Callable[[], float] = random.random) -> float:
        delay: float = min(self.cap, self.initial * 2.0 ** min(self.attempt, 62))
        self.attempt += 1
        return delay / 2 + rnd() * delay / 2

    def reset(self) -> None:
        self.attempt = 0
