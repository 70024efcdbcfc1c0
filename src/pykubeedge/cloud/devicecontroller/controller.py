"""DeviceController: the cloudcore module ``devicecontroller`` (upstream
``cloud/pkg/devicecontroller``).

Downstream, informers on Devices and DeviceModels turn changes into messages for the node in
``spec.nodeName``: membership (added/removed), then the DeviceModel (when the node needs it),
then the Device. A device moved to another node is removed from the old one (membership,
Device delete, and the model if no other device there uses it) and added to the new one.
Device and DeviceModel messages go through SyncController's records (ACK, resend, no resend of
what a node already has), as pods do; membership is sent again whenever a node is reconciled,
which is when cloudcore starts and when a node asks for its membership detail (every edgecore
connect), so nothing is lost with a connection.

Unlike upstream (PROJECT): a DeviceModel change reaches the nodes that use it; a DeviceStatus is
created for every Device; edges' reports are coalesced, rate-limited and checked against the
reporting node (:mod:`.upstream`).

    dc = DeviceController(kube, sync)    # sync: the ObjectSync records (SyncController)
    hive.add_module(dc)
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from pykubeedge.beehive import BeehiveContext, RestartPolicy, RestartType
from pykubeedge.beehive.clock import REAL_CLOCK
from pykubeedge.cloud.common.objectsync import DEVICECONTROLLER_KINDS, SyncRecords
from pykubeedge.cloud.devicecontroller.downstream import (
    gone_object,
    membership_message,
    model_key,
    object_message,
)
from pykubeedge.cloud.devicecontroller.upstream import StatusWriter
from pykubeedge.core.clock import Clock
from pykubeedge.core.constants import CloudGroup, CloudModule, Operation, ResourceType
from pykubeedge.core.errors import DecodeError, KubeError
from pykubeedge.core.hubproto import needs_ack
from pykubeedge.core.message import Message
from pykubeedge.core.objects import node_name_of, uid_of
from pykubeedge.core.resource import split_node_prefix
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.informer import ADDED, DELETED, Informer, InformerEvent, object_key
from pykubeedge.kube.resources import DEVICEMODELS, DEVICES, DEVICESTATUSES

log = logging.getLogger(__name__)

Obj = dict[str, Any]
DEVICE, MODEL = ResourceType.DEVICE, ResourceType.DEVICE_MODEL
MEMBERSHIP_DETAIL = f"{ResourceType.MEMBERSHIP}/detail"


class DeviceController:
    name = CloudModule.DEVICECONTROLLER
    group = CloudGroup.DEVICECONTROLLER
    restart_policy = RestartPolicy(RestartType.ON_FAILURE, retries=0)

    def __init__(self, kube: KubeClient, sync: SyncRecords, *, status_workers: int = 1,
                 max_waiting: int = 2048, rate: float = 10.0, burst: int = 5,
                 clock: Clock = REAL_CLOCK) -> None:
        self.kube = kube
        self.sync = sync
        self.clock = clock
        sleep = clock.sleep
        self.devices = Informer(kube, DEVICES, self._on_device, sleep=sleep)
        self.models = Informer(kube, DEVICEMODELS, self._on_model, sleep=sleep)
        self.statuses = Informer(kube, DEVICESTATUSES, self._on_status, sleep=sleep)
        self.writer = StatusWriter(kube, self.devices.get, self.statuses.get, self._to_hub,
                                   workers=status_workers, rate=rate, burst=burst,
                                   max_waiting=max_waiting, clock=clock)
        self._on_node: dict[str, set[str]] = defaultdict(set)  # node -> device keys
        self._ctx: BeehiveContext | None = None
        self._live = False
        self.synced = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._reconciling: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self.sent = 0

    async def start(self, ctx: BeehiveContext) -> None:
        self._ctx = ctx
        self._live = False
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            tg.create_task(self._receive(ctx), name="devicecontroller-receive")
            tg.create_task(self.writer.run(), name="devicecontroller-status")
            await self.sync.loaded.wait()
            for informer in (self.models, self.statuses, self.devices):
                tg.create_task(informer.run(), name=f"informer-{informer.resource.plural}")
                await informer.synced.wait()
            self._live = True
            for device in list(self.devices.store.values()):
                if self.statuses.get(object_key(device)) is None:
                    await self._ensure_status(device)
            nodes = set(self._on_node) | self.sync.nodes(DEVICECONTROLLER_KINDS)
            for node in sorted(nodes):
                await self.reconcile(node)
            self.synced.set()
            log.info("DeviceController synced: %d devices on %d nodes, %d models",
                     len(self.devices.store), len(self._on_node), len(self.models.store))

    # -- sending (the one place that uses the ObjectSync records) ---------------------------

    async def _send_object(self, node: str, rtype: str, obj: Obj, operation: str, *,
                           force: bool = False) -> None:
        msg = object_message(node, rtype, obj, operation)
        if not force and not self.sync.should_send(node, msg):
            return
        if needs_ack(msg):
            await self.sync.ensure_record(node, msg)
        await self._to_hub(msg)

    async def _to_hub(self, msg: Message) -> None:
        assert self._ctx is not None
        await self._ctx.send(CloudModule.CLOUDHUB, msg)
        self.sent += 1

    async def _membership(self, node: str, *, added: list[Obj] | None = None,
                          removed: list[Obj] | None = None) -> None:
        if added or removed:
            await self._to_hub(membership_message(node, added=added or (),
                                                  removed=removed or ()))

    # -- downstream ------------------------------------------------------------------------

    def _users(self, node: str, model: str, but: str = "") -> int:
        """Devices on ``node`` that use ``model`` (other than ``but``)."""
        return sum(1 for key in self._on_node.get(node, ()) if key != but and
                   (dev := self.devices.get(key)) is not None and model_key(dev) == model)

    async def _on_device(self, ev: InformerEvent) -> None:
        device, key = ev.obj, ev.key
        old_node = node_name_of(ev.old) if ev.old is not None else None
        if ev.type == DELETED:
            self.writer.forget(key)
            node = self._forget(key)
            if node and self._live:
                await self._remove_from(node, device)
            return
        node = node_name_of(device)
        previous = self._forget(key) if ev.type != ADDED else None
        if node:
            self._on_node[node].add(key)
        if not self._live:
            return
        if ev.type == ADDED:
            await self._ensure_status(device)
        elif ev.old is not None and ev.old.get("spec") == device.get("spec"):
            return  # status or label changes: nothing for the edge, as upstream
        moved_from = previous if previous is not None else old_node
        if moved_from and moved_from != node:
            assert ev.old is not None
            self.writer.forget(key)  # edge versions are per node: start again
            await self._remove_from(moved_from, ev.old)
            await self._add_to(node, device)
        elif ev.type == ADDED or not moved_from:
            await self._add_to(node, device)
        elif node:
            model = self._model(device)
            if model is not None:
                await self._send_object(node, MODEL, model, Operation.UPDATE)
            await self._send_object(node, DEVICE, device, Operation.UPDATE)

    def _forget(self, key: str) -> str | None:
        for node, keys in list(self._on_node.items()):
            if key in keys:
                keys.discard(key)
                if not keys:
                    del self._on_node[node]
                return node
        return None

    def _model(self, device: Obj) -> Obj | None:
        key = model_key(device)
        return self.models.get(key) if key else None

    async def _add_to(self, node: str, device: Obj) -> None:
        if not node:
            return
        await self._membership(node, added=[device])
        model, model_name = self._model(device), model_key(device)
        if model is not None and model_name and not self._users(node, model_name,
                                                               but=object_key(device)):
            await self._send_object(node, MODEL, model, Operation.INSERT)
        elif model is None and model_name:
            log.warning("device %s: its DeviceModel %s does not exist (yet); it goes to node "
                        "%s once it does", object_key(device), model_name, node)
        await self._send_object(node, DEVICE, device, Operation.INSERT)

    async def _remove_from(self, node: str, device: Obj) -> None:
        await self._membership(node, removed=[device])
        model, model_name = self._model(device), model_key(device)
        if model is not None and model_name and not self._users(node, model_name,
                                                               but=object_key(device)):
            await self._send_object(node, MODEL, model, Operation.DELETE)
        await self._send_object(node, DEVICE, device, Operation.DELETE)

    async def _on_model(self, ev: InformerEvent) -> None:
        if not self._live:
            return
        op = {ADDED: Operation.INSERT, DELETED: Operation.DELETE}.get(ev.type, Operation.UPDATE)
        for node in sorted(self._on_node):
            if self._users(node, ev.key):
                await self._send_object(node, MODEL, ev.obj, op)

    async def _on_status(self, ev: InformerEvent) -> None:
        device = self.devices.get(ev.key)
        if ev.type == DELETED and self._live and device is not None:
            await self._ensure_status(device)

    async def _ensure_status(self, device: Obj) -> None:
        try:
            await self.writer.ensure_status(device)
        except KubeError as exc:
            log.warning("cannot create the DeviceStatus of %s: %s (created at its first "
                        "report)", object_key(device), exc)

    async def reconcile(self, node: str, *, full: bool = False) -> None:
        """Bring ``node`` to the API server's state: membership of every device bound to it,
        what it lacks of their models and objects (all of it when ``full``), and deletes for
        what it has that is gone or elsewhere now."""
        desired: dict[str, tuple[str, Obj]] = {}
        devices = [d for k in sorted(self._on_node.get(node, ()))
                   if (d := self.devices.get(k)) is not None]
        for device in devices:
            model = self._model(device)
            if model is not None:
                desired[uid_of(model)] = (MODEL, model)
            desired[uid_of(device)] = (DEVICE, device)
        removed = []
        for rec in self.sync.records_of(node, DEVICECONTROLLER_KINDS):
            if rec.uid in desired or rec.namespace is None:
                continue
            rtype = rec.resource_type
            gone = gone_object(rtype, rec.namespace, rec.name, rec.uid)
            if rtype == DEVICE:
                removed.append(gone)
            await self._send_object(node, rtype, gone, Operation.DELETE)
        await self._membership(node, added=devices, removed=removed)
        records = {r.uid for r in self.sync.records_of(node, DEVICECONTROLLER_KINDS)}
        for uid, (rtype, obj) in desired.items():
            op = Operation.UPDATE if uid in records else Operation.INSERT
            await self._send_object(node, rtype, obj, op, force=full)
        if devices or removed:
            log.info("reconciled the devices of node %s: %d bound, %d removed", node,
                     len(devices), len(removed))

    def reconcile_soon(self, node: str) -> None:
        """A full reconcile of ``node`` in the background, one at a time per node."""
        running = self._reconciling.get(node)
        if running is not None and not running.done():
            self._again.add(node)
            return

        async def run() -> None:
            await self.synced.wait()
            while True:
                self._again.discard(node)
                try:
                    await self.reconcile(node, full=True)
                except Exception:
                    log.exception("reconciling the devices of node %s failed", node)
                if node not in self._again:
                    break
            self._reconciling.pop(node, None)

        assert self._tg is not None
        self._reconciling[node] = self._tg.create_task(run(), name=f"devices-reconcile-{node}")

    # -- upstream ----------------------------------------------------------------------------

    async def _receive(self, ctx: BeehiveContext) -> None:
        while True:
            msg = await ctx.receive(self.name)
            if msg.resource.endswith(MEMBERSHIP_DETAIL):
                # Upstream ignores it; an edge asks after every connect: reconcile it.
                try:
                    self.reconcile_soon(split_node_prefix(msg.resource)[0])
                except DecodeError as exc:
                    log.warning("membership detail request for no node: %s", exc)
                continue
            reply = self.writer.report(msg)
            if reply is not None:
                try:
                    await ctx.send(CloudModule.CLOUDHUB, reply)
                except Exception as exc:  # (the hive is closing) never silently
                    log.warning("reply to node report %s not sent: %r", msg.resource, exc)
