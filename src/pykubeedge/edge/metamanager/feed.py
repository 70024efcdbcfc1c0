"""MetaManager's change feed: the last changes of ``meta``/``meta_v2``, in revision order,
that MetaServer's watches follow (event-loop side only).

Every write that changes something takes the next **revision** (one monotonic sequence, like
etcd's, persisted in ``meta_revision``); the store publishes its :class:`Change` records here
right after the commit::

    changes = store.feed.since(revision)           # RevisionExpired when too old: relist
    moved = await store.feed.wait(store.feed.revision, timeout=30)
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

from pykubeedge.core.errors import StoreError
from pykubeedge.edge.metamanager.resources import BY_TYPE, V2Resource

DEFAULT_FEED_SIZE: Final = 4096
"""Changes kept in memory for watchers; older ones are answered with 410 Gone."""


class RevisionExpired(StoreError):
    """The asked-for revision is older than the oldest change still in memory (HTTP 410)."""


class ChangeType(enum.StrEnum):
    """The kind of a change, named as Kubernetes watch events are."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"



@dataclass(frozen=True, slots=True)
class Change:
    """One row changed at ``revision``. For served types (:mod:`.resources`) ``object`` is the
    object as MetaServer serves it (``metadata.resourceVersion`` = ``revision``); for a
    ``DELETED`` change it is the last state. ``previous`` is the served state before the
    change (None when added, and for types MetaServer does not serve)."""

    revision: int
    type: ChangeType
    key: str
    resource_type: str
    namespace: str
    name: str
    object: Any
    previous: Any = None

    @property
    def served(self) -> V2Resource | None:
        """The MetaServer resource this change belongs to, if any."""
        return BY_TYPE.get(self.resource_type)


class ChangeFeed:
    """The last changes of the store, in revision order, for watchers (event-loop side only).

    >>> changes = store.feed.since(revision)       # doctest: +SKIP
    >>> await store.feed.wait(store.feed.revision, timeout=30)    # doctest: +SKIP
    """

    def __init__(self, revision: int, size: int = DEFAULT_FEED_SIZE) -> None:
        if size < 1:
            raise ValueError(f"feed size must be at least 1, got {size}")
        self._size = size
        self._changes: deque[Change] = deque()
        self._revision = revision
        self._floor = revision  # every change after this revision is still here
        self._waiters: set[asyncio.Future[None]] = set()

    @property
    def revision(self) -> int:
        """The latest published revision."""
        return self._revision

    @property
    def floor(self) -> int:
        """Watching from a revision below this one raises :class:`RevisionExpired`."""
        return self._floor

    def since(self, revision: int) -> list[Change]:
        """Changes with a revision greater than ``revision``, oldest first."""
        if revision < self._floor:
            raise RevisionExpired(
                f"revision {revision} is too old (the oldest kept is {self._floor})"
            )
        newer: list[Change] = []
        for change in reversed(self._changes):
            if change.revision <= revision:
                break
            newer.append(change)
        newer.reverse()
        return newer

    async def wait(self, revision: int, timeout: float | None = None) -> bool:
        """Wait until the feed is past ``revision``; False when ``timeout`` ran out first."""
        if self._revision > revision:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(future)
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(future)
        return self._revision > revision

    def interrupt(self) -> None:
        """Wake every waiter now (their ``wait`` returns False unless the feed moved)."""
        waiters, self._waiters = self._waiters, set()
        for future in waiters:
            if not future.done():
                future.set_result(None)

    def publish(self, changes: list[Change], revision: int) -> None:
        """Append ``changes`` (all at or below ``revision``) and wake the waiters."""
        for change in changes:
            if len(self._changes) >= self._size:
                dropped = self._changes.popleft()
                self._floor = max(self._floor, dropped.revision)
            self._changes.append(change)
        if revision > self._revision:
            self._revision = revision
            self.interrupt()

