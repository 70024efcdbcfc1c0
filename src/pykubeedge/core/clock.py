"""Time, injected: the one Clock every timed part of pykubeedge takes (keepalives, resends,
backoff, throttling, leases), and the virtual time its fake runs on.

A :class:`Clock` tells monotonic time (what deadlines are measured in), wall time (what goes
into timestamps), sleeps, and calls back at a monotonic time. The real one is the event loop's
(:class:`pykubeedge.beehive.clock.LoopClock`); the fake one
(:class:`pykubeedge.beehive.clock.FakeClock`, as trio's ``MockClock``) runs on
:class:`VirtualTime`, which moves only when a test says so, firing timers in deadline order,
so an hour of keepalives and resends takes milliseconds and always happens the same way::

    vt = VirtualTime()
    vt.call_at(30.0, lambda: fired.append("keepalive deadline"))
    vt.advance(31.0)            # -> runs the callback; vt.now == 31.0

core stays sans-IO: this module only keeps the books; the asyncio binding lives in beehive.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

TimeSource = Callable[[], float]
"""A function returning seconds: ``time.monotonic``, ``time.time``, ``clock.monotonic``."""
Sleep = Callable[[float], Awaitable[None]]
"""``asyncio.sleep`` or a clock's ``sleep``."""

WALL_START: Final = 1_700_000_000.0
"""The fake wall clock's time at virtual time 0 (2023-11-14T22:13:20Z)."""


class Timer(Protocol):
    """A scheduled callback that may be cancelled (``asyncio.TimerHandle`` is one)."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """What timed code takes instead of ``time``/``asyncio.sleep``/``loop.call_at``."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps: deadlines, intervals, rates."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the Unix epoch: timestamps in objects and messages."""
        ...

    async def sleep(self, delay: float) -> None:
        """Return after ``delay`` seconds of this clock (at once for ``delay`` <= 0)."""
        ...

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """Call ``callback()`` once :meth:`monotonic` reaches ``when``."""
        ...


class _VirtualTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualTime:
    """Time that moves only by :meth:`advance`; timers fire in (deadline, order) order.

    >>> vt = VirtualTime()
    >>> t = vt.call_at(2.0, lambda: print("two")); _ = vt.call_at(1.0, lambda: print("one"))
    >>> vt.advance(5.0)
    one
    two
    >>> vt.now
    5.0
    """

    def __init__(self, start: float = 0.0, wall_start: float = WALL_START) -> None:
        self.now = start
        self.wall_offset = wall_start - start
        self._timers: list[tuple[float, int, _VirtualTimer]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now + self.wall_offset

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        timer = _VirtualTimer(when, callback)
        heapq.heappush(self._timers, (when, next(self._order), timer))
        return timer

    def next_deadline(self) -> float | None:
        """When the next live timer fires (None when there is none)."""
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def fire_due(self) -> int:
        """Run every live timer due at :attr:`now`; returns how many ran."""
        ran = 0
        while (deadline := self.next_deadline()) is not None and deadline <= self.now:
            _, _, timer = heapq.heappop(self._timers)
            timer.cancelled = True
            timer.callback()
            ran += 1
        return ran

    def step(self, until: float) -> bool:
        """Move to the next deadline at or before ``until`` and fire what is due there; False
        (and ``now`` = ``until``) when no timer is due by then."""
        deadline = self.next_deadline()
        if deadline is None or deadline > until:
            self.now = max(self.now, until)
            return False
        self.now = max(self.now, deadline)
        self.fire_due()
        return True

    def advance(self, seconds: float) -> None:
        """Move ``seconds`` forward, firing timers in order (a timer a callback sets inside
        the span fires too)."""
        until = self.now + seconds
        while self.step(until):
            pass
