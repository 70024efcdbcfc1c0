"""What DeviceController has to write into DeviceStatus objects, per device, coalesced and
rate-limited (sans IO: time is passed in).

Upstream patches the DeviceStatus once per report from the edge, so a device reporting a
thousand times a second means a thousand PATCHes a second. Here (PROJECT) reports of one device
merge while they wait (a newer value of a property replaces an older one; an older one, by its
version, never replaces a newer), and each device gets at most ``rate`` writes a second after a
burst of ``burst``: the first report is written at once, a flood becomes a few writes, and
every report is still answered once the write that carries it is done::

    c = StatusCoalescer(rate=10, burst=5)
    c.add_twins("default/thermo", twins, reply, now)
    for key, pending in c.due(now):  # write each, then:
        replies = c.done(key, now, ok=True)
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pykubeedge.core.ratelimit import TokenBucket
from pykubeedge.core.twin import MsgTwin, TwinVersion, merge_sync

R = TypeVar("R")

DEFAULT_RATE = 10.0
DEFAULT_BURST = 5
MAX_ATTEMPTS = 5


@dataclass
class Pending(Generic[R]):
    twins: dict[str, MsgTwin | None] = field(default_factory=dict)
    state: tuple[str, str] | None = None  # (state, lastOnlineTime)
    replies: list[R] = field(default_factory=list)
    attempts: int = 0

    def merge(self, newer: Pending[R]) -> None:
        for name, twin in newer.twins.items():
            self.twins[name] = merge_sync(self.twins.get(name), twin) if name in self.twins \
                else twin
        if newer.state is not None:
            self.state = newer.state
        self.replies.extend(newer.replies)


def _older(new: TwinVersion | None, seen: TwinVersion | None) -> bool:
    if new is None or seen is None or new.cloud + new.edge <= 1:
        return False  # a twin created anew (an edge whose database was wiped) starts again
    return (new.cloud, new.edge) < (seen.cloud, seen.edge)


class StatusCoalescer(Generic[R]):
    def __init__(self, *, rate: float = DEFAULT_RATE, burst: int = DEFAULT_BURST,
                 max_attempts: int = MAX_ATTEMPTS, retry_after: float = 1.0) -> None:
        self.rate = rate
        self.burst = burst
        self.max_attempts = max_attempts
        self.retry_after = retry_after
        self._pending: dict[str, Pending[R]] = {}
        self._busy: dict[str, Pending[R]] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._scheduled: dict[str, float] = {}
        self._seq = 0
        # The newest versions written per device and property (expected, actual): what is
        # older never overwrites them (a resend of an old report, say).
        self._versions: dict[str, dict[str, tuple[TwinVersion | None, TwinVersion | None]]] = {}
        self.replies_waiting = 0

    def __len__(self) -> int:
        return len(self._pending) + len(self._busy)

    def add_twins(self, key: str, twins: Mapping[str, MsgTwin | None], reply: R | None,
                  now: float) -> None:
        fresh = {name: twin for name, twin in twins.items()
                 if twin is None or not self._stale(key, name, twin)}
        self._add(key, Pending(fresh, replies=[reply] if reply is not None else []), now)

    def _stale(self, key: str, name: str, twin: MsgTwin) -> bool:
        written = self._versions.get(key, {}).get(name)
        waiting = self._pending.get(key)
        queued = waiting.twins.get(name) if waiting is not None else None
        for seen in (written, (queued.expected_version, queued.actual_version) if queued
                     else None):
            if seen is not None and (_older(twin.expected_version, seen[0])
                                     or _older(twin.actual_version, seen[1])):
                return True
        return False

    def add_state(self, key: str, state: str, last_online: str, reply: R | None,
                  now: float) -> None:
        self._add(key, Pending(state=(state, last_online),
                               replies=[reply] if reply is not None else []), now)

    def _add(self, key: str, update: Pending[R], now: float) -> None:
        self.replies_waiting += len(update.replies)
        pending = self._pending.get(key)
        if pending is None:
            self._pending[key] = update
        else:
            pending.merge(update)
        if key not in self._busy:
            self._schedule(key, now)

    def _schedule(self, key: str, now: float, at: float | None = None) -> None:
        if key in self._scheduled:
            return
        if at is None:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
            at = now + bucket.reserve(now)
        self._seq += 1
        self._scheduled[key] = at
        heapq.heappush(self._heap, (at, self._seq, key))

    def due(self, now: float) -> list[tuple[str, Pending[R]]]:
        """The devices whose write may start now, with what to write: in flight until
        :meth:`done`."""
        out = []
        while self._heap and self._heap[0][0] <= now:
            at, _, key = heapq.heappop(self._heap)
            if self._scheduled.get(key) != at:
                continue
            del self._scheduled[key]
            if key in self._pending and key not in self._busy:
                pending = self._busy[key] = self._pending.pop(key)
                out.append((key, pending))
        return out

    def next_deadline(self) -> float | None:
        while self._heap and self._scheduled.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def done(self, key: str, now: float, *, ok: bool) -> list[R]:
        """The write of ``key`` ended. Returns the replies to send (empty when it failed and
        will be tried again; when it failed for good they are returned unanswerable too, so
        the caller can drop them: the edge sends again)."""
        pending = self._busy.pop(key)
        if ok:
            versions = self._versions.setdefault(key, {})
            for name, twin in pending.twins.items():
                if twin is not None:
                    old = versions.get(name, (None, None))
                    versions[name] = (twin.expected_version or old[0],
                                      twin.actual_version or old[1])
            finished = pending.replies
        else:
            pending.attempts += 1
            if pending.attempts < self.max_attempts:
                newer = self._pending.pop(key, None)
                if newer is not None:
                    pending.merge(newer)
                self._pending[key] = pending
                self._schedule(key, now, now + self.retry_after * pending.attempts)
                return []
            finished = pending.replies
        self.replies_waiting -= len(finished)
        if key in self._pending:
            self._schedule(key, now)
        return finished

    def forget(self, key: str) -> None:
        """The device is gone: nothing more to write (replies waiting are dropped)."""
        dropped = self._pending.pop(key, None)
        if dropped is not None:
            self.replies_waiting -= len(dropped.replies)
        self._scheduled.pop(key, None)
        self._versions.pop(key, None)
        self._buckets.pop(key, None)
