"""``pushMethod``: each value read is also sent where the property says, besides edgecore.

- ``http``: ``POST http://<hostname>:<port><requestpath>`` with the JSON data model
  (upstream's ``DeviceName``, ``PropertyName``, ``Namespace``, ``Value``, ``Type``,
  ``TimeStamp``), within ``timeout`` ms.
- ``mqtt``: the same JSON published on ``topic`` at ``address`` (``tcp://host:port``) with
  ``qos`` and ``retained``; one client per broker, reconnecting by itself.

A push that fails is logged (once per target until it works again) and dropped: it is a copy,
the twin report is what counts. At most ``MAX_IN_FLIGHT`` pushes are in flight; more are
dropped, never queued without bound.

    pusher = Pusher(); await pusher.push(device, prop_state); await pusher.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import aiohttp
import orjson

from pykubeedge.mapper.model import Device, PushHTTP, PushMQTT

if TYPE_CHECKING:
    from pykubeedge.mapper.device import PropState

log = logging.getLogger(__name__)

MAX_IN_FLIGHT: Final = 64


def data_model(device: Device, ps: PropState) -> dict[str, Any]:
    return {"DeviceName": device.name, "PropertyName": ps.prop.name,
            "Namespace": device.namespace, "Value": ps.value or "", "Type": ps.prop.type,
            "TimeStamp": ps.at_ms}


class Pusher:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._mqtt: dict[str, Any] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._failing: set[str] = set()
        self.pushed = 0
        self.dropped = 0

    async def push(self, device: Device, ps: PropState) -> None:
        body = orjson.dumps(data_model(device, ps))
        for target in (ps.prop.push_http, ps.prop.push_mqtt):
            if target is None:
                continue
            if len(self._tasks) >= MAX_IN_FLIGHT:
                self.dropped += 1
                continue
            coro = (self._http(target, body) if isinstance(target, PushHTTP)
                    else self._publish(target, body))
            task = asyncio.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _ok(self, key: str) -> None:
        self.pushed += 1
        if key in self._failing:
            self._failing.discard(key)
            log.info("push to %s works again", key)

    def _failed(self, key: str, exc: BaseException) -> None:
        self.dropped += 1
        if key not in self._failing:
            self._failing.add(key)
            log.error("push to %s failed: %s", key, exc or type(exc).__name__)

    async def _http(self, target: PushHTTP, body: bytes) -> None:
        host = target.hostname if "://" in target.hostname else f"http://{target.hostname}"
        url = f"{host}:{target.port}{target.path}" if target.port else f"{host}{target.path}"
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(url, data=body, headers={
                    "Content-Type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=target.timeout_s)) as resp:
                if resp.status >= 300:
                    raise OSError(f"HTTP {resp.status}")
            self._ok(url)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self._failed(url, exc)

    async def _publish(self, target: PushMQTT, body: bytes) -> None:
        key = f"{target.address} {target.topic}"
        try:
            client = await self._client(target.address)
            client.publish(target.topic, body, qos=min(max(target.qos, 0), 2),
                           retain=target.retained)
            self._ok(key)
        except (OSError, TimeoutError, ValueError) as exc:
            self._failed(key, exc)

    async def _client(self, address: str) -> Any:
        client = self._mqtt.get(address)
        if client is not None:
            return client
        from gmqtt import Client  # imported only when a property pushes to MQTT

        url = urlsplit(address if "://" in address else f"tcp://{address}")
        if url.scheme not in ("tcp", "mqtt"):
            raise ValueError(f"MQTT address {address!r}: only tcp:// is supported")
        client = Client(f"mapper-{uuid.uuid4().hex[:12]}")
        async with asyncio.timeout(5):
            await client.connect(url.hostname or "127.0.0.1", url.port or 1883, keepalive=30)
        self._mqtt[address] = client
        return client

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for client in self._mqtt.values():
            with contextlib.suppress(Exception):
                await client.disconnect()
        if self._session is not None:
            await self._session.close()
