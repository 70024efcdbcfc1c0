"""EventBus: the beehive module ``eventbus`` (group ``bus``; upstream ``edge/pkg/eventbus``),
the bridge between MQTT and the edge modules.

- From MQTT: ``$hw/events/device/...`` and ``$hw/events/node/...`` go to DeviceTwin (resource
  = base64url of the topic, content = the payload as text); anything else it receives
  (``$hw/events/upload/#``, ``SYS/dis/upload_records``, ``+/user/#``, subscribed topics) goes up
  to the cloud as an ``upload``.
- To MQTT: ``publish`` (resource = topic), ``message`` (``{"message": {"topic": ...}}``),
  ``get_result`` of ``auth_info``; ``subscribe``/``unsubscribe`` from the cloud are kept in
  ``sub_topics`` across restarts.
- Rule topics (those the cloud subscribed) while the cloud is unreachable (PROJECT): at most
  ``ruleMessageLimit`` messages of each go to EdgeHub's outbox; beyond that they are dropped,
  counted, and reported to the Router after the reconnect (``core/ruletraffic.py``), so the
  Rule status says so and one chatty topic cannot fill the outbox for everything else.
- ``mqttMode``: 2 external (default ``tcp://127.0.0.1:1883``; QoS 1, no retain, as upstream),
  0 internal (a mosquitto edgecore supervises on ``tcp://127.0.0.1:1884``; ``mqttQOS`` and
  ``mqttRetain`` apply), 1 both. Like upstream, a subscribing and a publishing client per
  broker.

A bad broker URL, unloadable TLS files, a missing mosquitto or a refused connection is logged
in one line; EventBus keeps serving its queue (dropping publications, as upstream does while
disconnected) and edgecore its pods::

    bus = EventBus(EventBusSettings.from_config(cfg), await SubTopicsDAO.open(db))
    hive.add_module(bus)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pykubeedge.beehive import BeehiveContext, RestartPolicy, RestartType, serve
from pykubeedge.beehive.clock import REAL_CLOCK
from pykubeedge.core.clock import Clock
from pykubeedge.core.config import MQTT_MODE_BOTH, EdgeCoreConfig
from pykubeedge.core.constants import Content, EdgeGroup, EdgeModule, MessageGroup, Operation
from pykubeedge.core.content import json_object
from pykubeedge.core.errors import ConfigError, DecodeError
from pykubeedge.core.message import Message
from pykubeedge.core.ruletraffic import DROPPED_SUFFIX, drop_report
from pykubeedge.core.topics import (
    DEFAULT_SUBSCRIPTIONS,
    auth_info_result,
    encode_resource,
    is_devicetwin_topic,
)
from pykubeedge.edge.eventbus.broker import InternalBroker
from pykubeedge.edge.eventbus.dao import SubTopicsDAO
from pykubeedge.edge.eventbus.mqtt import (
    BrokerAddress,
    BrokerClient,
    BrokerTLS,
    parse_broker_url,
)

log = logging.getLogger(__name__)

SOURCE = "bus"
INBOUND_LIMIT = 8192
"""Messages received from MQTT and not yet handed on; beyond that they are dropped (logged)."""
MAX_UPLOAD = 1024 * 1024
"""Bytes of one MQTT message EventBus uploads to the cloud (PROJECT)."""
MAX_TOPIC = 65535
DEFAULT_RULE_LIMIT = 1000


@dataclass(frozen=True)
class EventBusSettings:
    node_name: str
    mode: int = 2
    external_url: str = "tcp://127.0.0.1:1883"
    internal_url: str = "tcp://127.0.0.1:1884"
    qos: int = 0
    retain: bool = False
    session_queue_size: int = 100
    sub_client_id: str = ""
    pub_client_id: str = ""
    username: str = ""
    password: str = ""
    tls: BrokerTLS = field(default_factory=BrokerTLS)
    workdir: Path = Path("/var/lib/kubeedge")
    rule_limit: int = DEFAULT_RULE_LIMIT

    @classmethod
    def from_config(cls, cfg: EdgeCoreConfig) -> EventBusSettings:
        bus = cfg.modules.eventBus
        tls = bus.eventBusTLS
        return cls(
            node_name=cfg.node_name, mode=bus.mqttMode, external_url=bus.mqttServerExternal,
            internal_url=bus.mqttServerInternal, qos=bus.mqttQOS, retain=bus.mqttRetain,
            session_queue_size=bus.mqttSessionQueueSize, sub_client_id=bus.mqttSubClientID,
            pub_client_id=bus.mqttPubClientID, username=bus.mqttUsername,
            password=bus.mqttPassword,
            tls=BrokerTLS(tls.enable, tls.tlsMqttCAFile, tls.tlsMqttCertFile,
                          tls.tlsMqttPrivateKeyFile),
            workdir=Path(cfg.database.dataSource).parent, rule_limit=rule_limit(bus.model_extra))

    @property
    def external(self) -> bool:
        return self.mode >= MQTT_MODE_BOTH

    @property
    def internal(self) -> bool:
        return self.mode <= MQTT_MODE_BOTH


def rule_limit(extra: dict[str, Any] | None) -> int:
    """``modules.eventBus.ruleMessageLimit`` (PROJECT; not in the default config, which keeps
    upstream's keys): messages of one rule topic kept for the cloud while it is unreachable.

    >>> rule_limit(None), rule_limit({"ruleMessageLimit": 5})
    (1000, 5)
    """
    value = (extra or {}).get("ruleMessageLimit", DEFAULT_RULE_LIMIT)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"modules.eventBus.ruleMessageLimit {value!r} is not a positive "
                          "integer")
    return value


def default_client_id(role: str, configured: str, now_s: float) -> str:
    """Upstream: ``hub-client-<role>-<unix seconds>`` when none is configured.

    >>> default_client_id("sub", "", 1714550000.5), default_client_id("sub", "mine", 0)
    ('hub-client-sub-1714550000', 'mine')
    """
    return configured or f"hub-client-{role}-{int(now_s)}"


@dataclass
class _Broker:
    kind: str  # "external" | "internal"
    sub: BrokerClient
    pub: BrokerClient
    qos: int
    retain: bool


class EventBus:
    name = EdgeModule.EVENTBUS
    group = EdgeGroup.BUS
    restart_policy = RestartPolicy(RestartType.ON_FAILURE)

    def __init__(self, settings: EventBusSettings, topics: SubTopicsDAO, *,
                 clock: Clock = REAL_CLOCK) -> None:
        self.s = settings
        self.topics = topics
        self.clock = clock
        self.brokers: list[_Broker] = []
        self.internal_broker: InternalBroker | None = None
        self.subscribed: dict[str, None] = {}
        self._inbound: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(INBOUND_LIMIT)
        self.received = 0
        self.dropped = 0
        self.ready = asyncio.Event()
        self.cloud_connected = False  # EdgeHub says so (cloud_connected / cloud_disconnected)
        self._held: dict[str, int] = {}  # rule topic -> messages sent while disconnected
        self.rule_dropped: dict[str, int] = {}  # rule topic -> dropped, not yet reported
        self._ctx: BeehiveContext | None = None
        logging.getLogger("gmqtt").setLevel(logging.ERROR)  # we log connections ourselves

    def _build(self) -> None:
        s, clock = self.s, self.clock
        now = clock.time()
        wanted = []
        if s.internal:
            wanted.append(("internal", s.internal_url, s.qos, s.retain))
        if s.external:
            wanted.append(("external", s.external_url, 1, False))
        for kind, url, qos, retain in wanted:
            try:
                address = parse_broker_url(url)
                tls = s.tls if kind == "external" else BrokerTLS()
                sub = BrokerClient("sub", address, default_client_id("sub", s.sub_client_id, now),
                                   subscriptions=self._subscriptions, on_message=self._received,
                                   username=s.username, password=s.password, tls=tls,
                                   subscribe_qos=1 if kind == "external" else qos, clock=clock)
                pub = BrokerClient("pub", address, default_client_id("pub", s.pub_client_id, now),
                                   username=s.username, password=s.password, tls=tls,
                                   clock=clock)
            except ConfigError as exc:
                log.error("EventBus: %s broker disabled: %s", kind, exc)
                continue
            if kind == "internal":
                self.internal_broker = self._internal(address)
            self.brokers.append(_Broker(kind, sub, pub, qos, retain))

    def _internal(self, address: BrokerAddress) -> InternalBroker:
        return InternalBroker(address, self.s.workdir, queue_size=self.s.session_queue_size,
                              clock=self.clock)

    def _subscriptions(self) -> list[str]:
        return [*DEFAULT_SUBSCRIPTIONS, *(t for t in self.subscribed
                                          if t not in DEFAULT_SUBSCRIPTIONS)]

    # -- the module ----------------------------------------------------------------------------

    async def start(self, ctx: BeehiveContext) -> None:
        self._ctx = ctx
        self.subscribed = dict.fromkeys(await self.topics.all())
        self.brokers.clear()
        self._build()
        async with asyncio.TaskGroup() as tg:
            if self.internal_broker is not None:
                tg.create_task(self.internal_broker.run(), name="eventbus-internal-broker")
            for broker in self.brokers:
                tg.create_task(broker.sub.run(), name=f"eventbus-{broker.kind}-sub")
                tg.create_task(broker.pub.run(), name=f"eventbus-{broker.kind}-pub")
            tg.create_task(self._forward(ctx), name="eventbus-forward")
            self.ready.set()
            try:
                await serve(ctx, self.name, self.handle)
            finally:
                self.ready.clear()

    # -- MQTT -> edge ------------------------------------------------------------------------

    def _received(self, topic: str, payload: bytes) -> None:
        try:
            self._inbound.put_nowait((topic, payload))
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped in (1, 10, 100, 1000) or self.dropped % 10000 == 0:
                log.warning("EventBus: %d MQTT message(s) dropped, the edge modules are "
                            "behind", self.dropped)

    async def _forward(self, ctx: BeehiveContext) -> None:
        while True:
            topic, payload = await self._inbound.get()
            self.received += 1
            text = payload.decode("utf-8", "replace")
            if is_devicetwin_topic(topic):
                if not ctx.members(EdgeGroup.TWIN):
                    log.debug("EventBus: no DeviceTwin; dropped %s", topic)
                    continue
                await ctx.send_to_group(EdgeGroup.TWIN, Message(
                    source=SOURCE, group=MessageGroup.USER, operation=Operation.RESPONSE,
                    resource=encode_resource(topic), content=text))
                continue
            if len(payload) > MAX_UPLOAD:
                log.warning("EventBus: %s: %d bytes is more than the %d an upload may be; "
                            "dropped", topic, len(payload), MAX_UPLOAD)
                continue
            if not self._within_rule_limit(topic):
                continue
            if ctx.members(EdgeGroup.HUB):
                await ctx.send_to_group(EdgeGroup.HUB, Message(
                    source=SOURCE, group=MessageGroup.USER, operation=Operation.UPLOAD,
                    resource=topic, content=text))

    def _within_rule_limit(self, topic: str) -> bool:
        if self.cloud_connected or topic not in self.subscribed:
            return True
        held = self._held.get(topic, 0)
        if held >= self.s.rule_limit:
            dropped = self.rule_dropped[topic] = self.rule_dropped.get(topic, 0) + 1
            if dropped in (1, 100) or dropped % 10000 == 0:
                log.warning("EventBus: %s: %d message(s) dropped, %d are kept for the cloud "
                            "already (ruleMessageLimit)", topic, dropped, held)
            return False
        self._held[topic] = held + 1
        return True

    async def _connection(self, content: Any) -> None:
        if content == Content.CLOUD_DISCONNECTED:
            self.cloud_connected = False
            return
        if content != Content.CLOUD_CONNECTED:
            return
        self.cloud_connected = True
        self._held.clear()
        reports, self.rule_dropped = self.rule_dropped, {}
        ctx = self._ctx
        if ctx is None or not ctx.members(EdgeGroup.HUB):
            return
        for topic, dropped in reports.items():  # behind what was kept: EdgeHub keeps order
            log.warning("EventBus: telling the cloud %d message(s) of %s were dropped", dropped,
                        topic)
            await ctx.send_to_group(EdgeGroup.HUB, Message(
                source=SOURCE, group=MessageGroup.USER, operation=Operation.UPLOAD,
                resource=topic + DROPPED_SUFFIX, content=drop_report(dropped,
                                                                     self.s.rule_limit)))

    # -- edge/cloud -> MQTT ------------------------------------------------------------------

    async def handle(self, msg: Message) -> None:
        op = msg.operation
        if op == Operation.PUBLISH:
            payload = _payload(msg.content)
            if payload is None:
                log.error("EventBus: publish to %s: content must be bytes or text, got %s",
                          msg.resource, type(msg.content).__name__)
                return
            self.publish(msg.resource, payload)
        elif op == Operation.SUBSCRIBE:
            await self._subscribe(msg.resource)
        elif op == Operation.UNSUBSCRIBE:
            await self._unsubscribe(msg.resource)
        elif op == Operation.MESSAGE:
            try:
                inner = json_object(msg.content).get("message")
            except DecodeError:
                inner = None
            topic = inner.get("topic") if isinstance(inner, dict) else None
            if not isinstance(topic, str) or not topic:
                log.error("EventBus: a message operation needs content "
                          '{"message": {"topic": ...}}; got %.200r', msg.content)
                return
            self.publish(topic, orjson.dumps(inner))
        elif op == Operation.GET_RESULT and msg.resource == "auth_info":
            self.publish(auth_info_result(self.s.node_name), orjson.dumps(msg.content))
        elif op == Operation.CONNECT:
            await self._connection(msg.content)  # EdgeHub's cloud connection events
        else:
            log.warning("EventBus: action %r not found (%s)", op, msg)

    def publish(self, topic: str, payload: bytes) -> None:
        if not _valid_topic(topic, wildcards=False):
            log.error("EventBus: cannot publish to invalid topic %.200r", topic)
            return
        for broker in self.brokers:
            broker.pub.publish(topic, payload, qos=broker.qos, retain=broker.retain)

    async def _subscribe(self, topic: str) -> None:
        if not _valid_topic(topic, wildcards=True):
            log.error("EventBus: cannot subscribe to invalid topic filter %.200r", topic)
            return
        # Kept even while the broker is down (upstream keeps it only after a successful
        # subscribe): every connection subscribes to the kept topics.
        await self.topics.add(topic)
        self.subscribed[topic] = None
        for broker in self.brokers:
            broker.sub.subscribe(topic)
        log.info("EventBus: subscribed to %s", topic)

    async def _unsubscribe(self, topic: str) -> None:
        await self.topics.remove(topic)
        self.subscribed.pop(topic, None)
        for broker in self.brokers:
            with contextlib.suppress(Exception):
                broker.sub.unsubscribe(topic)
        log.info("EventBus: unsubscribed from %s", topic)


def _payload(content: Any) -> bytes | None:
    if isinstance(content, bytes):
        return content
    if isinstance(content, str):
        return content.encode()
    return None


def _valid_topic(topic: str, *, wildcards: bool) -> bool:
    """MQTT topic rules: non-empty, at most 65535 bytes, no NUL; ``#`` only last and ``+``
    only as whole levels in a filter, neither in a topic name."""
    if not topic or "\x00" in topic or len(topic.encode()) > MAX_TOPIC:
        return False
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (not wildcards or level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and (not wildcards or level != "+"):
            return False
    return True
