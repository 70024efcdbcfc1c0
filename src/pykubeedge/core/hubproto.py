"""The hub protocol's bookkeeping, sans IO: which messages need an ACK, the per-node outbound
queue with its supersede rule, resends and requeues, and the keepalive deadline.

Time is always passed in (``now``, monotonic seconds), so every rule is tested without sleeping.
The CloudHub session does the IO:

    q = NodeQueue()
    q.push(msg, now)                    # from the controllers
    while (m := q.next(now)) is not None:
        write(m)                        # to the edge
    q.ack(parent_msg_id, now)           # the edge's response "OK"
    for m in q.due(now): write(m)       # resends (every 5 s, 4 times), then requeue with backoff

Where upstream keeps at most one un-ACKed message per node, this queue pipelines up to
``window`` of them (one per object at a time, so per-object order holds), and it survives a
disconnect: ``requeue_inflight`` puts what was in flight back in front of the queue.
"""

from __future__ import annotations

import enum
import heapq
import logging
from collections import OrderedDict, deque
from dataclasses import dataclass

from pykubeedge.core.constants import Operation
from pykubeedge.core.message import Message
from pykubeedge.core.objects import uid_of
from pykubeedge.core.resource import resource_type_of

log = logging.getLogger(__name__)

RESEND_INTERVAL_S = 5.0
MAX_RESENDS = 4
REQUEUE_BASE_S = 1.0
REQUEUE_CAP_S = 300.0
DEFAULT_WINDOW = 256
DEFAULT_NOACK_LIMIT = 4096

_NOACK_RESOURCE_PARTS = ("podlist", "membership", "twin/cloud_updated", "serviceaccounttoken",
                         "k8s/ca.crt")
_VOLUME_OPS = frozenset({"createvolume", "deletevolume", "controllerpublishvolume",
                         "controllerunpublishvolume"})
_NOACK_SOURCES = frozenset({"taskmanager", "nodeupgradejobcontroller"})
_EDGECONTROLLER_NOACK_TYPES = frozenset({"lease", "nodepatch", "podpatch", "podstatus",
                                         "certificatesigningrequest"})


def needs_ack(msg: Message) -> bool:
    """Whether the cloud waits for the edge's ACK of ``msg`` (upstream ``noAckRequired``, negated).

    >>> needs_ack(Message(source="edgecontroller", group="resource", operation="insert",
    ...                   resource="node/e1/default/pod/nginx"))
    True
    """
    res = msg.resource
    if any(part in res for part in _NOACK_RESOURCE_PARTS):
        return False
    if msg.operation in _VOLUME_OPS or msg.operation == Operation.APPLICATION_RESPONSE:
        return False
    if msg.group == "user" or msg.source in _NOACK_SOURCES:
        return False
    if msg.operation in (Operation.RESPONSE, Operation.ERROR):
        return False  # responses ("OK" or an error or an object) are never ACKed
    if msg.source == "edgecontroller":
        rtype = resource_type_of(res)
        if rtype == "node" and msg.operation != Operation.UPDATE:
            return False
        if rtype in _EDGECONTROLLER_NOACK_TYPES:
            return False
    return True


def object_uid(msg: Message) -> str | None:
    """The UID of the Kubernetes object in ``msg.content`` (the ACK queue's key), if any."""
    return uid_of(msg.content) or None


def rv_newer(new: str, old: str) -> bool:
    """``new`` is a later resourceVersion than ``old``.

    Numeric versions compare as integers (etcd revisions). A non-numeric one cannot be ordered;
    we treat a *different* value as newer instead of failing (upstream panics here).
    """
    if new.isdigit() and old.isdigit():
        return int(new) > int(old)
    return new != old


class Pushed(enum.Enum):
    QUEUED = "queued"  # new key, or replaced a pending older version
    DROPPED_STALE = "dropped-stale"  # not newer than what is pending or in flight
    DROPPED_NO_VERSION = "dropped-no-version"  # an ACK message needs a resourceVersion
    DROPPED_FULL = "dropped-full"  # a bounded queue was full


@dataclass(slots=True)
class _InFlight:
    msg: Message
    key: str  # the object's UID (or its resource when it has none)
    sends: int
    deadline: float


class NodeQueue:
    """The outbound queue of one edge node."""

    __slots__ = ("_delay_heap", "_delayed", "_failures", "_held", "_held_seq", "_inflight",
                 "_inflight_by_key", "_noack", "_pending", "dropped", "max_pending",
                 "max_resends", "noack_limit", "resend_interval", "window")

    def __init__(self, *, window: int = DEFAULT_WINDOW, resend_interval: float = RESEND_INTERVAL_S,
                 max_resends: int = MAX_RESENDS, noack_limit: int = DEFAULT_NOACK_LIMIT,
                 max_pending: int = 100_000) -> None:
        self.window = window
        self.resend_interval = resend_interval
        self.max_resends = max_resends
        self.noack_limit = noack_limit
        self.max_pending = max_pending
        # Insertion-ordered: FIFO across objects; replacing a pending key keeps its place.
        self._pending: OrderedDict[str, Message] = OrderedDict()
        self._noack: deque[Message] | None = None  # created on first use: most nodes get none
        # In send order, every resend moving its entry to the end. Only the first entry's
        # deadline is live (see ``ack``): the ones behind it are not due before it is.
        self._inflight: OrderedDict[str, _InFlight] = OrderedDict()
        self._inflight_by_key: dict[str, str] = {}
        # Requeued after max_resends: held back (out of _pending, so next() never scans them)
        # until their backoff ends; a heap finds the next one due.
        self._held: dict[str, Message] = {}
        self._delayed: dict[str, float] = {}  # key -> not before
        self._delay_heap: list[tuple[float, int, str]] = []  # (not before, order, key)
        self._held_seq = 0
        self._failures: dict[str, int] = {}
        self.dropped = 0

    def __len__(self) -> int:
        return (len(self._pending) + len(self._held) + len(self._noack or ())
                + len(self._inflight))

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def push(self, msg: Message, now: float) -> Pushed:
        """Queue ``msg`` for the node, applying the supersede rule to ACK messages."""
        if not needs_ack(msg):
            if self._noack is None:
                self._noack = deque()
            if len(self._noack) >= self.noack_limit:
                self.dropped += 1
                return Pushed.DROPPED_FULL
            self._noack.append(msg)
            return Pushed.QUEUED
        key = object_uid(msg) or msg.resource
        is_delete = msg.operation == Operation.DELETE
        if not msg.resourceversion and not is_delete:
            self.dropped += 1
            return Pushed.DROPPED_NO_VERSION
        for known in (self._pending.get(key), self._held.get(key), self._inflight_msg(key)):
            if known is None:
                continue
            if is_delete:
                if known.operation == Operation.DELETE:
                    return Pushed.DROPPED_STALE  # that delete is on its way already
            elif not _supersedes(msg, known):
                return Pushed.DROPPED_STALE
        if key in self._held:  # newer, but the edge's backoff for this object still holds
            self._held[key] = msg
            return Pushed.QUEUED
        if key not in self._pending and len(self._pending) >= self.max_pending:
            self.dropped += 1
            return Pushed.DROPPED_FULL
        self._pending[key] = msg
        return Pushed.QUEUED

    def _inflight_msg(self, key: str) -> Message | None:
        msg_id = self._inflight_by_key.get(key)
        return self._inflight[msg_id].msg if msg_id else None

    def next(self, now: float) -> Message | None:
        """The next message to write now, or None. ACK messages become in-flight."""
        if self._noack:
            return self._noack.popleft()
        if len(self._inflight) >= self.window:
            return None
        self._release_due(now)
        for key, msg in self._pending.items():
            if key in self._inflight_by_key:
                continue  # one version of an object on the wire at a time
            del self._pending[key]
            self._track(msg, key, 1, now)
            return msg
        return None

    def _release_due(self, now: float) -> None:
        heap = self._delay_heap
        released: list[tuple[str, Message]] = []
        while heap and heap[0][0] <= now:
            when, _, key = heapq.heappop(heap)
            if self._delayed.get(key) != when:
                continue  # stale heap entry
            del self._delayed[key]
            released.append((key, self._held.pop(key)))
        for key, msg in reversed(released):  # to the front, in the order they were held
            if key not in self._pending:
                self._pending[key] = msg
                self._pending.move_to_end(key, last=False)

    def _track(self, msg: Message, key: str, sends: int, now: float) -> None:
        self._inflight[msg.msg_id] = _InFlight(msg, key, sends, now + self.resend_interval)
        self._inflight_by_key[key] = msg.msg_id

    def ack(self, parent_msg_id: str, now: float) -> Message | None:
        """The edge ACKed ``parent_msg_id``: return the ACKed message (None if unknown)."""
        inflight = self._inflight
        was_first = bool(inflight) and next(iter(inflight)) == parent_msg_id
        entry = inflight.pop(parent_msg_id, None)
        if entry is None:
            return None
        self._inflight_by_key.pop(entry.key, None)
        self._failures.pop(entry.key, None)
        if was_first and inflight:
            head = next(iter(inflight.values()))
            # The oldest un-ACKed message was ACKed: the edge is making progress, and it works
            # through a connection in order, so the next one's wait for an ACK starts now. With
            # a window of one (upstream) this changes nothing; with a deep window it keeps
            # messages that merely queue behind others at a slow edge from being resent.
            head.deadline = max(head.deadline, now + self.resend_interval)
        return entry.msg

    def due(self, now: float) -> list[Message]:
        """Messages to write again now; those resent ``max_resends`` times are requeued with
        backoff instead (the edge may be slow or the message lost; it is never dropped)."""
        resend: list[Message] = []
        while self._inflight:
            msg_id, entry = next(iter(self._inflight.items()))
            if entry.deadline > now:
                break
            del self._inflight[msg_id]
            if entry.sends <= self.max_resends:
                entry.sends += 1
                entry.deadline = now + self.resend_interval
                self._inflight[msg_id] = entry
                resend.append(entry.msg)
                continue
            self._requeue(entry, now)
        return resend

    def _requeue(self, entry: _InFlight, now: float) -> None:
        key = entry.key
        self._inflight_by_key.pop(key, None)
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = min(REQUEUE_CAP_S, REQUEUE_BASE_S * 2 ** min(failures - 1, 30))
        log.info("no ACK for %s after %d sends; requeued in %.0fs", entry.msg.resource,
                 entry.sends, delay)
        # A newer version waiting already wins; either way it waits out the backoff.
        self._held[key] = self._pending.pop(key, entry.msg)
        self._delayed[key] = now + delay
        self._held_seq += 1
        heapq.heappush(self._delay_heap, (now + delay, self._held_seq, key))

    def next_deadline(self) -> float | None:
        """When ``due`` or a delayed requeue next has work (for the IO loop's sleep)."""
        heap = self._delay_heap
        while heap and self._delayed.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)  # stale
        times = [heap[0][0]] if heap else []
        if self._inflight:
            times.append(next(iter(self._inflight.values())).deadline)
        return min(times) if times else None

    def requeue_inflight(self) -> int:
        """The connection is gone: everything un-ACKed goes back in front, to send first on
        the next connection. Returns how many messages were put back."""
        entries = list(self._inflight.values())
        self._inflight.clear()
        self._inflight_by_key.clear()
        for entry in reversed(entries):
            if entry.key not in self._pending:
                self._pending[entry.key] = entry.msg
                self._pending.move_to_end(entry.key, last=False)
        # A new connection: what was held back for a slow edge may go again at once.
        for key, msg in self._held.items():
            if key not in self._pending:
                self._pending[key] = msg
                self._pending.move_to_end(key, last=False)
        self._held.clear()
        self._delayed.clear()
        self._delay_heap.clear()
        return len(entries)


def _supersedes(new: Message, old: Message) -> bool:
    if old.operation == Operation.DELETE:
        return False  # nothing newer than a delete of the same UID
    return rv_newer(new.resourceversion, old.resourceversion)


class KeepaliveDeadline:
    """The cloud ends a session when no keepalive came within ``interval`` seconds.

    >>> k = KeepaliveDeadline(30, now=0)
    >>> k.expired(29.9), k.expired(30.1)
    (False, True)
    """

    __slots__ = ("deadline", "interval")

    def __init__(self, interval: float, now: float) -> None:
        self.interval = interval
        self.deadline = now + interval

    def keepalive(self, now: float) -> None:
        self.deadline = now + self.interval

    def expired(self, now: float) -> bool:
        return now > self.deadline
