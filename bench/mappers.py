"""The modbus mapper through real processes (control plane, cloudcore, edgecore with its
internal mosquitto, the mapper process) and pymodbus's server (in this process) as the PLC:

1. properties per second one mapper polls and reports: one Device with ``--properties``
   holding registers at 1 s collect and report cycles; counted as reads the PLC serves and as
   twins edgecore accepts (its ``twin/update/result`` on MQTT);
2. a desired value patched in the API server -> the register written on the PLC (p50/p99);
3. the mapper's RSS.

    python bench/mappers.py [--properties 100] [--seconds 20] [--changes 50]
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gmqtt
import orjson
import yaml
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from _benchutil import percentiles
from pykubeedge.devcluster.process import ManagedProcess, free_port
from pykubeedge.keadm.localup import LocalUp
from pykubeedge.kube.resources import DEVICEMODELS, DEVICES

NS = "default"
NAME = "bench-plc"
SETPOINT = 1000  # the writable register


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Plc:
    """pymodbus's server; counts reads, timestamps writes of the setpoint register."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reads = 0
        self.writes: list[tuple[float, int]] = []
        self.written = asyncio.Event()
        regs = SimData(0, count=SETPOINT + 1, values=7, datatype=DataType.REGISTERS)
        bits = SimData(0, count=16, values=False, datatype=DataType.BITS)
        one = SimData(0, count=1, values=0, datatype=DataType.REGISTERS)
        self.device = SimDevice(id=0, simdata=([bits], [bits], [regs], [one]),
                                action=self._action)
        self.server = ModbusTcpServer(self.device, address=("127.0.0.1", port))

    async def _action(self, function_code: int, _start: int, address: int, count: int,
                      _current: list[int], set_values: Any) -> None:
        if set_values is None:
            self.reads += count
        elif address == SETPOINT:
            self.writes.append((time.monotonic(), int(set_values[0])))
            self.written.set()
        return None


def device_objects(node: str, port: int, n: int, setpoint: int) -> tuple[dict[str, Any],
                                                                         dict[str, Any]]:
    model = {"metadata": {"name": f"{NAME}-model", "namespace": NS},
             "spec": {"protocol": "modbus", "properties": [
                 {"name": f"r{i}", "type": "INT", "accessMode": "ReadOnly"} for i in range(n)]
                 + [{"name": "sp", "type": "INT", "accessMode": "ReadWrite"}]}}
    return model, {
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {"deviceModelRef": {"name": f"{NAME}-model"}, "nodeName": node,
                 "protocol": {"protocolName": "modbus", "configData": {
                     "ip": "127.0.0.1", "port": port}},
                 "properties": properties(n, setpoint)}}


def properties(n: int, setpoint: int) -> list[dict[str, Any]]:
    def visitor(offset: int) -> dict[str, Any]:
        return {"protocolName": "modbus", "configData": {"register": "HoldingRegister",
                                                         "offset": offset}}
    props: list[dict[str, Any]] = [
        {"name": f"r{i}", "collectCycle": 1000, "reportCycle": 1000, "reportToCloud": True,
         "visitors": visitor(i)} for i in range(n)]
    props.append({"name": "sp", "collectCycle": 1000, "reportCycle": 1000,
                  "reportToCloud": True, "visitors": visitor(SETPOINT),
                  "desired": {"value": str(setpoint)}})
    return props


async def main() -> None:
    logging.getLogger("pymodbus").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser()
    parser.add_argument("--properties", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--changes", type=int, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pke-bench-mappers-"))
    plc = Plc(free_port())
    await plc.server.serve_forever(background=True)
    async with LocalUp(tier="minimal", runtime="fake", demo=False, node="bench-edge",
                       workdir=work / "up") as up:
        assert up.kube is not None
        cfg = work / "mapper.yaml"
        cfg.write_text(yaml.safe_dump({
            "grpc_server": {"socket_path": str(up.edge_dir / "modbus.sock")},
            "common": {"name": "modbus-mapper", "protocol": "modbus",
                       "edgecore_sock": str(up.edge_dir / "dmi.sock"), "http_port": "0"}}))
        mapper = ManagedProcess("mapper", [sys.executable, "-m", "pykubeedge.mapper",
                                           "modbus", "--config", str(cfg), "--log-level",
                                           "WARNING"], work / "mapper.log")
        await mapper.start()
        twins = 0
        client = gmqtt.Client("bench-mappers")

        def on_message(_c: object, _t: str, payload: bytes, _q: int, _p: object) -> int:
            nonlocal twins
            body = orjson.loads(payload)
            twins += len(body.get("twin") or {})
            return 0

        client.on_message = on_message
        await client.connect("127.0.0.1", up.mqtt_port)
        client.subscribe(f"$hw/events/device/{NS}/{NAME}/twin/update/result", qos=0)
        try:
            model, dev = device_objects(up.node, plc.port, args.properties, 1)
            await up.kube.create(DEVICEMODELS, model)
            await up.kube.create(DEVICES, dev)
            t0 = time.monotonic()
            while not plc.writes and time.monotonic() - t0 < 120:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            print(f"device received and first desired written {time.monotonic() - t0:.2f}s "
                  "after the Device was created")
            await asyncio.sleep(3)  # steady state
            reads0, twins0, t0 = plc.reads, twins, time.monotonic()
            rss = [rss_kb(mapper.pid or 0)]
            while time.monotonic() - t0 < args.seconds:
                await asyncio.sleep(1)
                rss.append(rss_kb(mapper.pid or 0))
            dt = time.monotonic() - t0
            print(f"{args.properties + 1} properties at 1 s cycles: "
                  f"{(plc.reads - reads0) / dt:,.1f} registers polled/s, "
                  f"{(twins - twins0) / dt:,.1f} properties reported/s accepted by edgecore "
                  f"(over {dt:.1f} s)")
            lat: list[float] = []
            for i in range(args.changes):
                value = 100 + i
                plc.written.clear()
                before = len(plc.writes)
                t1 = time.monotonic()
                await up.kube.patch(DEVICES, NAME, {"spec": {"properties": properties(
                    args.properties, value)}}, namespace=NS)
                while time.monotonic() - t1 < 30:
                    hit = next((t for t, v in plc.writes[before:] if v == value), None)
                    if hit is not None:
                        lat.append(hit - t1)
                        break
                    plc.written.clear()
                    try:
                        await asyncio.wait_for(plc.written.wait(), 30)
                    except TimeoutError:
                        break
                rss.append(rss_kb(mapper.pid or 0))
            q = percentiles(lat)
            print(f"desired patched in the API server -> register written ({q['n']} changes): "
                  f"p50 {q['p50'] * 1000:.1f} ms  p99 {q['p99'] * 1000:.1f} ms  "
                  f"max {q['max'] * 1000:.1f} ms")
            print(f"mapper RSS: median {sorted(rss)[len(rss) // 2] / 1024:.1f} MB, "
                  f"peak {max(rss) / 1024:.1f} MB")
        finally:
            await client.disconnect()
            await mapper.stop()
            await plc.server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
