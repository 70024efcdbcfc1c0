"""A module's bounded FIFO queue that can be closed (``asyncio.Queue.shutdown`` is 3.13+).

Senders wait while it is full; receivers wait while it is empty; closing it wakes both, and
from then on every call raises :class:`HiveClosedError`::

    box = Mailbox(1024)
    await box.put(msg)          # waits while 1024 messages are queued
    msg = await box.get()
"""

from __future__ import annotations

import asyncio
from collections import deque

from pykubeedge.beehive.errors import HiveClosedError
from pykubeedge.core.message import Message


class Mailbox:
    """Bounded, closable, single-loop FIFO of messages."""

    def __init__(self, maxsize: int, name: str = "") -> None:
        if maxsize < 1:
            raise ValueError(f"mailbox size must be at least 1, got {maxsize}")
        self._maxsize = maxsize
        self._name = name
        self._items: deque[Message] = deque()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    def qsize(self) -> int:
        """Messages queued now."""
        return len(self._items)

    def full(self) -> bool:
        """True when a ``put`` would wait."""
        return len(self._items) >= self._maxsize

    def put_nowait(self, msg: Message) -> bool:
        """Queue ``msg`` if there is room; False when full."""
        self._check_open()
        if self.full():
            return False
        self._items.append(msg)
        _wake_one(self._getters)
        return True

    async def put(self, msg: Message) -> None:
        """Queue ``msg``, waiting while the mailbox is full."""
        while self.full():
            self._check_open()
            await self._wait(self._putters)
        self.put_nowait(msg)

    async def get(self) -> Message:
        """The oldest message, waiting while the mailbox is empty."""
        while not self._items:
            self._check_open()
            await self._wait(self._getters)
        msg = self._items.popleft()
        _wake_one(self._putters)
        return msg

    def close(self) -> None:
        """Drop queued messages and wake every waiter; they then raise ``HiveClosedError``."""
        self._closed = True
        self._items.clear()
        for waiters in (self._getters, self._putters):
            while waiters:
                future = waiters.popleft()
                if not future.done():
                    future.set_result(None)

    def _check_open(self) -> None:
        if self._closed:
            raise HiveClosedError(f"mailbox of module {self._name!r} is closed")

    async def _wait(self, waiters: deque[asyncio.Future[None]]) -> None:
        future = asyncio.get_running_loop().create_future()
        waiters.append(future)
        try:
            await future
        except BaseException:
            if future in waiters:
                waiters.remove(future)
            # We may have been woken and cancelled at once: pass the wake-up on, so that a
            # message or a free slot is not left with nobody told about it. Waiters re-check.
            _wake_one(waiters)
            raise


def _wake_one(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        future = waiters.popleft()
        if not future.done():
            future.set_result(None)
            return
