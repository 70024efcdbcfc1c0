"""The :class:`~pykubeedge.core.clock.Clock` on asyncio: the real one (the running loop's
time) and a fake one on virtual time, for tests that must not sleep::

    clock = FakeClock()
    hub = EdgeHub(settings, outbox, clock=clock, dial=network.dialer(settings))
    await clock.advance(15)       # one heartbeat: EdgeHub's keepalive goes out

``advance`` moves virtual time timer by timer and lets every task run between them, so what
happens in an hour of fake time happens in order, deterministically, in milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pykubeedge.core.clock import WALL_START, Clock, Timer, VirtualTime

SETTLE_ROUNDS = 64
"""Loop turns ``FakeClock.settle`` gives the tasks (counted in turns, never in seconds)."""


class LoopClock:
    """The real clock: the running event loop's monotonic time, ``time.time`` for wall time.

    >>> clock = LoopClock()
    >>> clock.time() > 1.7e9
    True
    """

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    def time(self) -> float:
        return time.time()

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        return asyncio.get_running_loop().call_at(when, callback)


REAL_CLOCK = LoopClock()
"""The clock every component uses unless given another."""


class FakeClock:
    """Virtual time for asyncio code: ``sleep`` and ``call_at`` wait for :meth:`advance`.

    ``monotonic`` starts at ``start``; ``time`` (wall) at ``wall_start``.
    """

    def __init__(self, start: float = 0.0, wall_start: float = WALL_START) -> None:
        self.virtual = VirtualTime(start, wall_start)

    def monotonic(self) -> float:
        return self.virtual.monotonic()

    def time(self) -> float:
        return self.virtual.time()

    async def sleep(self, delay: float) -> None:
        if delay <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self.virtual.call_at(self.virtual.now + delay, lambda: _resolve(future))
        try:
            await future
        finally:
            timer.cancel()

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        return self.virtual.call_at(when, callback)

    async def settle(self, rounds: int = SETTLE_ROUNDS) -> None:
        """Let every task run until it waits on something (in loop turns, not seconds)."""
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move ``seconds`` forward, firing timers in deadline order and settling the tasks
        after each, so work a timer starts can set the next timer within the same span."""
        until = self.virtual.now + seconds
        await self.settle()
        while self.virtual.step(until):
            await self.settle()
        await self.settle()


async def wait_event(clock: Clock, event: asyncio.Event, deadline: float | None) -> None:
    """Until ``event`` is set, or ``clock`` reaches ``deadline`` (None: no deadline), which
    sets ``event``: for loops that clear their wake-up event each round and then do what is
    due on the clock::

        while True:
            wakeup.clear()
            send_what_is_due(clock.monotonic())
            await wait_event(clock, wakeup, next_deadline())
    """
    timer = None if deadline is None else clock.call_at(deadline, event.set)
    try:
        await event.wait()
    finally:
        if timer is not None:
            timer.cancel()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
