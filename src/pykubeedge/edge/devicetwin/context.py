"""What DeviceTwin's handlers share (upstream ``dtcontext``): the member devices in memory, the
group committer, what is owed to the cloud, and the ways out (MQTT through EventBus, the
cloud through EdgeHub), all reached by beehive messages only.

    ctx = TwinContext("edge-1", await DeviceDAO.open(db))
    await ctx.publish("$hw/events/device/default/d/twin/get/result", payload)
    await ctx.store([ctx.dao.put_twins(dev_id, twins)], then=publish_results,
                    touched=[dev_id])
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import orjson

from pykubeedge.beehive import BeehiveContext, HiveClosedError, UnknownModuleError
from pykubeedge.beehive.clock import REAL_CLOCK
from pykubeedge.core.clock import Clock
from pykubeedge.core.constants import EdgeGroup, EdgeModule, Operation
from pykubeedge.core.message import Message, new_id
from pykubeedge.core.twin import INTERNAL_ERROR, MAX_PAYLOAD, error_payload
from pykubeedge.edge.devicetwin.cloudsync import SOURCE, CloudSync
from pykubeedge.edge.devicetwin.committer import Committer
from pykubeedge.edge.devicetwin.dao import DeviceDAO, DeviceRecord, Op

log = logging.getLogger(__name__)

Then = Callable[[], Awaitable[None]]


class TwinContext:
    """Time comes from ``clock`` (a :class:`~pykubeedge.core.clock.Clock`: timestamps in
    payloads, resend deadlines, the database retry interval), ids from ``new_id``."""

    def __init__(self, node: str, dao: DeviceDAO, *, max_payload: int = MAX_PAYLOAD,
                 clock: Clock = REAL_CLOCK, new_id: Callable[[], str] = new_id,
                 eventbus_module: str = EdgeModule.EVENTBUS,
                 hub_module: str = EdgeModule.EDGEHUB) -> None:
        self.node = node
        self.dao = dao
        self.max_payload = max_payload
        self.clock = clock
        self.new_id = new_id
        self.eventbus_module = eventbus_module
        self.hub_module = hub_module
        self.devices: dict[str, DeviceRecord] = {}
        self.cloud = CloudSync(new_id=new_id, wall_ms=self.wall_ms)
        self.committer = Committer(dao.run, sleep=clock.sleep)
        self.beehive: BeehiveContext | None = None
        self.sync_wakeup = asyncio.Event()
        self.cloud_connected = False
        self._reload: set[str] = set()
        self.published = 0

    def wall_ms(self) -> int:
        """Milliseconds since the Unix epoch on the clock: the ``timestamp`` of payloads."""
        return round(self.clock.time() * 1000)

    def wall_s(self) -> float:
        """Seconds since the Unix epoch on the clock (``lastOnlineTime``)."""
        return self.clock.time()

    # -- ways out ---------------------------------------------------------------------------

    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        """Publish ``payload`` (JSON) on ``topic`` through EventBus (upstream ``SendToEdge``)."""
        msg = Message(source=SOURCE, group=EdgeGroup.BUS, operation=Operation.PUBLISH,
                      resource=topic, content=orjson.dumps(payload))
        await self._send(self.eventbus_module, msg)
        self.published += 1

    async def publish_error(self, topic: str, event_id: str, code: int, reason: str) -> None:
        log.info("answering %s with %d: %s", topic, code, reason)
        await self.publish(topic, error_payload(event_id, self.wall_ms(), code, reason))

    async def to_cloud(self, msg: Message) -> None:
        await self._send(self.hub_module, msg)

    async def _send(self, module: str, msg: Message) -> None:
        if self.beehive is None:
            raise RuntimeError("DeviceTwin is not started")
        try:
            await self.beehive.send(module, msg)
        except UnknownModuleError:
            log.debug("no module %s (disabled); dropped %s", module, msg)
        except HiveClosedError:
            pass

    def wake_sync(self) -> None:
        self.sync_wakeup.set()

    # -- the database -------------------------------------------------------------------------

    async def store(self, ops: Sequence[Op], *, then: Then | None = None,
                    error_topic: str = "", event_id: str = "",
                    touched: Iterable[str] = ()) -> None:
        """Commit ``ops`` in order with everything else; then run ``then``. On failure answer
        500 on ``error_topic`` (if any) and reload ``touched`` devices from the database."""
        devices = tuple(touched)

        async def done(error: Exception | None) -> None:
            if error is None:
                if then is not None:
                    await then()
                return
            log.error("DeviceTwin could not store a change of %s: %s", ", ".join(devices) or
                      "a device", error)
            self._reload.update(devices)
            if error_topic:
                await self.publish_error(error_topic, event_id, INTERNAL_ERROR,
                                         f"writing the database failed: {error}")

        await self.committer.submit(ops, done)

    async def reload_failed(self) -> None:
        """After failed writes: take the devices concerned again from the database (as
        upstream's ``SyncDeviceFromSqlite``), once the queued writes are done."""
        if not self._reload or len(self.committer):
            return
        ids, self._reload = self._reload, set()
        try:
            fresh, _ = await self.dao.load(ids)
        except Exception as exc:
            log.error("reloading devices %s failed: %s", sorted(ids), exc)
            self._reload |= ids
            return
        for dev_id in ids:
            if dev_id in fresh:
                self.devices[dev_id] = fresh[dev_id]
            else:
                self.devices.pop(dev_id, None)
        log.info("reloaded %d device(s) from the database after a failed write", len(ids))
