"""Pod starts, oldest pod first: a bounded number of sandbox and container starts at once.

kubelet starts every pod that arrives as soon as it arrives. Twenty pods created together
then share the CPU of a small edge host: containerd, runc and the CNI plugin work on all
twenty at once, and each pod is Running only when nearly all of them are. Edged passes its
CRI start calls (``RunPodSandbox``, and ``CreateContainer`` + ``StartContainer``) through a
:class:`StartGate`: ``slots`` of them run at a time, and a free slot goes to the oldest pod
that waits for one. A pod's container start then goes ahead of a younger pod's sandbox, the
first pods are Running early, and the last no later than before::

    gate = StartGate(slots=2)
    async with gate.slot(priority=worker.seq):      # lower goes first
        sandbox = await runtime.run_pod_sandbox(config)

Only the start calls pass the gate: image pulls, postStart hooks, probes and stops never
wait for it, so a slow pull or hook holds no slot.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final


def default_slots() -> int:
    """One start per CPU, and at least two (one may wait on the disk)."""
    return max(2, os.cpu_count() or 1)


UNBOUNDED: Final = 1 << 30
"""As many slots as anyone asks for: kubelet's behaviour (the fake runtime's default)."""


class StartGate:
    """At most ``slots`` holders at once; waiters are served lowest ``priority`` first (ties
    in arrival order). Cancelling a waiter loses nothing: a slot handed to it as it is
    cancelled goes on to the next waiter."""

    def __init__(self, slots: int = UNBOUNDED) -> None:
        if slots < 1:
            raise ValueError(f"a start gate needs at least one slot, not {slots}")
        self.slots = slots
        self.busy = 0
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrival = itertools.count()

    @property
    def waiting(self) -> int:
        """How many are waiting for a slot."""
        return sum(1 for _, _, future in self._waiting if not future.done())

    @asynccontextmanager
    async def slot(self, priority: int) -> AsyncIterator[None]:
        """Hold one slot for the body."""
        await self._acquire(priority)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: int) -> None:
        if self.busy < self.slots and not self.waiting:
            self.busy += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._arrival), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release()  # handed over just as we were cancelled: pass it on
            raise

    def _release(self) -> None:
        while self._waiting:
            _, _, future = heapq.heappop(self._waiting)
            if not future.done():
                future.set_result(None)  # the slot changes hands; busy stays
                return
        self.busy -= 1
