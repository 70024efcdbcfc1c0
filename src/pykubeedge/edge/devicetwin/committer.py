"""Group commit for DeviceTwin: writes are handed over in order, committed many per
transaction, and each one's callback runs after its transaction, in the order handed over.

DeviceTwin applies a change in memory at once (the next message sees it) and publishes its
results only once it is on disk, without waiting for the disk before reading the next message.
That is what lets one edgecore take thousands of MQTT reports a second (one transaction per
report would not). Upstream retries a failed write 5 times, 1 s apart; so does this::

    committer = Committer(dao.run)
    await committer.submit([dao.put_twins(dev_id, twins)], on_stored)   # on_stored(None | err)
    tg.create_task(committer.run())
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from pykubeedge.core.errors import StoreClosedError, StoreError
from pykubeedge.edge.devicetwin.dao import Op

log = logging.getLogger(__name__)

Done = Callable[[Exception | None], Awaitable[None]]
RunOps = Callable[[Sequence[Op]], Awaitable[None]]

DEFAULT_LIMIT = 4096
MAX_BATCH = 1024
RETRIES = 5
RETRY_INTERVAL_S = 1.0


@dataclass(slots=True)
class _Item:
    ops: Sequence[Op]
    done: Done | None


class Committer:
    def __init__(self, run_ops: RunOps, *, limit: int = DEFAULT_LIMIT, retries: int = RETRIES,
                 retry_interval: float = RETRY_INTERVAL_S,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> None:
        self._run_ops = run_ops
        self._limit = limit
        self._retries = retries
        self._retry_interval = retry_interval
        self._sleep = sleep
        self._items: deque[_Item] = deque()
        self._has_items = asyncio.Event()
        self._has_room = asyncio.Event()
        self._has_room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.batches = 0
        self.failures = 0

    def __len__(self) -> int:
        return len(self._items)

    async def submit(self, ops: Sequence[Op], done: Done | None = None) -> None:
        """Queue ``ops`` (may be empty: then only ``done`` is ordered); waits while full."""
        while len(self._items) >= self._limit:
            self._has_room.clear()
            await self._has_room.wait()
        self._items.append(_Item(ops, done))
        self._idle.clear()
        self._has_items.set()

    async def idle(self) -> None:
        """Until everything handed over has been committed and called back."""
        await self._idle.wait()

    async def run(self) -> None:
        while True:
            if not self._items:
                self._idle.set()
                self._has_items.clear()
                await self._has_items.wait()
                continue
            batch = [self._items.popleft() for _ in range(min(MAX_BATCH, len(self._items)))]
            self._has_room.set()
            error = await self._commit([op for item in batch for op in item.ops])
            for item in batch:
                if item.done is None:
                    continue
                try:
                    await item.done(error)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("a DeviceTwin callback failed")

    async def _commit(self, ops: list[Op]) -> Exception | None:
        if not ops:
            return None
        error: Exception | None = None
        for attempt in range(1, self._retries + 1):
            try:
                await self._run_ops(ops)
                self.batches += 1
                return None
            except StoreClosedError as exc:  # edgecore is stopping: no retry can succeed
                error = exc
                break
            except (StoreError, sqlite3.Error, OSError) as exc:
                error = exc
                log.warning("DeviceTwin database write failed (try %d of %d): %s", attempt,
                            self._retries, exc)
                if attempt < self._retries:
                    await self._sleep(self._retry_interval)
        self.failures += 1
        return error
