"""Edged's node status manager (kubelet's ``kubelet_node_status.go``): registers the Node,
then patches its status when something changed, when the last patch did not go through, and
every ``report_frequency`` regardless, checking every ``update_frequency``::

    status = NodeStatus(state, host_probe=probe, kubelet_version="v1.37.2-...",
                        node_labels={"site": "lab"}, max_pods=110, kubelet_port=10350,
                        update_frequency=10, report_frequency=300)
    await status.register()
    task_group.create_task(status.run())
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from pykubeedge.core.backoff import Backoff
from pykubeedge.core.constants import NULL_NAMESPACE, Operation, ResourceType
from pykubeedge.core.objects import metadata_of, uid_of
from pykubeedge.core.resource import build_edge
from pykubeedge.edge.edged.metaclient import MetaRequestError, list_items, object_resp
from pykubeedge.edge.edged.node import (
    HostInfo,
    NodeConditions,
    node_labels,
    node_object,
    node_status,
    pressure_signals,
    refresh_conditions,
    status_without_heartbeats,
)
from pykubeedge.edge.edged.runtime import ContainerRuntimeError
from pykubeedge.edge.edged.state import EdgedState

log = logging.getLogger(__name__)


class NodeStatus:
    def __init__(self, state: EdgedState, *, host_probe: Callable[[], Awaitable[HostInfo]],
                 kubelet_version: str, node_labels: Mapping[str, str], max_pods: int,
                 kubelet_port: int, update_frequency: float, report_frequency: float) -> None:
        self.s = state
        self._probe = host_probe
        self.kubelet_version = kubelet_version
        self.node_labels = dict(node_labels)
        self.max_pods = max_pods
        self.kubelet_port = kubelet_port
        self.update_frequency = update_frequency
        self.report_frequency = report_frequency
        self.node_uid = ""
        self.registered = asyncio.Event()
        self._conditions = NodeConditions()
        self._last_status: dict[str, Any] | None = None
        self._last_report = 0.0
        self._force = False
        self._kick = asyncio.Event()
        self._pressure_seen: dict[str, float] = {}

    def force_update(self) -> None:
        """Patch the status at once and whatever it says (e.g. back in touch with the cloud:
        the node may have been marked NotReady meanwhile)."""
        self._force = True
        self._kick.set()

    def _build_status(self, runtime_error: str, now: float) -> tuple[dict[str, Any], bool]:
        assert self.s.host is not None
        events = refresh_conditions(self._conditions, runtime_error=runtime_error, now=now,
                                    pressure=pressure_signals(self.s.host),
                                    last_pressure=self._pressure_seen)
        changed = bool(events)
        if self.s.has_recorder:
            for event in events:  # kubelet's recordNodeStatusEvent
                self.s.recorder.node("Normal", event,
                                     f"Node {self.s.node_name} status is now: {event}")
        status = node_status(
            self.s.host,
            conditions=self._conditions.render(heartbeat=now),
            runtime_version=str(self.s.runtime_version),
            kubelet_version=self.kubelet_version,
            max_pods=self.max_pods,
            kubelet_port=self.kubelet_port,
        )
        return status, changed

    def node(self) -> dict[str, Any]:
        """The Node object Edged registers (labels, addresses, capacity, nodeInfo, conditions)."""
        assert self.s.host is not None
        status, _ = self._build_status(self.s.runtime_error, self.s.clock())
        labels = node_labels(self.s.node_name, self.s.host, self.node_labels)
        return node_object(self.s.node_name, labels, status)

    async def register(self) -> None:
        """Create the Node; retried with back-off while MetaManager answers ``error``.

        A Node that already exists (edgecore restarted, or the answer to the first create
        was lost) counts as registered, once its labels are ours: kubelet reconciles them the
        same way. Upstream's cloudcore creates a Node in two steps (create without the
        ``kubernetes.io`` labels, then patch them on), so a cloudcore that stops between the
        two leaves a Node without its role labels, and only the edge can mend that.
        """
        backoff = Backoff(initial=0.1, cap=self.s.backoff_cap)
        resource = build_edge(NULL_NAMESPACE, ResourceType.NODE, self.s.node_name)
        while True:
            node = self.node()
            try:
                content = await self.s.meta.request(Operation.INSERT, resource, node)
                created, err = object_resp(content)
                if err and not _already_exists(err):
                    raise MetaRequestError(err)
                if created is None:
                    created = await self._existing(node)
                break
            except MetaRequestError as exc:
                if _already_exists(str(exc)):
                    created = await self._existing(node)
                    break
                delay = backoff.next_delay(self.s.jitter)
                log.warning("edged: node %s not registered (%s); retry in %.2g s",
                            self.s.node_name, exc, delay)
                await self.s.sleep(delay)
        self.node_uid = uid_of(created)
        self._last_status = status_without_heartbeats(node["status"])
        self._last_report = self.s.clock()
        log.info("edged: node %s registered (uid %s)", self.s.node_name, self.node_uid or "?")
        self.registered.set()

    async def _existing(self, node: Mapping[str, Any]) -> dict[str, Any] | None:
        """The Node that was already there, its labels made ours (an ``update`` of the
        node, which upstream's cloudcore merges into the Node's labels and answers OK)."""
        existing = await self._query_node()
        have = metadata_of(existing).get("labels")
        have = have if isinstance(have, Mapping) else {}
        want = dict(metadata_of(node).get("labels") or {})
        missing = {k: v for k, v in want.items() if have.get(k) != v}
        if not missing:
            return existing
        log.info("edged: node %s exists without labels %s; adding them", self.s.node_name,
                 ", ".join(sorted(missing)))
        resource = build_edge(NULL_NAMESPACE, ResourceType.NODE, self.s.node_name)
        update = {"metadata": {"name": self.s.node_name, "labels": want}}
        try:
            await self.s.meta.request(Operation.UPDATE, resource, update)
        except MetaRequestError as exc:
            log.warning("edged: labels of node %s not updated: %s", self.s.node_name, exc)
        return existing

    async def _query_node(self) -> dict[str, Any] | None:
        """The existing Node (re-registration after a restart), to learn its UID."""
        resource = build_edge(NULL_NAMESPACE, ResourceType.NODE, self.s.node_name)
        try:
            content = await self.s.meta.request(Operation.QUERY, resource)
        except MetaRequestError as exc:
            log.info("edged: node %s not found locally: %s", self.s.node_name, exc)
            return None
        items = list_items(content)
        return items[0] if items else object_resp(content)[0]

    async def run(self) -> None:
        """Patch the status every ``update_frequency`` (sooner when kicked), once registered."""
        await self.registered.wait()
        while True:
            await self._wait_kick(self._kick, self.update_frequency)
            await self.sync_node_status()

    async def _wait_kick(self, event: asyncio.Event, delay: float) -> None:
        if event.is_set():
            event.clear()
            return
        waiter = asyncio.ensure_future(event.wait())
        sleeper = asyncio.ensure_future(self.s.sleep(delay))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()
        event.clear()

    async def sync_node_status(self) -> bool:
        """Patch the node status if it changed, if the last patch failed or was only queued,
        or if ``node_status_report_frequency`` has passed; True when a patch was sent."""
        runtime_error = ""
        try:
            await self.s.runtime.status()
            self.s.runtime_version = await self.s.runtime.version()
        except ContainerRuntimeError as exc:
            runtime_error = str(exc)
        self.s.runtime_error = runtime_error
        try:
            self.s.host = await self._probe()
        except Exception:
            log.exception("edged: host probe failed; keeping the last facts")
        now = self.s.clock()
        status, changed = self._build_status(runtime_error, now)
        stripped = status_without_heartbeats(status)
        due = now - self._last_report >= self.report_frequency
        if not (changed or due or self._force or stripped != self._last_status):
            return False
        resource = build_edge(NULL_NAMESPACE, ResourceType.NODE_PATCH, self.s.node_name)
        patch = orjson.dumps({"status": status}).decode()
        try:
            content = await self.s.meta.request(Operation.PATCH, resource, patch)
        except MetaRequestError as exc:
            log.warning("edged: node status not reported: %s", exc)
            self._force = True
            return True
        obj, err = object_resp(content)
        if err:
            log.warning("edged: node status patch refused: %s", err)
        # A bare "OK" means MetaManager queued it offline; the lease tells us when we are back
        # (renew_lease then forces a fresh patch), so offline ticks do not fill the outbox.
        self._force = bool(err)
        if obj is not None and not self.node_uid:
            self.node_uid = uid_of(obj)
        self._last_status = stripped
        self._last_report = now
        return True


def _already_exists(error: str) -> bool:
    """The API server's AlreadyExists, as the cloud's answer or MetaManager's error text."""
    return "already exists" in error.lower()
