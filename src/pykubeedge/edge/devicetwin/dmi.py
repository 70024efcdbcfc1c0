"""DMI in edgecore (upstream ``dmiserver``, ``dmiclient``, ``dmicache``, ``dtmanager/dmiworker``).

- The ``DeviceManagerService`` server on ``<dmiSockPath>/dmi.sock`` (a ``.sock`` path names the
  socket's directory, as upstream). A mapper's ``MapperRegister`` is answered with the devices
  of its protocol and their models; ``ReportDeviceStatus`` and ``ReportDeviceStates`` become
  the very messages EventBus makes of MQTT ``twin/update`` and ``state/update`` (source
  ``bus``, resource = base64url of the topic), sent to DeviceTwin, so both paths are one.
  Requests share upstream's token bucket (1 per second, burst 100); beyond it they are refused
  with ``RESOURCE_EXHAUSTED``.
- One client per registered mapper (keyed by protocol, as upstream) calling its
  ``DeviceMapperService`` when a Device or DeviceModel of that protocol changes. Calls go out
  in order from one queue per mapper, each with a 10 s timeout; while the mapper is down a call
  is retried with capped, jittered backoff for up to ``retry_for`` seconds, then dropped with an
  error (the mapper gets everything again when it registers). A mapper that registers again
  (it restarted) replaces its client: its queue is dropped, as the registration's answer
  brings it up to date. The client watches its channel and logs when the mapper goes away
  and comes back.
- The cache: Device and DeviceModel objects as MetaManager stores them, loaded from its
  ``meta`` table at start (edgecore restarted) and kept current from MetaManager's messages.

    dmi = DMI("/etc/kubeedge/", deliver=send_to_twin)
    dmi.load(devices, models)
    tg.create_task(dmi.run())
    dmi.object_changed("device", "update", obj, bound=True)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import grpc
import orjson

from pykubeedge.api.dmi import CHANNEL_OPTIONS
from pykubeedge.api.dmi.v1beta1 import api_pb2 as pb
from pykubeedge.api.dmi.v1beta1 import api_pb2_grpc as pb_grpc
from pykubeedge.core.backoff import Backoff
from pykubeedge.core.message import Message
from pykubeedge.core.objects import namespace_of
from pykubeedge.core.ratelimit import TokenBucket
from pykubeedge.core.topics import STATE_UPDATE, TWIN_UPDATE, device_topic, encode_resource
from pykubeedge.edge.devicetwin.dmiconv import device_to_pb, model_to_pb, protocol_of

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Deliver = Callable[[Message], Awaitable[None]]

SOCKET_NAME: Final = "dmi.sock"
SOCKET_CHECK_S: Final = 1.0  # how often a serving DMI checks that its socket is still its own
SOCKET_CHECKS_MAX: Final = 10**9  # a bound on the loop: decades of checks
CALL_TIMEOUT_S: Final = 10.0
LIMIT_RATE: Final = 1.0  # upstream: rate.Every(1000 ms), burst 100
LIMIT_BURST: Final = 100
RETRY_FOR_S: Final = 300.0
QUEUE_MAX: Final = 10_000
MAX_ERROR_CHARS: Final = 512  # of a mapper's error text kept in a twin


def socket_path(dmi_sock_path: str) -> str:
    """``modules.deviceTwin.dmiSockPath`` → the socket: ``<dir>/dmi.sock``.

    >>> socket_path("/etc/kubeedge/"), socket_path("/run/x/dmi.sock"), socket_path("")
    ('/etc/kubeedge/dmi.sock', '/run/x/dmi.sock', '/etc/kubeedge/dmi.sock')
    """
    path = dmi_sock_path or "/etc/kubeedge/"
    if path.endswith(".sock"):
        path = os.path.dirname(path)
    return os.path.join(path, SOCKET_NAME)


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name') or ''}"


def _model_key(dev: Mapping[str, Any]) -> str:
    spec = dev.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    ref = spec.get("deviceModelRef")
    name = ref.get("name") if isinstance(ref, Mapping) else ""
    return f"{namespace_of(dev)}/{name}"


@dataclass
class _Call:
    method: str
    request: Any
    what: str
    first_try: float = field(default_factory=time.monotonic)


class MapperClient:
    """The client of one registered mapper's ``DeviceMapperService``."""

    def __init__(self, info: pb.MapperInfo, *, timeout: float = CALL_TIMEOUT_S,
                 retry_for: float = RETRY_FOR_S) -> None:
        self.name = info.name
        self.protocol = info.protocol
        self.address = info.address.decode(errors="replace")
        target = self.address if "://" in self.address else f"unix://{self.address}"
        self.channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.stub = pb_grpc.DeviceMapperServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.timeout = timeout
        self.retry_for = retry_for
        self.queue: asyncio.Queue[_Call] = asyncio.Queue(QUEUE_MAX)
        self.calls = 0
        self.failed = 0

    def submit(self, method: str, request: Any, what: str) -> None:
        try:
            self.queue.put_nowait(_Call(method, request, what))
        except asyncio.QueueFull:
            log.error("DMI: the queue to mapper %s is full; %s dropped (it gets everything "
                      "again when it registers)", self.name, what)

    async def get_device(self, namespace: str, name: str) -> pb.Device | None:
        """``GetDevice``: the mapper's view of a device (its twins as last read), or None."""
        try:
            answer = await self.stub.GetDevice(pb.GetDeviceRequest(
                deviceName=name, deviceNamespace=namespace), timeout=self.timeout)
        except grpc.aio.AioRpcError as err:
            log.info("DMI: GetDevice %s/%s from mapper %s: %s: %s", namespace, name,
                     self.name, err.code().name, err.details())
            return None
        device: pb.Device = answer.device
        return device

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._watch(), name=f"dmi-watch-{self.name}")
                while True:
                    call = await self.queue.get()
                    await self._deliver(call)
        finally:
            await self.channel.close()

    async def _deliver(self, call: _Call) -> None:
        backoff = Backoff(initial=0.2, cap=5.0)
        while True:
            try:
                await getattr(self.stub, call.method)(call.request, timeout=self.timeout)
                self.calls += 1
                return
            except grpc.aio.AioRpcError as err:
                code = err.code()
                if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    self.failed += 1
                    log.error("DMI: mapper %s refused %s: %s: %s", self.name, call.what,
                              code.name, err.details())
                    return
                if time.monotonic() - call.first_try > self.retry_for:
                    self.failed += 1
                    log.error("DMI: mapper %s unreachable for %.0f s; %s dropped (it gets "
                              "everything again when it registers)", self.name,
                              self.retry_for, call.what)
                    return
                delay = backoff.next_delay()
                log.info("DMI: mapper %s unreachable (%s); retrying %s in %.1f s", self.name,
                         code.name, call.what, delay)
                await asyncio.sleep(delay)

    async def _watch(self) -> None:
        """Log when the mapper goes away and comes back (its socket connection)."""
        seen_ready = False
        state = self.channel.get_state(try_to_connect=True)
        while True:
            if state is grpc.ChannelConnectivity.READY:
                if not seen_ready:
                    log.info("DMI: mapper %s (protocol %s) connected at %s", self.name,
                             self.protocol, self.address)
                seen_ready = True
            elif seen_ready and state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                                          grpc.ChannelConnectivity.IDLE):
                log.warning("DMI: mapper %s (protocol %s) at %s went away; changes are held "
                            "until it is back or registers again", self.name, self.protocol,
                            self.address)
                seen_ready = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    await self.channel.wait_for_state_change(state)
            state = self.channel.get_state(try_to_connect=True)
            if state is not grpc.ChannelConnectivity.READY:
                await asyncio.sleep(0.5)


class DMI:
    def __init__(self, dmi_sock_path: str, deliver: Deliver, *, rate: float = LIMIT_RATE,
                 burst: int = LIMIT_BURST, timeout: float = CALL_TIMEOUT_S,
                 retry_for: float = RETRY_FOR_S,
                 wall_ms: Callable[[], int] = lambda: round(time.time() * 1000)) -> None:
        self.path = socket_path(dmi_sock_path)
        self.deliver = deliver
        self.limiter = TokenBucket(rate, burst, time.monotonic())
        self.timeout = timeout
        self.retry_for = retry_for
        self.wall_ms = wall_ms
        self.devices: dict[str, Obj] = {}  # "<ns>/<name>" → Device bound to this node
        self.models: dict[str, Obj] = {}
        self.mappers: dict[str, MapperClient] = {}  # protocol → client
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.ready = asyncio.Event()
        self.refused = 0

    # -- the cache -----------------------------------------------------------------------------

    def load(self, devices: list[Obj], models: list[Obj]) -> None:
        self.devices = {_key(d): d for d in devices}
        self.models = {_key(m): m for m in models}

    def object_changed(self, kind: str, operation: str, obj: Obj, *, key: str = "",
                       bound: bool = True) -> None:
        """A Device (``bound``: to this node) or DeviceModel inserted, updated or deleted."""
        key = key or _key(obj)
        deleted = operation == "delete"
        if kind == "devicemodel":
            old = self.models.pop(key, None)
            if not deleted:
                self.models[key] = obj
            self._model_to_mappers(key, old, None if deleted else obj)
            return
        old = self.devices.pop(key, None)
        if not deleted and bound:
            self.devices[key] = obj
        new = self.devices.get(key)
        if old is not None and (new is None or protocol_of(old) != protocol_of(new)):
            client = self.mappers.get(protocol_of(old))
            if client is not None:
                ns, name = key.split("/", 1)
                client.submit("RemoveDevice", pb.RemoveDeviceRequest(
                    deviceName=name, deviceNamespace=ns), f"RemoveDevice {key}")
            old = None
        if new is not None:
            client = self.mappers.get(protocol_of(new))
            if client is None:
                log.debug("DMI: no mapper for protocol %r yet (device %s)", protocol_of(new),
                          key)
                return
            model = self.models.get(_model_key(new))
            if model is not None and old is None:
                client.submit("CreateDeviceModel", pb.CreateDeviceModelRequest(
                    model=model_to_pb(model)), f"CreateDeviceModel {_key(model)}")
            if old is None:
                client.submit("RegisterDevice", pb.RegisterDeviceRequest(
                    device=device_to_pb(new)), f"RegisterDevice {key}")
            else:
                client.submit("UpdateDevice", pb.UpdateDeviceRequest(
                    device=device_to_pb(new)), f"UpdateDevice {key}")

    def _model_to_mappers(self, key: str, old: Obj | None, new: Obj | None) -> None:
        protocols = {protocol_of(d) for d in self.devices.values() if _model_key(d) == key}
        ns, name = key.split("/", 1)
        for protocol in protocols:
            client = self.mappers.get(protocol)
            if client is None:
                continue
            if new is None:
                client.submit("RemoveDeviceModel", pb.RemoveDeviceModelRequest(
                    modelName=name, modelNamespace=ns), f"RemoveDeviceModel {key}")
            elif old is None:
                client.submit("CreateDeviceModel", pb.CreateDeviceModelRequest(
                    model=model_to_pb(new)), f"CreateDeviceModel {key}")
            else:
                client.submit("UpdateDeviceModel", pb.UpdateDeviceModelRequest(
                    model=model_to_pb(new)), f"UpdateDeviceModel {key}")

    # -- the server ----------------------------------------------------------------------------

    async def run(self) -> None:
        path = Path(self.path)
        try:
            while await self._serve(path):
                log.warning("DMI: %s was removed or replaced while serving; listening again",
                            path)
        finally:
            for task in self._tasks.values():
                task.cancel()
            for task in self._tasks.values():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _serve(self, path: Path) -> bool:
        """Serve on ``path`` until cancelled or unable to listen (False), or until the socket
        file is no longer ours (True: serve again). Mappers find edgecore only by that path,
        so a socket unlinked under a live server (by an operator, or by a stopped server's
        late clean-up) must not leave edgecore deaf."""
        try:
            _prepare_socket(path)
        except OSError as exc:
            log.error("DMI disabled: cannot use %s: %s", path, exc)
            return False
        server = grpc.aio.server()
        pb_grpc.add_DeviceManagerServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _Servicer(self), server)
        if not server.add_insecure_port(f"unix://{path}"):
            log.error("DMI disabled: cannot listen on %s", path)
            return False
        await server.start()
        ours = _inode(path)
        log.info("DMI: DeviceManagerService listening on unix://%s", path)
        self.ready.set()
        try:
            for _ in range(SOCKET_CHECKS_MAX):
                # gRPC's own timeout, never asyncio.wait_for: cancelling wait_for_termination
                # cancels the server's shared shutdown future (grpcio 1.85), after which every
                # later wait raises CancelledError and the DMI task ended, taking the socket.
                if not await server.wait_for_termination(SOCKET_CHECK_S):
                    log.error("DMI: the gRPC server on %s stopped by itself; listening again",
                              path)
                    await asyncio.sleep(SOCKET_CHECK_S)
                    return True
                if _inode(path) != ours:
                    return True
            return True
        finally:
            await server.stop(grace=1)
            await _socket_released(path, ours)

    async def get_device(self, device_id: str) -> pb.Device | None:
        """Ask the mapper serving ``<ns>/<name>`` for it (None: no such device or mapper)."""
        dev = self.devices.get(device_id)
        client = self.mappers.get(protocol_of(dev)) if dev is not None else None
        if client is None:
            return None
        ns, name = device_id.split("/", 1)
        return await client.get_device(ns, name)

    def allow(self) -> bool:
        ok = self.limiter.reserve(time.monotonic()) == 0.0
        if not ok:
            # Give the token back: a refused request must not push the next one further out.
            self.limiter._tokens += 1
            self.refused += 1
        return ok

    def register(self, info: pb.MapperInfo, with_data: bool) -> pb.MapperRegisterResponse:
        old = self.mappers.pop(info.protocol, None)
        task = self._tasks.pop(info.protocol, None)
        if task is not None:
            task.cancel()
        client = MapperClient(info, timeout=self.timeout, retry_for=self.retry_for)
        self.mappers[info.protocol] = client
        self._tasks[info.protocol] = asyncio.create_task(client.run(),
                                                         name=f"dmi-client-{info.name}")
        log.info("DMI: mapper %s %s (protocol %s, at %s) %s", info.name, info.version,
                 info.protocol, client.address, "registered again: bringing it up to date"
                 if old is not None else "registered")
        answer = pb.MapperRegisterResponse()
        if not with_data:
            return answer
        models: set[str] = set()
        for key, dev in sorted(self.devices.items()):
            if protocol_of(dev) != info.protocol:
                continue
            try:
                answer.deviceList.append(device_to_pb(dev))
            except Exception as exc:  # a broken object must not stop the registration
                log.error("DMI: device %s cannot be sent to mapper %s: %s", key, info.name, exc)
                continue
            mkey = _model_key(dev)
            if mkey in self.models and mkey not in models:
                models.add(mkey)
                answer.modelList.append(model_to_pb(self.models[mkey]))
        log.info("DMI: mapper %s gets %d device(s) and %d model(s)", info.name,
                 len(answer.deviceList), len(answer.modelList))
        return answer

    async def report_status(self, req: pb.ReportDeviceStatusRequest) -> None:
        twins: dict[str, Any] = {}
        for twin in req.reportedDevice.twins:
            entry: dict[str, Any] = {"actual": {"value": twin.reported.value}}
            error = twin.reported.metadata.get("error")
            if error:  # why the mapper has no good value (reported.metadata.error)
                entry["actual"]["metadata"] = {"error": error[:MAX_ERROR_CHARS]}
            if twin.observedDesired.value:
                entry["expected"] = {"value": twin.observedDesired.value}
            twins[twin.propertyName] = entry
        payload = {"event_id": "", "timestamp": self.wall_ms(), "twin": twins}
        await self._to_twin(f"{req.deviceNamespace or 'default'}/{req.deviceName}",
                            TWIN_UPDATE, payload)

    async def report_state(self, req: pb.ReportDeviceStatesRequest) -> None:
        payload = {"event_id": "", "timestamp": self.wall_ms(), "state": req.state}
        await self._to_twin(f"{req.deviceNamespace or 'default'}/{req.deviceName}",
                            STATE_UPDATE, payload)

    async def _to_twin(self, device_id: str, suffix: str, payload: Obj) -> None:
        topic = device_topic(device_id, suffix)
        await self.deliver(Message(source="bus", group="user", operation="response",
                                   resource=encode_resource(topic),
                                   content=orjson.dumps(payload).decode()))


async def _socket_released(path: Path, ours: int | None, within: float = 2.0) -> None:
    """Wait (bounded) until gRPC has unlinked the socket of a stopped server.

    gRPC core unlinks a unix socket when its listener shuts down, and on a busy machine that
    can land after ``server.stop`` returns; a server started again on the same path in the
    meantime would lose its fresh socket (``_serve`` notices that and listens again).
    """
    for _ in range(max(1, int(within / 0.02))):
        if _inode(path) != ours:
            return
        await asyncio.sleep(0.02)
    _prepare_socket(path)


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _prepare_socket(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class _Servicer(pb_grpc.DeviceManagerServiceServicer):
    def __init__(self, dmi: DMI) -> None:
        self.dmi = dmi

    async def _limit(self, context: grpc.aio.ServicerContext, what: str) -> None:
        if not self.dmi.allow():
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"fail to {what} because of too many requests")

    async def MapperRegister(self, request: pb.MapperRegisterRequest,
                             context: grpc.aio.ServicerContext) -> pb.MapperRegisterResponse:
        await self._limit(context, f"register mapper {request.mapper.name}")
        if not request.mapper.protocol:
            log.error("DMI: mapper %r registers without a protocol; refused",
                      request.mapper.name)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"fail to register mapper {request.mapper.name} because the "
                                f"protocol is empty")
        if not request.mapper.address:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"mapper {request.mapper.name} gives no address")
        return self.dmi.register(request.mapper, request.withData)

    async def ReportDeviceStatus(self, request: pb.ReportDeviceStatusRequest,
                                 context: grpc.aio.ServicerContext
                                 ) -> pb.ReportDeviceStatusResponse:
        await self._limit(context, f"report device status of {request.deviceName}")
        if not request.deviceName or not request.reportedDevice.twins:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "ReportDeviceStatusRequest has no device name or no twin data")
        await self.dmi.report_status(request)
        return pb.ReportDeviceStatusResponse()

    async def ReportDeviceStates(self, request: pb.ReportDeviceStatesRequest,
                                 context: grpc.aio.ServicerContext
                                 ) -> pb.ReportDeviceStatesResponse:
        await self._limit(context, f"report device states of {request.deviceName}")
        if not request.deviceName or not request.state:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "ReportDeviceStatesRequest has no device name or no state")
        await self.dmi.report_state(request)
        return pb.ReportDeviceStatesResponse()
