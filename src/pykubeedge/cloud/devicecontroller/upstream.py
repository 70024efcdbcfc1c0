"""What edge nodes report about their devices, written into DeviceStatus objects.

An edge sends ``node/<node>/device/<ns>/<name>/twin/edge_updated`` (twins) and
``.../state/update`` (state and lastOnlineTime). As upstream, each becomes a merge patch of the
DeviceStatus ``<name>`` on the main resource (its CRD has no status subresource), created with
an owner reference to the Device if missing, and each is answered with ``"OK"`` (group ``twin``,
resource ``node/<node>/twin``, parent = the report) once written. Unlike upstream:

- a node may report only for devices bound to it (``spec.nodeName``), as for pods;
- reports are coalesced per device and rate-limited (:mod:`.coalescer`);
- the first report of a property keeps its value (upstream writes "" then);
- a report that cannot be taken (unknown device, another node's, bad content) is answered with
  an ``error`` (upstream does not answer, so the edge resends it forever).

    writer = StatusWriter(kube, devices.get, statuses.get, send)
    reply = writer.report(msg)          # an immediate error reply, or None (queued)
    tg.create_task(writer.run())
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pykubeedge.beehive.clock import REAL_CLOCK, wait_event
from pykubeedge.cloud.devicecontroller.coalescer import (
    DEFAULT_BURST,
    DEFAULT_RATE,
    Pending,
    StatusCoalescer,
)
from pykubeedge.core.clock import Clock
from pykubeedge.core.constants import CloudModule, Content, MessageGroup, Operation, ResourceType
from pykubeedge.core.device import (
    DEVICE_API_VERSION,
    merge_status_twins,
    parse_edge_state,
    parse_edge_twins,
)
from pykubeedge.core.errors import Conflict, DecodeError, KubeError, NotAllowed, NotFound
from pykubeedge.core.message import Message, error_message
from pykubeedge.core.objects import name_of, namespace_of, node_name_of, spec_of, uid_of
from pykubeedge.core.resource import prefix_for_cloud, split_node_prefix
from pykubeedge.core.topics import STATE_UPDATE, TWIN_EDGE_UPDATED, parse_cloud_device_resource
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.resources import DEVICESTATUSES

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Lookup = Callable[[str], Obj | None]
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ReplyTo:
    node: str
    msg_id: str


def ok_reply(to: ReplyTo) -> Message:
    """Upstream's answer to a report: ``"OK"`` to ``node/<node>/twin``, parent = the report."""
    return Message(parent_msg_id=to.msg_id, source=CloudModule.DEVICECONTROLLER,
                   group=MessageGroup.TWIN, operation=Operation.RESPONSE,
                   resource=prefix_for_cloud(to.node, ResourceType.TWIN), content=Content.ACK_OK)


def refusal(msg: Message, node: str, reason: str) -> Message:
    reply = error_message(msg, reason, source=CloudModule.DEVICECONTROLLER,
                          group=MessageGroup.TWIN)
    reply.resource = prefix_for_cloud(node, ResourceType.TWIN)
    return reply


def device_status_for(device: Obj) -> Obj:
    """The DeviceStatus DeviceController creates for ``device`` (as upstream: same name, empty
    spec and status, a controller owner reference, so Kubernetes deletes it with the Device)."""
    name = name_of(device)
    return {"apiVersion": DEVICE_API_VERSION, "kind": "DeviceStatus",
            "metadata": {"name": name, "namespace": namespace_of(device),
                         "ownerReferences": [{
                             "apiVersion": DEVICE_API_VERSION, "kind": "Device",
                             "name": name, "uid": uid_of(device), "controller": True,
                             "blockOwnerDeletion": True}]},
            "spec": {}, "status": {}}


def spec_property_names(device: Obj) -> list[str]:
    """The names of ``spec.properties``.

    >>> spec_property_names({"spec": {"properties": [{"name": "temp"}, {"type": "INT"}]}})
    ['temp']
    """
    props = spec_of(device).get("properties")
    return [p["name"] for p in (props if isinstance(props, list) else ())
            if isinstance(p, dict) and isinstance(p.get("name"), str)]


class StatusWriter:
    """Takes the edges' reports (:meth:`report`) and writes them (:meth:`run`), on ``clock``."""

    def __init__(self, kube: KubeClient, device_of: Lookup, status_of: Lookup, send: Send, *,
                 workers: int = 1, rate: float = DEFAULT_RATE, burst: int = DEFAULT_BURST,
                 max_waiting: int = 2048, clock: Clock = REAL_CLOCK) -> None:
        self.kube = kube
        self.device_of = device_of
        self.status_of = status_of
        self.send = send
        self.workers = workers
        self.max_waiting = max_waiting
        self.clock = clock
        self.coalescer: StatusCoalescer[ReplyTo] = StatusCoalescer(rate=rate, burst=burst)
        self._twins: dict[str, list[Obj]] = {}  # what we last wrote, per device
        self._wake = asyncio.Event()
        self._jobs: asyncio.Queue[tuple[str, Pending[ReplyTo]]] = asyncio.Queue()
        self.patches = 0
        self.refused = 0

    # -- reports --------------------------------------------------------------------------

    def report(self, msg: Message) -> Message | None:
        """Take a report from an edge; an error reply for the edge, or None when queued."""
        try:
            node, rest = split_node_prefix(msg.resource)
            key, what = parse_cloud_device_resource(rest)
        except DecodeError as exc:
            log.warning("bad device report (not node/<node>/device/<namespace>/<name>/...): "
                        "%s", exc)
            return None  # no node to answer to
        try:
            device = self.device_of(key)
            if device is None:
                raise NotAllowed(f"device {key} does not exist")
            bound = node_name_of(device)
            if bound != node:
                raise NotAllowed(f"node {node} may not report for device {key}, which is "
                                 f"bound to {bound or 'no node'}")
            if self.coalescer.replies_waiting >= self.max_waiting:
                log.warning("%d device reports wait for the API server; not taking one from "
                            "node %s now (it sends it again)", self.max_waiting, node)
                return None
            reply, now = ReplyTo(node, msg.msg_id), self.clock.monotonic()
            if what == TWIN_EDGE_UPDATED:
                self.coalescer.add_twins(key, parse_edge_twins(msg.content), reply, now)
            elif what == STATE_UPDATE:
                state = parse_edge_state(msg.content)
                self.coalescer.add_state(key, state.state, state.last_online, reply, now)
            else:
                raise DecodeError(f"unknown device report {what!r}")
        except (NotAllowed, DecodeError) as exc:
            self.refused += 1
            log.warning("refused a report from node %s: %s", node, exc)
            return refusal(msg, node, str(exc))
        self._wake.set()
        return None

    def forget(self, key: str) -> None:
        self.coalescer.forget(key)
        self._twins.pop(key, None)

    # -- writing -----------------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for i in range(self.workers):
                tg.create_task(self._worker(), name=f"devicestatus-writer-{i}")
            while True:
                self._wake.clear()
                for job in self.coalescer.due(self.clock.monotonic()):
                    self._jobs.put_nowait(job)
                await wait_event(self.clock, self._wake, self.coalescer.next_deadline())

    async def _worker(self) -> None:
        while True:
            key, pending = await self._jobs.get()
            try:
                ok = await self.write(key, pending)
            except Exception:
                log.exception("writing the DeviceStatus of %s failed", key)
                ok = False
            replies = self.coalescer.done(key, self.clock.monotonic(), ok=ok)
            self._wake.set()
            if not ok:
                if replies:
                    log.error("giving up on the DeviceStatus of %s for now; its %d report(s) "
                              "are not answered (the edge sends them again)", key, len(replies))
                continue
            for to in replies:
                try:
                    await self.send(ok_reply(to))
                except Exception as exc:  # (the hive is closing) never silently
                    log.warning("the answer to node %s's report %s was not sent: %r", to.node,
                                to.msg_id, exc)

    async def write(self, key: str, pending: Pending[ReplyTo]) -> bool:
        """One merge patch of the DeviceStatus; False when it should be tried again."""
        device = self.device_of(key)
        if device is None:
            return True  # deleted meanwhile: nothing to write, and the reports are done
        status: Obj = {}
        if pending.twins:
            base = self._twins.get(key)
            if base is None:
                known = self.status_of(key) or {}
                base = list((known.get("status") or {}).get("twins") or [])
            status["twins"] = merge_status_twins(base, pending.twins,
                                                 spec_property_names(device))
        if pending.state is not None:
            state, last_online = pending.state
            status["state"] = state
            if last_online:  # as upstream (omitempty): an offline report keeps the last one
                status["lastOnlineTime"] = last_online
        if not status:
            return True
        ns, name = key.split("/", 1)
        try:
            try:
                written = await self._patch(ns, name, status)
            except NotFound:
                await self.ensure_status(device)
                written = await self._patch(ns, name, status)
        except KubeError as exc:
            log.warning("patching DeviceStatus %s failed: %s", key, exc)
            return False
        self.patches += 1
        if "twins" in status:
            self._twins[key] = list((written.get("status") or {}).get("twins") or
                                    status["twins"])
        return True

    async def _patch(self, ns: str, name: str, status: Obj) -> Obj:
        return await self.kube.patch(DEVICESTATUSES, name, {"status": status}, namespace=ns,
                                     patch_type="merge")

    async def ensure_status(self, device: Obj) -> None:
        """Create the Device's DeviceStatus unless it exists (upstream
        ``getOrCreateDeviceStatusForDevice``)."""
        key = f"{namespace_of(device)}/{name_of(device)}"
        if self.status_of(key) is not None:
            return
        with contextlib.suppress(Conflict):
            await self.kube.create(DEVICESTATUSES, device_status_for(device))
            log.info("created DeviceStatus %s", key)
