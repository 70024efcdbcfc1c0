"""A real mosquitto for tests (a free port on 127.0.0.1, a generated config), and an MQTT probe
that records what is published and publishes like an app or a device would.

    async with Mosquitto(tmp_path) as broker, Probe(broker.port) as probe:
        await probe.subscribe("$hw/events/#")
        probe.publish("$hw/events/device/ns/d/twin/get", b"{}")
        msg = await probe.next("$hw/events/device/ns/d/twin/get/result")
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gmqtt
import orjson
from gmqtt.mqtt.constants import MQTTv311

from pykubeedge.core.topics import topic_matches
from pykubeedge.devcluster.process import ManagedProcess, free_port
from pykubeedge.edge.eventbus.broker import find_mosquitto, mosquitto_config
from pykubeedge.edge.eventbus.mqtt import parse_broker_url


class Mosquitto:
    def __init__(self, workdir: Path, port: int = 0) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    async def start(self) -> None:
        binary = find_mosquitto()
        assert binary, "mosquitto is not installed (scripts/setup.sh installs it)"
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / f"mosquitto-{self.port}.conf"
        conf.write_text(mosquitto_config(parse_broker_url(self.url), 100_000))
        self.proc = ManagedProcess("mosquitto", [binary, "-c", str(conf)],
                                   self.workdir / f"mosquitto-{self.port}.log")
        await self.proc.start()
        await self.proc.wait_port(self.port, timeout=10)

    async def stop(self) -> None:
        if self.proc is not None:
            await self.proc.stop()

    async def __aenter__(self) -> Mosquitto:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


@dataclass
class Received:
    topic: str
    payload: bytes

    def json(self) -> Any:
        return orjson.loads(self.payload)


class Probe:
    """An MQTT client of the test: records everything it receives."""

    def __init__(self, port: int, client_id: str = "") -> None:
        self.port = port
        self.client = gmqtt.Client(client_id or f"probe-{free_port()}")
        self.messages: list[Received] = []
        self._changed = asyncio.Event()
        self.client.on_message = self._on_message

    def _on_message(self, _c: object, topic: str, payload: bytes, _qos: int, _p: object) -> int:
        self.messages.append(Received(topic, payload))
        self._changed.set()
        return 0

    async def __aenter__(self) -> Probe:
        await self.client.connect("127.0.0.1", self.port, version=MQTTv311)
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.disconnect(), 2)

    async def subscribe(self, *filters: str) -> None:
        for f in filters:
            self.client.subscribe(f, qos=1)
        await asyncio.sleep(0.1)  # SUBACK: gmqtt has no awaitable subscribe

    def publish(self, topic: str, payload: Any, qos: int = 1) -> None:
        body = payload if isinstance(payload, bytes | str) else orjson.dumps(payload)
        self.client.publish(topic, body, qos=qos)

    def on(self, topic_filter: str) -> list[Received]:
        return [m for m in self.messages if topic_matches(topic_filter, m.topic)]

    async def next(self, topic_filter: str, *, after: int = 0, timeout: float = 10.0) -> Received:
        """The first message on ``topic_filter`` beyond the first ``after`` ones."""
        async with asyncio.timeout(timeout):
            while len(self.on(topic_filter)) <= after:
                self._changed.clear()
                await self._changed.wait()
        return self.on(topic_filter)[after]

    async def ask(self, topic: str, payload: dict[str, Any], *, timeout: float = 30.0,
                  every: float = 1.0) -> Received:
        """Publish ``payload`` (with an ``event_id``) on ``topic`` until its ``<topic>/result``
        with that event id arrives: a request published while edgecore is still subscribing
        reaches no one (QoS 0 on the edge's side), so one publish right after a start can be
        lost. Bounded by ``timeout``."""
        event_id, result = payload["event_id"], f"{topic}/result"
        async with asyncio.timeout(timeout):
            while True:
                seen = len(self.on(result))
                self.publish(topic, payload)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(every):  # then publish again
                        while (got := await self.next(result, after=seen, timeout=timeout)
                               ).json().get("event_id") != event_id:
                            seen += 1
                        return got

    def clear(self) -> None:
        self.messages.clear()


def mosquitto_pub(port: int, topic: str, payload: str) -> None:
    """Publish with the Debian client, as a person would (acceptance tests)."""
    exe = shutil.which("mosquitto_pub")
    assert exe, "mosquitto-clients is not installed (scripts/setup.sh installs it)"
    subprocess.run([exe, "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", topic,
                    "-m", payload], check=True, timeout=10)
