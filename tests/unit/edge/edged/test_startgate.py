"""The start gate: bounded, oldest pod first, and nothing lost to a cancelled waiter."""

from __future__ import annotations

import asyncio

import pytest

from pykubeedge.core.errors import ConfigError
from pykubeedge.edge.app import START_SLOTS_ENV, start_slots
from pykubeedge.edge.edged.startgate import UNBOUNDED, StartGate, default_slots


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_free_slot_goes_to_the_oldest_waiting_pod() -> None:
    gate = StartGate(slots=1)
    order: list[int] = []
    release = asyncio.Event()

    async def start(priority: int) -> None:
        async with gate.slot(priority):
            order.append(priority)
            if priority == 0:
                await release.wait()

    first = asyncio.create_task(start(0))
    await _settle()
    waiters = [asyncio.create_task(start(p)) for p in (5, 3, 9, 1)]
    await _settle()
    assert gate.busy == 1 and gate.waiting == 4
    release.set()
    await asyncio.gather(first, *waiters)
    assert order == [0, 1, 3, 5, 9]
    assert gate.busy == 0 and gate.waiting == 0


async def test_never_more_than_slots_at_once() -> None:
    gate = StartGate(slots=3)
    inside = peak = 0

    async def start(priority: int) -> None:
        nonlocal inside, peak
        async with gate.slot(priority):
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0)
            inside -= 1

    await asyncio.gather(*(start(i % 4) for i in range(40)))
    assert peak == 3 and gate.busy == 0


async def test_a_cancelled_waiter_passes_its_slot_on() -> None:
    gate = StartGate(slots=1)
    hold = asyncio.Event()
    done: list[int] = []

    async def start(priority: int) -> None:
        async with gate.slot(priority):
            if priority == 0:
                await hold.wait()
            done.append(priority)

    holder = asyncio.create_task(start(0))
    await _settle()
    doomed = asyncio.create_task(start(1))
    later = asyncio.create_task(start(2))
    await _settle()
    doomed.cancel()                      # cancelled while waiting
    await _settle()
    hold.set()
    await asyncio.gather(holder, later)
    assert doomed.cancelled() and done == [0, 2] and gate.busy == 0


async def test_a_waiter_cancelled_as_the_slot_reaches_it_hands_it_over() -> None:
    gate = StartGate(slots=1)
    done: list[int] = []

    async def start(priority: int) -> None:
        async with gate.slot(priority):
            done.append(priority)

    async with gate.slot(0):
        doomed = asyncio.create_task(start(1))
        later = asyncio.create_task(start(2))
        await _settle()
    doomed.cancel()                      # the slot is already handed to it, not yet taken
    await asyncio.gather(later)
    assert doomed.cancelled() and done == [2] and gate.busy == 0


async def test_a_body_that_raises_frees_its_slot() -> None:
    gate = StartGate(slots=1)
    with pytest.raises(RuntimeError):
        async with gate.slot(0):
            raise RuntimeError("RunPodSandbox failed")
    assert gate.busy == 0
    async with gate.slot(0):
        assert gate.busy == 1


def test_slots_come_from_the_cpus_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        StartGate(slots=0)
    monkeypatch.delenv(START_SLOTS_ENV, raising=False)
    assert start_slots(fake=False) == default_slots() >= 2
    assert start_slots(fake=True) == UNBOUNDED
    monkeypatch.setenv(START_SLOTS_ENV, "0")
    assert start_slots(fake=False) == UNBOUNDED
    monkeypatch.setenv(START_SLOTS_ENV, "4")
    assert start_slots(fake=True) == 4
    for bad in ("four", "-1"):
        monkeypatch.setenv(START_SLOTS_ENV, bad)
        with pytest.raises(ConfigError, match=START_SLOTS_ENV):
            start_slots(fake=False)
