"""Edged's event recorder (client-go's ``record`` package as kubelet uses it): Events about pods
and the node, deduplicated, aggregated and rate-limited as client-go's correlator does, then
sent to MetaManager as upstream edged sends them (``<ns>/event/<name>``, ``insert`` for a new
Event, ``patch`` with ``{"event", "patchData"}`` for a repeat; fire and forget)::

    recorder = EventRecorder(send, node_name="edge-1", clock=time.time)
    recorder.pod(pod, "Normal", "Pulled", 'Container image "busybox" already present on machine',
                 field_path="spec.containers{app}")
    task_group.create_task(recorder.run())

Every call returns at once: events queue (bounded, 1000 as client-go's broadcaster) and a
task sends them. Events over a limit are dropped, as client-go drops them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from pykubeedge.core.clock import TimeSource
from pykubeedge.core.constants import Operation, ResourceType
from pykubeedge.core.objects import DEFAULT_NAMESPACE, name_of, namespace_of, uid_of
from pykubeedge.core.ratelimit import TokenBucket
from pykubeedge.core.resource import build_edge
from pykubeedge.edge.edged.timefmt import rfc3339

log = logging.getLogger(__name__)

NORMAL: Final = "Normal"
WARNING: Final = "Warning"
COMPONENT: Final = "kubelet"

QUEUE_SIZE: Final = 1000
CACHE_SIZE: Final = 4096  # client-go's maxLruCacheEntries
SPAM_BURST: Final = 25
SPAM_QPS: Final = 1 / 300
AGGREGATE_MAX: Final = 10
AGGREGATE_INTERVAL: Final = 600.0
COMBINED_PREFIX: Final = "(combined from similar events): "
SEND_QPS: Final = 50.0  # edged's eventRecordQPS / eventBurst
SEND_BURST: Final = 100

Send = Callable[[str, str, Any], Awaitable[None]]
"""``send(operation, resource, content)``: hand one message to MetaManager."""


@dataclass(slots=True)
class _Seen:
    name: str
    count: int
    first: str
    last_update: float


class _SpamBucket:
    """client-go's spam filter: ``SPAM_BURST`` events, then one per 300 s; no debt."""

    __slots__ = ("_last", "_tokens")

    def __init__(self, now: float) -> None:
        self._tokens = float(SPAM_BURST)
        self._last = now

    def try_take(self, now: float) -> bool:
        self._tokens = min(SPAM_BURST, self._tokens + (now - self._last) * SPAM_QPS)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


@dataclass(slots=True)
class _Aggregate:
    messages: set[str]
    first: float


def pod_reference(pod: Mapping[str, Any], field_path: str = "") -> dict[str, Any]:
    """The ``involvedObject`` of a pod (or one of its containers, by ``field_path``).

    >>> ref = pod_reference({"metadata": {"name": "web", "namespace": "ns", "uid": "u"}},
    ...                     "spec.containers{app}")
    >>> ref["kind"], ref["uid"], ref["fieldPath"]
    ('Pod', 'u', 'spec.containers{app}')
    """
    meta = pod.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    ref: dict[str, Any] = {
        "kind": "Pod", "namespace": namespace_of(pod), "name": name_of(pod), "uid": uid_of(pod),
        "apiVersion": "v1",
    }
    if meta.get("resourceVersion"):
        ref["resourceVersion"] = str(meta["resourceVersion"])
    if field_path:
        ref["fieldPath"] = field_path
    return ref


class EventRecorder:
    """Records Events; see the module docstring."""

    def __init__(self, send: Send, *, node_name: str, clock: TimeSource,
                 enabled: bool = True, queue_size: int = QUEUE_SIZE) -> None:
        self._send = send
        self.node_name = node_name
        self._clock = clock
        self.enabled = enabled
        self._queue: asyncio.Queue[tuple[str, str, Any]] = asyncio.Queue(queue_size)
        self._seen: OrderedDict[tuple[Any, ...], _Seen] = OrderedDict()
        self._aggregates: OrderedDict[tuple[Any, ...], _Aggregate] = OrderedDict()
        self._spam: OrderedDict[tuple[Any, ...], _SpamBucket] = OrderedDict()
        self._sender = TokenBucket(SEND_QPS, SEND_BURST, clock())
        self.recorded: list[dict[str, Any]] = []
        """The last events made (newest last, bounded): for tests and debugging."""
        self.dropped = 0

    # -- what Edged calls --------------------------------------------------------------------

    def pod(self, pod: Mapping[str, Any], kind: str, reason: str, message: str, *,
            field_path: str = "") -> None:
        """An event about ``pod`` (its container at ``field_path``, if given)."""
        self.record(pod_reference(pod, field_path), kind, reason, message)

    def node(self, kind: str, reason: str, message: str) -> None:
        """An event about this node (uid = the node name, namespace ``default``: kubelet's)."""
        ref = {"kind": "Node", "name": self.node_name, "uid": self.node_name,
               "namespace": ""}
        self.record(ref, kind, reason, message)

    def record(self, ref: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        """Correlate, rate-limit and queue one event (never blocks, never raises)."""
        if not self.enabled:
            return
        try:
            self._record(dict(ref), kind, reason, message)
        except Exception:
            log.exception("edged: event %s %s not recorded", reason, ref.get("name"))

    # -- the correlator ----------------------------------------------------------------------

    def _record(self, ref: dict[str, Any], kind: str, reason: str, message: str) -> None:
        now = self._clock()
        obj = (ref.get("kind"), ref.get("namespace"), ref.get("name"), ref.get("uid"),
               ref.get("apiVersion"))
        spam_key = (*obj, kind)
        bucket = self._spam.get(spam_key)
        if bucket is None:
            bucket = _SpamBucket(now)
        _remember(self._spam, spam_key, bucket)
        message = self._aggregate((*obj, kind, reason), message, now)
        if not bucket.try_take(now):
            self.dropped += 1
            return
        namespace = str(ref.get("namespace") or DEFAULT_NAMESPACE)
        stamp = rfc3339(now)
        key = (*obj, ref.get("fieldPath"), kind, reason, message)
        seen = self._seen.get(key)
        if seen is None:
            seen = _Seen(f"{ref.get('name')}.{int(now * 1e9):x}", 1, stamp, now)
        else:
            seen.count += 1
            seen.last_update = now
        _remember(self._seen, key, seen)
        event: dict[str, Any] = {
            "metadata": {"name": seen.name, "namespace": namespace},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "source": {"component": COMPONENT, "host": self.node_name},
            "firstTimestamp": seen.first,
            "lastTimestamp": stamp,
            "count": seen.count,
            "type": kind,
            "eventTime": None,
            "reportingComponent": COMPONENT,
            "reportingInstance": self.node_name,
        }
        self.recorded.append(event)
        del self.recorded[:-256]
        resource = build_edge(namespace, ResourceType.EVENT, seen.name)
        if seen.count == 1:
            item: tuple[str, str, Any] = (Operation.INSERT, resource, event)
        else:
            patch = {"count": seen.count, "lastTimestamp": stamp, "message": message}
            item = (Operation.PATCH, resource,
                    {"event": event, "patchData": orjson.dumps(patch).decode()})
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("edged: event queue full; %s %s dropped", reason, ref.get("name"))

    def _aggregate(self, key: tuple[Any, ...], message: str, now: float) -> str:
        entry = self._aggregates.get(key)
        if entry is None or now - entry.first > AGGREGATE_INTERVAL:
            entry = _Aggregate(set(), now)
        _remember(self._aggregates, key, entry)
        if message in entry.messages or len(entry.messages) < AGGREGATE_MAX:
            entry.messages.add(message)
            return message
        return COMBINED_PREFIX + message

    # -- sending -----------------------------------------------------------------------------

    async def run(self, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """Send queued events until cancelled, at most ``eventRecordQPS`` a second."""
        while True:
            operation, resource, content = await self._queue.get()
            wait = self._sender.reserve(self._clock())
            if wait > 0:
                await sleep(wait)
            try:
                await self._send(operation, resource, content)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("edged: event %s not sent: %s", resource, exc)


def _remember(cache: OrderedDict[tuple[Any, ...], Any], key: tuple[Any, ...],
              value: Any) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > CACHE_SIZE:
        cache.popitem(last=False)
