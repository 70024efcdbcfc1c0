"""The virtual driver: no hardware, the same skeleton as a real one.

Protocol config (all optional): ``failAfter`` (reads, then the device stops answering: for
tests of offline/online), ``latencyMs`` (each read and write takes this long).
Visitor config: ``kind`` ``sensor`` (a sine around ``base`` of ``amplitude`` over ``period``
seconds; writing it moves ``base``, as a thermostat's setpoint) or ``actuator`` (reads back
what was last written, from ``initial``).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from pykubeedge.mapper.config import ConfigError
from pykubeedge.mapper.driver import DeviceError, Driver
from pykubeedge.mapper.model import Device, Property


@dataclass
class Signal:
    kind: str
    base: float = 20.0
    amplitude: float = 5.0
    period: float = 60.0
    value: Any = 0


def _number(data: dict[str, Any], key: str, default: float) -> float:
    raw = data.get(key, default)
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ConfigError(f"{key} must be a number, got {raw!r}")
    return float(raw)


class VirtualDriver(Driver):
    protocol: ClassVar[str] = "virtual"

    def __init__(self, device: Device) -> None:
        self.latency = _number(device.config, "latencyMs", 0) / 1000
        self.fail_after = int(_number(device.config, "failAfter", 0))
        self.reads = 0
        self.up = False

    def visitor(self, prop: Property) -> Signal:
        data = prop.visitor
        kind = data.get("kind", "actuator" if prop.writable else "sensor")
        if kind not in ("sensor", "actuator"):
            raise ConfigError(f"kind {kind!r} is not sensor or actuator")
        period = _number(data, "period", 60)
        if period <= 0:
            raise ConfigError("period must be > 0")
        return Signal(kind, _number(data, "base", 20), _number(data, "amplitude", 5), period,
                      data.get("initial", 0))

    async def connect(self) -> None:
        await asyncio.sleep(self.latency)
        self.up = True

    async def read(self, visitor: Signal) -> Any:
        await asyncio.sleep(self.latency)
        self.reads += 1
        if not self.up or (self.fail_after and self.reads > self.fail_after):
            raise ConnectionError("the virtual device stopped answering")
        if visitor.kind == "sensor":
            phase = 2 * math.pi * (time.time() % visitor.period) / visitor.period
            return visitor.base + visitor.amplitude * math.sin(phase)
        return visitor.value

    async def write(self, visitor: Signal, value: Any) -> None:
        await asyncio.sleep(self.latency)
        if visitor.kind == "sensor":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise DeviceError(f"a sensor's setpoint must be a number, not {value!r}")
            visitor.base = float(value)
            return
        visitor.value = value

    async def close(self) -> None:
        self.up = False
