"""Devices through real processes (control plane, cloudcore, edgecore, mosquitto):

1. a desired value changed in the API server -> ``/twin/update/delta`` on MQTT (p50/p99);
2. a report on MQTT -> the DeviceStatus in the API server shows it (p50/p99);
3. twin updates per second one edgecore sustains from MQTT with the cloud connected (every
   update answered on ``/twin/update/result``), and the edgecore's RSS meanwhile.

    python bench/devices.py [--changes 200] [--updates 20000] [--devices 10] [--window 500]

Targets (issue 9): p99 <= 100 ms, p99 <= 1 s, >= 2,000 updates/s.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import gmqtt
import orjson
from gmqtt.mqtt.constants import MQTTv311

from _benchutil import percentiles
from pykubeedge.devcluster.process import ManagedProcess, free_port
from pykubeedge.edge.eventbus.broker import find_mosquitto, mosquitto_config
from pykubeedge.edge.eventbus.mqtt import parse_broker_url
from pykubeedge.keadm.localup import LocalUp
from pykubeedge.kube.informer import Informer, InformerEvent
from pykubeedge.kube.resources import DEVICEMODELS, DEVICES, DEVICESTATUSES

NS = "default"
DEADLINE_S = 300.0


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Mqtt:
    """The bench's MQTT client: publishes like devices, records arrival times per topic."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.client = gmqtt.Client(f"bench-{os.getpid()}")
        self.client.on_message = self._on_message
        self.arrivals: dict[str, list[tuple[float, bytes]]] = {}
        self.results = 0
        self.changed = asyncio.Event()

    def _on_message(self, _c: object, topic: str, payload: bytes, _q: int, _p: object) -> int:
        if topic.endswith("/twin/update/result"):
            self.results += 1
        else:
            self.arrivals.setdefault(topic, []).append((time.monotonic(), payload))
        self.changed.set()
        return 0

    async def start(self) -> None:
        await self.client.connect("127.0.0.1", self.port, version=MQTTv311)
        for topic in ("$hw/events/device/+/+/twin/update/delta",
                      "$hw/events/device/+/+/twin/update/result"):
            self.client.subscribe(topic, qos=0)
        await asyncio.sleep(0.2)

    def publish(self, topic: str, payload: object) -> None:
        self.client.publish(topic, orjson.dumps(payload), qos=0)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--window", type=int, default=500)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pykubeedge-bench-devices-"))
    binary = find_mosquitto()
    assert binary, "mosquitto is not installed"
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(mosquitto_config(parse_broker_url(f"tcp://127.0.0.1:{port}"), 1_000_000))
    broker = ManagedProcess("mosquitto", [binary, "-c", str(conf)], workdir / "mosquitto.log")
    await broker.start()
    await broker.wait_port(port)
    try:
        async with LocalUp(tier="minimal", workdir=workdir / "up", demo=False, runtime="fake",
                           mqtt_url=f"tcp://127.0.0.1:{port}") as up:
            await run(up, port, args)
    finally:
        await broker.stop()
        if os.environ.get("PYKUBEEDGE_KEEP") != "1":
            shutil.rmtree(workdir, ignore_errors=True)


async def run(up: LocalUp, port: int, args: argparse.Namespace) -> None:
    assert up.kube is not None and up.edgecore is not None and up.edgecore.pid
    kube = up.kube
    mqtt = Mqtt(port)
    await mqtt.start()
    names = [f"bench-dev-{i:02d}" for i in range(max(1, args.devices))]
    await kube.create(DEVICEMODELS, {"metadata": {"name": "bench-model", "namespace": NS},
                                     "spec": {"protocol": "virtual", "properties": [
                                         {"name": "v", "type": "INT"}]}})
    status_seen: dict[str, dict[str, float]] = {n: {} for n in names}

    async def on_status(ev: InformerEvent) -> None:
        twins = (ev.obj.get("status") or {}).get("twins") or []
        name = ev.obj["metadata"]["name"]
        if twins and name in status_seen:
            value = (twins[0].get("reported") or {}).get("value")
            if value:
                status_seen[name].setdefault(value, time.monotonic())

    informer = Informer(kube, DEVICESTATUSES, on_status, namespace=NS)
    watch = asyncio.create_task(informer.run())
    await informer.synced.wait()
    for name in names:
        await kube.create(DEVICES, {"metadata": {"name": name, "namespace": NS}, "spec": {
            "deviceModelRef": {"name": "bench-model"}, "nodeName": up.node,
            "properties": [{"name": "v", "desired": {"value": "0"}}]}})
    first = f"$hw/events/device/{NS}/{names[0]}"
    # The edge knows the device once it answers a report of it.
    deadline = time.monotonic() + 60
    while "1" not in status_seen[names[0]] and time.monotonic() < deadline:
        for name in names:
            mqtt.publish(f"$hw/events/device/{NS}/{name}/twin/update",
                         {"event_id": "", "timestamp": 0, "twin": {"v": {"actual": {
                             "value": "1"}}}})
        await asyncio.sleep(0.2)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
          f"{len(names)} devices on edge node {up.node}, mosquitto on 127.0.0.1:{port}")

    # 1. desired (API server) -> delta (MQTT)
    delta_topic = f"{first}/twin/update/delta"
    lat: list[float] = []
    for i in range(1, args.changes + 1):
        value = str(1000 + i)
        before = len(mqtt.arrivals.get(delta_topic, []))
        await kube.patch(DEVICES, names[0], {"spec": {"properties": [
            {"name": "v", "desired": {"value": value}}]}}, namespace=NS)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10:
            got = mqtt.arrivals.get(delta_topic, [])[before:]
            hit = next((t for t, p in got if orjson.loads(p)["delta"].get("v") == value), None)
            if hit is not None:
                lat.append(hit - t0)
                break
            mqtt.changed.clear()
            await asyncio.wait_for(mqtt.changed.wait(), 10)
    q = percentiles(lat)
    print(f"desired change in the API server -> MQTT delta ({q['n']} changes): "
          f"p50 {q['p50'] * 1000:.1f} ms  p99 {q['p99'] * 1000:.1f} ms  "
          f"max {q['max'] * 1000:.1f} ms")

    # 2. report (MQTT) -> DeviceStatus (API server)
    lat = []
    for i in range(1, args.changes + 1):
        value = str(2000 + i)
        t0 = time.monotonic()
        mqtt.publish(f"{first}/twin/update", {"event_id": f"r{i}", "timestamp": 0, "twin": {
            "v": {"actual": {"value": value}}}})
        while value not in status_seen[names[0]] and time.monotonic() - t0 < 10:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        if value in status_seen[names[0]]:
            lat.append(status_seen[names[0]][value] - t0)
    q = percentiles(lat)
    print(f"MQTT report -> DeviceStatus ({q['n']} reports, one at a time): "
          f"p50 {q['p50'] * 1000:.1f} ms  p99 {q['p99'] * 1000:.1f} ms  "
          f"max {q['max'] * 1000:.1f} ms")

    # 3. throughput, the cloud connected
    total = max(1, args.updates)
    base = mqtt.results
    rss_peak = rss_kb(up.edgecore.pid)
    rss_idle = rss_peak
    t0 = time.monotonic()
    sent = 0
    while mqtt.results - base < total and time.monotonic() - t0 < DEADLINE_S:
        while sent < total and sent - (mqtt.results - base) < args.window:
            name = names[sent % len(names)]
            mqtt.publish(f"$hw/events/device/{NS}/{name}/twin/update",
                         {"event_id": f"t{sent}", "timestamp": 0,
                          "twin": {"v": {"actual": {"value": str(10_000 + sent)}}}})
            sent += 1
        mqtt.changed.clear()
        await asyncio.wait_for(mqtt.changed.wait(), 10)
        if sent % 2000 < args.window:
            rss_peak = max(rss_peak, rss_kb(up.edgecore.pid))
    elapsed = time.monotonic() - t0
    done = mqtt.results - base
    rss_peak = max(rss_peak, rss_kb(up.edgecore.pid))
    print(f"twin updates from MQTT, cloud connected: {done}/{total} answered in {elapsed:.2f}s"
          f" = {done / elapsed:,.0f} updates/s (window {args.window}, {len(names)} devices)")
    print(f"edgecore RSS: {rss_idle / 1024:.1f} MB before, {rss_peak / 1024:.1f} MB peak "
          "during the run")
    last = {names[i % len(names)]: str(10_000 + i) for i in range(total)}
    t1 = time.monotonic()
    while time.monotonic() - t1 < 60 and any(  # noqa: ASYNC110
            v not in status_seen[n] for n, v in last.items()):
        await asyncio.sleep(0.05)
    missing = [n for n, v in last.items() if v not in status_seen[n]]
    print(f"every device's last value in its DeviceStatus {time.monotonic() - t1:.2f}s after "
          f"the last answer" + (f" (MISSING: {missing})" if missing else ""))
    watch.cancel()
    await asyncio.gather(watch, return_exceptions=True)
    await mqtt.client.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
