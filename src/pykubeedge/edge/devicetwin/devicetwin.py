"""DeviceTwin: the beehive module ``twin`` (group ``twin``; upstream ``edge/pkg/devicetwin``).

It classifies what reaches it as upstream's ``classifyMsg`` does:

- from EventBus (source ``bus``, resource = base64url of the MQTT topic): twin update, get and
  cloud sync, device state, membership get (:mod:`pykubeedge.core.topics`);
- from DeviceController through EdgeHub: ``membership`` updates (and ``membership/detail``);
- from MetaManager: the Device and DeviceModel objects. A Device bound to this node makes it a
  member (so membership is as reliable as the object's ObjectSync delivery) and its desired
  values become the twins' expected values (PROJECT: so ``kubectl patch`` fires a delta);
- from EdgeHub: ``node/connection`` (cloud connected or not);
- any message with a parent id: the cloud confirming a report.

Messages are handled one at a time, in order; their writes are committed in groups
(:mod:`.committer`), and what the cloud is owed is sent by :mod:`.cloudsync`::

    dao = await DeviceDAO.open(db)        # db: the process's edgecore.db (edge/dbm)
    hive.add_module(DeviceTwin("edge-1", dao))
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from pykubeedge.beehive import BeehiveContext, RestartPolicy, RestartType
from pykubeedge.beehive.clock import wait_event
from pykubeedge.core.constants import (
    CloudModule,
    Content,
    EdgeGroup,
    EdgeModule,
    MessageGroup,
    Operation,
    ResourceType,
    Source,
)
from pykubeedge.core.content import json_object
from pykubeedge.core.device import (
    MemberDevice,
    description_of,
    membership_detail_request,
    parse_membership,
)
from pykubeedge.core.errors import DecodeError
from pykubeedge.core.message import Message
from pykubeedge.core.objects import node_name_of, spec_of
from pykubeedge.core.resource import parse_edge
from pykubeedge.core.topics import Action, classify, decode_resource, lifecycle_topic
from pykubeedge.core.twin import TYPE_STRING, Deal, Desired
from pykubeedge.edge.devicetwin import device, membership, twin
from pykubeedge.edge.devicetwin.context import TwinContext
from pykubeedge.edge.devicetwin.dao import DeviceDAO, load_device_objects
from pykubeedge.edge.devicetwin.dmi import DMI

log = logging.getLogger(__name__)

BUS_SOURCE = "bus"
_CLOUD_SOURCES = frozenset({CloudModule.DEVICECONTROLLER, Source.EDGEMGR})
_META_SOURCES = frozenset({"meta", EdgeModule.METAMANAGER})
_OBJECT_TYPES = frozenset({ResourceType.DEVICE, ResourceType.DEVICE_MODEL})


class DeviceTwin:
    name = EdgeModule.DEVICETWIN
    group = EdgeGroup.TWIN
    restart_policy = RestartPolicy(RestartType.ON_FAILURE)

    def __init__(self, node: str, dao: DeviceDAO, *, dmi_sock_path: str | None = None,
                 **context: Any) -> None:
        self.ctx = TwinContext(node, dao, **context)
        # DMI (mappers over gRPC): on unless dmi_sock_path is None (unit tests).
        self.dmi = None if dmi_sock_path is None else DMI(dmi_sock_path, self._to_self)
        self.loaded = asyncio.Event()
        self.handled = 0

    @property
    def devices(self) -> dict[str, Any]:
        return self.ctx.devices

    async def start(self, beehive: BeehiveContext) -> None:
        ctx = self.ctx
        ctx.beehive = beehive
        ctx.devices, pending = await ctx.dao.load()
        ctx.cloud.restore(pending)
        if self.dmi is not None:
            devices, models = await load_device_objects(ctx.dao)
            self.dmi.load([d for d in devices if node_name_of(d) == ctx.node], models)
        self.loaded.set()
        log.info("DeviceTwin for node %s: %d device(s), %d report(s) owed to the cloud",
                 ctx.node, len(ctx.devices), ctx.cloud.owed())
        async with asyncio.TaskGroup() as tg:
            tg.create_task(ctx.committer.run(), name="devicetwin-committer")
            tg.create_task(self._sync_loop(), name="devicetwin-cloudsync")
            if self.dmi is not None:
                tg.create_task(self.dmi.run(), name="devicetwin-dmi")
            while True:
                msg = await beehive.receive(self.name)
                await ctx.reload_failed()
                try:
                    await self.dispatch(msg)
                except DecodeError as exc:
                    log.warning("DeviceTwin refused %s: %s", msg, exc)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("DeviceTwin failed to handle %s", msg)
                self.handled += 1

    async def dispatch(self, msg: Message) -> None:
        ctx = self.ctx
        if msg.parent_msg_id:
            await self._confirmed(msg)
        elif msg.source == BUS_SOURCE:
            await self._from_bus(msg)
        elif msg.source == Source.EDGEHUB and msg.resource == ResourceType.NODE_CONNECTION:
            await self._connection(msg.content)
        elif _is_object(msg.resource) and (msg.source in _META_SOURCES
                                           or msg.source in _CLOUD_SOURCES):
            await self._object(msg)
        elif msg.source in _CLOUD_SOURCES and "membership" in msg.resource:
            update = parse_membership(msg.content)
            await membership.apply_update(ctx, update, detail="membership/detail" in msg.resource)
        else:
            log.warning("DeviceTwin: no action for %s", msg)

    async def _from_bus(self, msg: Message) -> None:
        topic = decode_resource(msg.resource)
        found = classify(topic)
        payload = msg.content if isinstance(msg.content, str | bytes) else ""
        if found is None:
            log.debug("DeviceTwin: no action for topic %s", topic)
            return
        action, identity = found.action, found.identity
        if action is Action.TWIN_UPDATE:
            await twin.twin_update(self.ctx, identity, payload, Deal.REST)
        elif action is Action.TWIN_CLOUD_SYNC:
            await twin.twin_update(self.ctx, identity, payload, Deal.SYNC)
        elif action is Action.TWIN_GET:
            await twin.twin_get(self.ctx, identity, payload)
        elif action is Action.DEVICE_STATE_UPDATE:
            await device.state_update(self.ctx, identity, payload)
        elif action is Action.MEM_GET:
            await membership.membership_get(self.ctx, payload)
        elif action is Action.MEM_DETAIL_RESULT:
            await membership.apply_update(self.ctx, parse_membership(payload), detail=True)
        elif action is Action.LIFECYCLE:
            log.debug("DeviceTwin: lifecycle topic %s from MQTT ignored, as upstream", topic)
        else:
            # /updated (attributes) and /state/get: not subscribed by default; upstream has no
            # handler for state/get and attributes are not implemented here yet.
            log.warning("DeviceTwin: %s (%s) is not supported; ignored", topic, action.value)

    async def _confirmed(self, msg: Message) -> None:
        if msg.operation == Operation.ERROR:
            log.warning("the cloud refused a device report: %s", str(msg.content)[:300])
        done = self.ctx.cloud.confirm(msg.parent_msg_id)
        if done:
            await self.ctx.store([self.ctx.dao.drop_pending(done)])
        self.ctx.wake_sync()

    async def _connection(self, content: Any) -> None:
        ctx = self.ctx
        if content == Content.CLOUD_CONNECTED:
            was = ctx.cloud_connected
            ctx.cloud_connected = True
            ctx.cloud.on_connected()
            if not was:
                # Upstream asks for the membership detail after every reconnect.
                detail = Message(source="twin", group=MessageGroup.RESOURCE,
                                 operation=Operation.GET, resource="membership/detail",
                                 content=membership_detail_request(ctx.new_id(), ctx.wall_ms(),
                                                                   ctx.node))
                await ctx.to_cloud(detail)
            ctx.wake_sync()
        elif content == Content.CLOUD_DISCONNECTED:
            ctx.cloud_connected = False
            ctx.cloud.on_disconnected()
        else:
            log.warning("DeviceTwin: unknown connection event %r", content)
            return
        # PROJECT: upstream declares these topics and never publishes them.
        await ctx.publish(lifecycle_topic(ctx.node, ctx.cloud_connected),
                          {"event_type": "connected" if ctx.cloud_connected else "disconnected",
                           "timestamp": ctx.wall_ms()})

    async def _to_self(self, msg: Message) -> None:
        """DMI reports: into this module's mailbox, in order with MQTT's."""
        if self.ctx.beehive is not None:
            await self.ctx.beehive.send(self.name, msg)

    def _to_dmi(self, res: Any, operation: str, content: Any) -> None:
        if self.dmi is None or operation not in (Operation.INSERT, Operation.UPDATE,
                                                 Operation.DELETE):
            return
        key = f"{res.namespace}/{res.name}"
        obj: dict[str, Any] = {}
        if operation != Operation.DELETE:
            obj = json_object(content, f"the {res.resource_type} {key}")
        bound = res.resource_type != ResourceType.DEVICE or node_name_of(obj) == self.ctx.node
        self.dmi.object_changed(res.resource_type, operation, obj, key=key, bound=bound)

    async def _object(self, msg: Message) -> None:
        res = parse_edge(msg.resource, msg.operation)
        try:
            self._to_dmi(res, msg.operation, msg.content)
        except DecodeError as exc:
            log.warning("DMI: %s %s not passed to mappers: %s", msg.operation, msg.resource, exc)
        if res.resource_type != ResourceType.DEVICE:
            log.debug("DeviceTwin: %s %s noted (device models matter to mappers, not twins)",
                      msg.operation, msg.resource)
            return
        device_id = f"{res.namespace}/{res.name}"
        if msg.operation == Operation.DELETE:
            if device_id in self.ctx.devices:
                await membership.members_removed(self.ctx, [MemberDevice(device_id, res.name)])
            return
        if msg.operation not in (Operation.INSERT, Operation.UPDATE):
            return
        obj = json_object(msg.content, f"the Device {device_id}")
        node = node_name_of(obj)
        if node != self.ctx.node:
            log.warning("device %s is bound to node %r, not to %s; not made a member",
                        device_id, node, self.ctx.node)
            return
        await membership.members_added(self.ctx, [MemberDevice(
            device_id, res.name, description_of(obj))])
        await twin.desired_changed(self.ctx, device_id, desired_of(spec_of(obj)))

    async def _sync_loop(self) -> None:
        ctx = self.ctx
        while True:
            ctx.sync_wakeup.clear()
            for msg in ctx.cloud.take(ctx.clock.monotonic()):
                await ctx.to_cloud(msg)
            await wait_event(ctx.clock, ctx.sync_wakeup, ctx.cloud.next_deadline())


def _is_object(resource: str) -> bool:
    try:
        parsed = parse_edge(resource)
    except DecodeError:
        return False
    return not parsed.is_list and parsed.resource_type in _OBJECT_TYPES


def desired_of(spec: Mapping[str, Any]) -> dict[str, Desired]:
    """``spec.properties[].desired`` as twin expectations (type from ``desired.metadata``).

    >>> desired_of({"properties": [{"name": "t", "desired": {"value": "30"}}]})
    {'t': Desired(value='30', type='string')}
    """
    out: dict[str, Desired] = {}
    props = spec.get("properties")
    for prop in props if isinstance(props, list) else ():
        if not isinstance(prop, dict) or not isinstance(prop.get("name"), str):
            continue
        desired = prop.get("desired")
        if not isinstance(desired, dict) or not isinstance(desired.get("value"), str):
            continue
        meta = desired.get("metadata")
        kind = meta.get("type") if isinstance(meta, dict) else None
        out[prop["name"]] = Desired(desired["value"], kind if isinstance(kind, str) and kind
                                    else TYPE_STRING)
    return out
