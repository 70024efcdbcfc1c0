"""One MQTT connection EventBus keeps up (gmqtt underneath), as upstream's paho clients.

Upstream dials ``tcp://127.0.0.1:1883`` with clean sessions, subscribes with QoS 1 on every
connect, and retries every 5 s forever. This client does the same, with exponential backoff and
jitter (1 s to 30 s), and logs a failure once per reason instead of on every retry::

    client = BrokerClient("sub", parse_broker_url("tcp://127.0.0.1:1883"), "hub-client-sub-1",
                          subscriptions=lambda: ["$hw/events/device/+/+/twin/+"],
                          on_message=lambda topic, payload: ...)
    tg.create_task(client.run())
    client.publish("a/b", b"{}", qos=1)       # False while disconnected (dropped, as upstream)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import gmqtt
from gmqtt.mqtt.constants import MQTTv311
from gmqtt.mqtt.handler import MQTTError

from pykubeedge.beehive.clock import REAL_CLOCK
from pykubeedge.core.backoff import Backoff
from pykubeedge.core.clock import Clock
from pykubeedge.core.errors import ConfigError
from pykubeedge.transport.tls import client_context

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
KEEPALIVE_S = 60
_PLAIN = {"tcp": 1883, "mqtt": 1883}
_SECURE = {"ssl": 8883, "tls": 8883, "mqtts": 8883}

OnMessage = Callable[[str, bytes], None]


@dataclass(frozen=True)
class BrokerAddress:
    url: str
    host: str
    port: int
    secure: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """``tcp://host:port`` (or ``ssl://``, ``tls://``, ``mqtt://``, ``mqtts://``).

    >>> parse_broker_url("tcp://127.0.0.1:1884").port
    1884
    >>> parse_broker_url("127.0.0.1:1884")
    Traceback (most recent call last):
    ...
    pykubeedge.core.errors.ConfigError: broker URL '127.0.0.1:1884' ...
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"broker URL {url!r} is not valid: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _PLAIN and scheme not in _SECURE:
        raise ConfigError(f"broker URL {url!r} must be tcp://host:port or ssl://host:port")
    if not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(f"broker URL {url!r} must be {scheme}://host:port")
    secure = scheme in _SECURE
    return BrokerAddress(url, parts.hostname, port or (_SECURE if secure else _PLAIN)[scheme],
                         secure)


@dataclass(frozen=True)
class BrokerTLS:
    """``eventBusTLS``: present our certificate and verify the broker against the CA."""

    enable: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    def context(self) -> ssl.SSLContext:
        if not self.enable:
            # Upstream: TLS without verification when eventBusTLS is off (ssl:// URLs only).
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        try:
            ctx = client_context(Path(self.ca_file).read_bytes(), Path(self.cert_file).read_bytes(),
                                 Path(self.key_file).read_bytes())
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"eventBusTLS files cannot be loaded: {exc}") from None
        ctx.check_hostname = False  # brokers are dialled by IP, as upstream (no SAN check)
        return ctx


class _GmqttClient(gmqtt.Client):  # type: ignore[misc]
    async def reconnect(self, delay: bool = False) -> None:
        """Reconnecting is BrokerClient's job (backoff with jitter), not gmqtt's."""


class BrokerClient:
    def __init__(self, role: str, address: BrokerAddress, client_id: str, *,
                 subscriptions: Callable[[], Iterable[str]] | None = None,
                 on_message: OnMessage | None = None, username: str = "", password: str = "",
                 tls: BrokerTLS | None = None, subscribe_qos: int = 1,
                 backoff: Backoff | None = None, clock: Clock = REAL_CLOCK) -> None:
        self.role = role
        self.address = address
        self.client_id = client_id
        self.subscriptions = subscriptions
        self.on_message = on_message
        self.username = username
        self.password = password
        self.subscribe_qos = subscribe_qos
        self._ssl: ssl.SSLContext | bool = (tls or BrokerTLS()).context() if address.secure \
            else False
        self._backoff = backoff or Backoff(initial=1.0, cap=30.0)
        self._clock = clock
        self._client: _GmqttClient | None = None
        self._lost = asyncio.Event()
        self.connected = asyncio.Event()
        self._last_failure = ""
        self.connects = 0
        self.dropped = 0
        self.published = 0

    def __str__(self) -> str:
        return f"MQTT {self.role} client {self.client_id} at {self.address.url}"

    async def run(self) -> None:
        """Connect, and reconnect whenever the connection is lost, until cancelled."""
        try:
            while True:
                client = await self._connect()
                if client is None:
                    await self._clock.sleep(self._backoff.next_delay())
                    continue
                await self._lost.wait()
                self._client = None
                self.connected.clear()
                log.warning("%s: connection lost; reconnecting", self)
                await self._clock.sleep(self._backoff.next_delay())
        finally:
            await self.close()

    async def _connect(self) -> _GmqttClient | None:
        client = _GmqttClient(self.client_id, clean_session=True,
                              logger=logging.getLogger("gmqtt.client"))
        client.on_message = self._received
        client.on_disconnect = self._disconnected
        if self.username:
            client.set_auth_credentials(self.username, self.password or None)
        self._lost.clear()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await client.connect(self.address.host, self.address.port, ssl=self._ssl,
                                     keepalive=KEEPALIVE_S, version=MQTTv311)
        except (OSError, TimeoutError, ssl.SSLError, MQTTError) as exc:
            self._failed(exc)
            with contextlib.suppress(Exception):
                await client.disconnect()
            return None
        self._client = client
        self.connects += 1
        self._backoff.reset()
        self._last_failure = ""
        topics = list(self.subscriptions()) if self.subscriptions else []
        for topic in topics:
            client.subscribe(topic, qos=self.subscribe_qos)
        log.info("%s: connected%s", self,
                 f", subscribed to {len(topics)} topic(s)" if topics else "")
        self.connected.set()
        return client

    def _failed(self, exc: BaseException) -> None:
        reason = str(exc) or type(exc).__name__
        if reason != self._last_failure:  # one line per reason, not one per retry
            log.error("%s: cannot connect: %s (retrying with backoff)", self, reason)
            self._last_failure = reason
        else:
            log.debug("%s: cannot connect: %s", self, reason)

    def _received(self, _client: object, topic: str, payload: bytes, qos: int,
                  properties: object) -> int:
        if self.on_message is not None:
            try:
                self.on_message(topic, payload)
            except Exception:
                log.exception("%s: handling a message on %s failed", self, topic)
        return 0  # PUBACK reason code: success

    def _disconnected(self, _client: object, _packet: object, exc: object = None) -> None:
        self._lost.set()

    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool = False) -> bool:
        """Publish now; False (and dropped, as upstream) while disconnected."""
        client = self._client
        if client is None or not self.connected.is_set():
            self.dropped += 1
            if self.dropped in (1, 10, 100, 1000) or self.dropped % 10000 == 0:
                log.warning("%s: not connected; %d publication(s) dropped so far", self,
                            self.dropped)
            return False
        client.publish(topic, payload, qos=qos, retain=retain)
        self.published += 1
        return True

    def subscribe(self, topic: str) -> None:
        """Subscribe now if connected (reconnects subscribe to ``subscriptions()`` anyway)."""
        if self._client is not None and self.connected.is_set():
            self._client.subscribe(topic, qos=self.subscribe_qos)

    def unsubscribe(self, topic: str) -> None:
        if self._client is not None and self.connected.is_set():
            self._client.unsubscribe(topic)

    async def close(self) -> None:
        client, self._client = self._client, None
        self.connected.clear()
        if client is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await client.disconnect()
