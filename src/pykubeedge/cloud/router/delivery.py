"""eventbus -> rest delivery: one bounded queue per rule, one worker per queue, so a rule's
messages reach its REST endpoint in the order the edge published them, each retried (with
backoff, bounded in count) while the endpoint fails with a connection error or a 5xx.

Upstream posts each message once from its own goroutine, in no order, and forgets it on any
error. Here a rule whose queue is full drops the newest message and counts it (the Rule status
says so), and a message is counted a failure only after its last attempt.

    queue = RuleQueue("default/r", deliver, stats, limit=1000)
    queue.put(b"payload", node="edge-1")
    await queue.run()
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from pykubeedge.cloud.router.status import RuleStats

log = logging.getLogger(__name__)

DEFAULT_LIMIT: Final = 1000
MAX_ATTEMPTS: Final = 6
FIRST_DELAY: Final = 0.2
MAX_DELAY: Final = 5.0


class DeliveryError(Exception):
    """A delivery that failed; ``retry`` says whether trying again may help."""

    def __init__(self, text: str, *, retry: bool) -> None:
        super().__init__(text)
        self.retry = retry


@dataclass(frozen=True, slots=True)
class Item:
    body: bytes
    node: str


Deliver = Callable[[Item], Awaitable[Any]]


class RuleQueue:
    def __init__(self, key: str, deliver: Deliver, stats: RuleStats, *,
                 limit: int = DEFAULT_LIMIT, max_attempts: int = MAX_ATTEMPTS,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.key = key
        self.deliver = deliver
        self.stats = stats
        self.limit = limit
        self.max_attempts = max_attempts
        self._items: deque[Item] = deque()
        self._more = asyncio.Event()
        self._sleep = sleep
        self.delivered = 0
        self.busy = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, body: bytes, *, node: str) -> bool:
        """Queue a message; False (counted as dropped) when the queue is full."""
        if len(self._items) >= self.limit:
            self.stats.dropped(self.key, f"the rule's queue of {self.limit} was full")
            return False
        self._items.append(Item(body, node))
        self._more.set()
        return True

    async def run(self) -> None:
        while True:
            if not self._items:
                self._more.clear()
                await self._more.wait()
                continue
            item = self._items[0]
            self.busy = True
            try:
                await self._one(item)
            finally:
                self.busy = False
            self._items.popleft()

    async def _one(self, item: Item) -> None:
        delay = FIRST_DELAY
        for attempt in range(1, self.max_attempts + 1):
            try:
                await self.deliver(item)
            except DeliveryError as exc:
                if not exc.retry or attempt == self.max_attempts:
                    log.warning("rule %s: delivery failed after %d attempt(s): %s", self.key,
                                attempt, exc)
                    self.stats.fail(self.key, str(exc))
                    return
                await self._sleep(delay)
                delay = min(delay * 2, MAX_DELAY)
                continue
            self.delivered += 1
            self.stats.success(self.key)
            return
