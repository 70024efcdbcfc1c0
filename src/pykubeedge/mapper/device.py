"""One device at work: its driver connected (reconnects with capped, jittered backoff), each
property read at its ``collectCycle`` and reported at its ``reportCycle`` (one
``ReportDeviceStatus`` with every due property), desired values written when they change (then
read back and reported at once), the state (``online``, ``offline`` when the device does not
answer, ``unhealthy`` while a property cannot be used) reported when it changes.

Errors are per property: a bad visitor config, a register the device refuses or a desired
value of the wrong type fails that property (logged once, kept in :attr:`PropState.error`,
shown by the REST API) and makes the device ``unhealthy``; the others carry on.

    runner = DeviceRunner(device, ModbusDriver, reporter)
    task = asyncio.create_task(runner.run())
    runner.set_desired(new_device)      # kubectl patch of a desired value
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pykubeedge.api.dmi.v1beta1 import api_pb2 as pb
from pykubeedge.core.backoff import Backoff
from pykubeedge.mapper.config import ConfigError
from pykubeedge.mapper.convert import ValueTypeError, raw_for_write, reported, scale_of
from pykubeedge.mapper.driver import DeviceError, Driver
from pykubeedge.mapper.model import Device, Property

log = logging.getLogger(__name__)

ONLINE, OFFLINE, UNHEALTHY = "online", "offline", "unhealthy"
IO_TIMEOUT_S = 5.0
HEALTH_EVERY_S = 1.0


class Reporter(Protocol):
    async def report_twins(self, device: Device, twins: list[pb.Twin]) -> bool: ...
    async def report_state(self, device: Device, state: str) -> bool: ...


Push = Callable[[Device, "PropState"], Awaitable[None]]


@dataclass
class PropState:
    prop: Property
    visitor: Any = None
    scale: float = 1.0
    value: str | None = None  # the last value read, as the twin's string
    at_ms: int = 0
    config_error: str = ""
    read_error: str = ""
    write_error: str = ""
    applied: str | None = None  # the desired value last written (observedDesired)
    pending: str | None = None  # a desired value to write
    next_read: float = 0.0
    next_report: float = 0.0
    reads: int = 0
    reported: int = 0

    @property
    def error(self) -> str:
        return self.config_error or self.write_error or self.read_error


class DeviceRunner:
    def __init__(self, device: Device, driver_cls: type[Driver], reporter: Reporter, *,
                 push: Push | None = None, backoff: Backoff | None = None,
                 io_timeout: float = IO_TIMEOUT_S) -> None:
        self.device = device
        self.driver_cls = driver_cls
        self.reporter = reporter
        self.push = push
        self.backoff = backoff or Backoff(initial=0.5, cap=10.0)
        self.io_timeout = io_timeout
        self.props: dict[str, PropState] = {p.name: PropState(p, pending=p.desired)
                                            for p in device.properties}
        self.state = ""
        self.device_error = device.error
        self.driver: Driver | None = None
        self.wakeup = asyncio.Event()
        self.connected = False
        self._reported_state = ""
        self.write_latencies: list[float] = []  # seconds, set_desired → written (bench)
        self._desired_at: dict[str, float] = {}

    # -- from the mapper ---------------------------------------------------------------------

    def same_shape(self, device: Device) -> bool:
        """Whether ``device`` differs from the running one in desired values only."""
        old, new = self.device, device
        if (old.protocol, old.config, old.model, old.error) != (new.protocol, new.config,
                                                                new.model, new.error):
            return False
        return [_shape(p) for p in old.properties] == [_shape(p) for p in new.properties]

    def set_desired(self, device: Device) -> None:
        """Take the desired values of ``device`` (same shape); changed ones are written."""
        self.device = device
        for prop in device.properties:
            ps = self.props[prop.name]
            ps.prop = prop
            if prop.desired is not None and prop.desired != ps.applied:
                ps.pending = prop.desired
                ps.write_error = ""
                self._desired_at[prop.name] = time.monotonic()
        self.wakeup.set()

    def resend_state(self) -> None:
        """After a registration: report the state again (edgecore may have restarted)."""
        self._reported_state = ""
        for ps in self.props.values():
            ps.next_report = 0.0
        self.wakeup.set()

    def twins(self) -> list[pb.Twin]:
        return [self._twin(ps) for ps in self.props.values() if ps.value is not None]

    # -- the loop --------------------------------------------------------------------------------

    async def run(self) -> None:
        dev = self.device
        try:
            if self.device_error:
                raise ConfigError(self.device_error)
            self.driver = self.driver_cls(dev)
        except ConfigError as exc:
            self.device_error = f"invalid protocol config: {exc}"
            log.error("device %s: %s; it is not served until it is updated", dev.id,
                      self.device_error)
            await self._set_state(UNHEALTHY)
            await asyncio.Event().wait()  # until removed or updated
        driver = self.driver
        assert driver is not None
        for ps in self.props.values():
            self._parse_visitor(driver, ps)
        try:
            while True:
                try:
                    async with asyncio.timeout(self.io_timeout):
                        await driver.connect()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    await self._lost(driver, f"cannot connect: {_why(exc)}")
                    continue
                self.connected = True
                self.backoff.reset()
                log.info("device %s: connected", dev.id)
                try:
                    await self._serve(driver)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    await self._lost(driver, f"stopped answering: {_why(exc)}")
        finally:
            self.connected = False
            with contextlib.suppress(Exception):
                await driver.close()

    async def _lost(self, driver: Driver, why: str) -> None:
        self.connected = False
        with contextlib.suppress(Exception):
            await driver.close()
        if self.state != OFFLINE:
            log.warning("device %s: %s; offline, reconnecting", self.device.id, why)
        await self._set_state(OFFLINE)
        delay = self.backoff.next_delay()
        self.wakeup.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self.wakeup.wait()

    def _parse_visitor(self, driver: Driver, ps: PropState) -> None:
        prop = ps.prop
        if prop.error:
            ps.config_error = prop.error
        else:
            try:
                ps.scale = scale_of(prop.visitor)
                ps.visitor = driver.visitor(prop)
            except (ConfigError, ValueTypeError) as exc:
                ps.config_error = f"invalid visitor config: {exc}"
        if ps.config_error:
            log.error("device %s property %s: %s; the property is not served",
                      self.device.id, prop.name, ps.config_error)

    async def _serve(self, driver: Driver) -> None:
        next_health = 0.0
        while True:
            now = time.monotonic()
            await self._write_pending(driver)
            readable = [ps for ps in self.props.values() if not ps.config_error]
            for ps in readable:
                if ps.next_read <= now:
                    await self._read(driver, ps)
                    ps.next_read = max(ps.next_read + ps.prop.collect_cycle_s, now)
                if self.wakeup.is_set():  # a desired value arrived: write it between reads
                    self.wakeup.clear()
                    await self._write_pending(driver)
            if not readable and now >= next_health:
                async with asyncio.timeout(self.io_timeout):
                    ok = await driver.health()
                if not ok:
                    raise ConnectionError("the driver reports the device unhealthy")
                next_health = now + HEALTH_EVERY_S
            await self._set_state(UNHEALTHY if self._broken() else ONLINE)
            await self._report_due(time.monotonic())
            deadlines = [ps.next_read for ps in readable]
            deadlines += [ps.next_report for ps in self.props.values()
                          if ps.value is not None and ps.prop.report_to_cloud]
            if not readable:
                deadlines.append(next_health)
            delay = max(0.0, min(deadlines) - time.monotonic()) if deadlines else 1.0
            self.wakeup.clear()
            if any(ps.pending is not None and not ps.config_error
                   for ps in self.props.values()):
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.wakeup.wait()

    def _broken(self) -> bool:
        return bool(self.device_error) or any(ps.error for ps in self.props.values())

    async def _read(self, driver: Driver, ps: PropState) -> None:
        try:
            async with asyncio.timeout(self.io_timeout):
                raw = await driver.read(ps.visitor)
        except DeviceError as exc:
            if ps.read_error != str(exc):
                log.error("device %s property %s: read failed: %s", self.device.id,
                          ps.prop.name, exc)
            ps.read_error = str(exc)
            return
        except ConfigError as exc:
            ps.config_error = f"invalid visitor config: {exc}"
            log.error("device %s property %s: %s", self.device.id, ps.prop.name,
                      ps.config_error)
            return
        if ps.read_error:
            log.info("device %s property %s: reads again", self.device.id, ps.prop.name)
        ps.read_error = ""
        ps.value = reported(raw, ps.prop.type, ps.scale)
        ps.at_ms = round(time.time() * 1000)
        ps.reads += 1
        if self.push is not None and (ps.prop.push_http or ps.prop.push_mqtt):
            await self.push(self.device, ps)

    async def _write_pending(self, driver: Driver) -> None:
        for ps in self.props.values():
            if ps.pending is None or ps.config_error:
                continue
            value, ps.pending = ps.pending, None
            prop = ps.prop
            try:
                if not prop.writable:
                    raise ValueTypeError(f"the property is {prop.access_mode}")
                raw = raw_for_write(value, prop.type, ps.scale, minimum=prop.minimum,
                                    maximum=prop.maximum)
                async with asyncio.timeout(self.io_timeout):
                    await driver.write(ps.visitor, raw)
            except (ValueTypeError, DeviceError, ConfigError) as exc:
                ps.write_error = f"desired value {value!r} not written: {exc}"
                log.error("device %s property %s: %s", self.device.id, prop.name,
                          ps.write_error)
                continue
            except BaseException:
                ps.pending = value  # the connection went: write it after reconnecting
                raise
            ps.write_error = ""
            ps.applied = value
            started = self._desired_at.pop(prop.name, None)
            if started is not None:
                self.write_latencies.append(time.monotonic() - started)
                del self.write_latencies[:-10_000]
            log.info("device %s property %s: wrote desired value %s", self.device.id,
                     prop.name, value)
            await self._read(driver, ps)
            ps.next_report = 0.0  # report the observed value now

    async def _report_due(self, now: float) -> None:
        due = [ps for ps in self.props.values() if (ps.value is not None or ps.error)
               and ps.prop.report_to_cloud and ps.next_report <= now]
        if not due:
            return
        if await self.reporter.report_twins(self.device, [self._twin(ps) for ps in due]):
            for ps in due:
                ps.reported += 1
        for ps in due:
            ps.next_report = now + ps.prop.report_cycle_s

    def _twin(self, ps: PropState) -> pb.Twin:
        twin = pb.Twin(propertyName=ps.prop.name)
        twin.reported.value = ps.value or ""
        twin.reported.metadata["timestamp"] = str(ps.at_ms)
        twin.reported.metadata["type"] = ps.prop.type
        if ps.error:  # the DeviceStatus says why, beside the last good value (if any)
            twin.reported.metadata["error"] = ps.error
        twin.observedDesired.value = ps.applied or ""
        return twin

    async def _set_state(self, state: str) -> None:
        if state != self.state:
            if self.state:
                log.info("device %s: %s -> %s", self.device.id, self.state, state)
            self.state = state
        if state != self._reported_state and await self.reporter.report_state(self.device,
                                                                              state):
            self._reported_state = state


def _shape(p: Property) -> tuple[Any, ...]:
    return (p.name, p.type, p.access_mode, p.minimum, p.maximum, p.visitor, p.error,
            p.collect_cycle_s, p.report_cycle_s, p.report_to_cloud, p.push_http, p.push_mqtt)


def _why(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
