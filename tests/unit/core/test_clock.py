"""Virtual time and the fake clock on it: timers in deadline order, sleeps that wait for
``advance``, no real time spent."""

from __future__ import annotations

import asyncio
import time

from pykubeedge.beehive.clock import FakeClock, LoopClock
from pykubeedge.core.clock import WALL_START, VirtualTime


def test_virtual_time_fires_timers_in_order_and_skips_cancelled_ones() -> None:
    vt = VirtualTime()
    fired: list[str] = []
    vt.call_at(2.0, lambda: fired.append("b"))
    vt.call_at(1.0, lambda: fired.append("a"))
    vt.call_at(1.0, lambda: fired.append("a2"))  # same deadline: in the order set
    vt.call_at(1.5, lambda: fired.append("never")).cancel()
    vt.call_at(0.5, lambda: vt.call_at(1.2, lambda: fired.append("set by a timer")))
    vt.advance(1.9)
    assert fired == ["a", "a2", "set by a timer"]
    assert vt.now == 1.9 and vt.next_deadline() == 2.0
    vt.advance(0.1)
    assert fired[-1] == "b" and vt.next_deadline() is None
    assert vt.time() == WALL_START + 2.0


async def test_fake_sleeps_wake_in_deadline_order_without_real_time() -> None:
    clock = FakeClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, delay: float) -> None:
        await clock.sleep(delay)
        woke.append((name, clock.monotonic()))

    started = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        for name, delay in (("slow", 3600.0), ("fast", 1.0), ("mid", 60.0)):
            tg.create_task(sleeper(name, delay))
        await clock.advance(59)
        assert woke == [("fast", 1.0)]
        await clock.advance(3600)
    assert woke == [("fast", 1.0), ("mid", 60.0), ("slow", 3600.0)]
    assert time.monotonic() - started < 5  # an hour of fake time, no real sleeping
    await clock.sleep(0)  # returns at once


async def test_the_loop_clock_is_the_event_loops() -> None:
    clock = LoopClock()
    loop = asyncio.get_running_loop()
    assert abs(clock.monotonic() - loop.time()) < 1
    fired = asyncio.Event()
    clock.call_at(clock.monotonic(), fired.set)
    await asyncio.wait_for(fired.wait(), 5)
