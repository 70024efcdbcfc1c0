"""A mapper process: a driver plus everything DMI asks of a mapper.

- ``DeviceMapperService`` on ``grpc_server.socket_path`` (RegisterDevice, RemoveDevice,
  UpdateDevice, Create/Update/RemoveDeviceModel, GetDevice).
- ``MapperRegister`` to edgecore at ``common.edgecore_sock`` at start, taking the devices and
  models of ``common.protocol``; again, with capped jittered backoff, whenever the connection
  to edgecore drops or a report finds it gone (edgecore restarted), and the device list is
  reconciled with the answer.
- Reports (``ReportDeviceStatus``, ``ReportDeviceStates``) from each device's runner
  (:mod:`.device`), with a 10 s timeout; edgecore's rate limit refusing one is logged at debug
  level and the next cycle reports again.
- The REST API (:mod:`.rest`) on ``common.address:http_port``.

    mapper = Mapper(load_config("mapper.yaml"), ModbusDriver)
    await mapper.run()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import Final

import grpc

from pykubeedge.api.dmi import CHANNEL_OPTIONS
from pykubeedge.api.dmi.v1beta1 import api_pb2 as pb
from pykubeedge.api.dmi.v1beta1 import api_pb2_grpc as pb_grpc
from pykubeedge.core.backoff import Backoff
from pykubeedge.mapper.config import MapperConfig
from pykubeedge.mapper.device import DeviceRunner
from pykubeedge.mapper.driver import Driver
from pykubeedge.mapper.model import Device, device_from_pb
from pykubeedge.mapper.push import Pusher

log = logging.getLogger(__name__)

CALL_TIMEOUT_S: Final = 10.0


def _model_key(ns: str, name: str) -> str:
    return f"{ns or 'default'}/{name}"


class Mapper:
    def __init__(self, cfg: MapperConfig, driver: type[Driver], *,
                 call_timeout: float = CALL_TIMEOUT_S) -> None:
        self.cfg = cfg
        self.driver = driver
        self.call_timeout = call_timeout
        self.models: dict[str, pb.DeviceModel] = {}
        self.specs: dict[str, pb.Device] = {}
        self.runners: dict[str, DeviceRunner] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.pusher = Pusher()
        self.registered = asyncio.Event()
        self.registrations = 0
        self._lost = asyncio.Event()
        self.edge_channel: grpc.aio.Channel | None = None
        self.edge: pb_grpc.DeviceManagerServiceStub | None = None
        self.reports = 0
        self.report_failures = 0
        self.closing = False

    # -- running ---------------------------------------------------------------------------------

    async def run(self) -> None:
        from pykubeedge.mapper.rest import RestServer

        sock = self.cfg.grpc_server.socket_path
        _prepare_socket(sock)
        server = grpc.aio.server()
        pb_grpc.add_DeviceMapperServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _Servicer(self), server)
        if not server.add_insecure_port(f"unix://{sock}"):
            raise OSError(f"cannot listen on unix://{sock}")
        await server.start()
        log.info("mapper %s (protocol %s): DeviceMapperService on unix://%s",
                 self.cfg.common.name, self.cfg.common.protocol, sock)
        edge_sock = self.cfg.common.edgecore_sock
        target = edge_sock if "://" in edge_sock else f"unix://{edge_sock}"
        self.edge_channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.edge = pb_grpc.DeviceManagerServiceStub(  # type: ignore[no-untyped-call]
            self.edge_channel)
        rest = RestServer(self, self.cfg.common.address, self.cfg.http_port)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._register_loop(), name="mapper-register")
                tg.create_task(self._watch_edge(), name="mapper-watch-edge")
                if self.cfg.http_port:
                    await rest.start()
        finally:
            self.closing = True
            for key in list(self._tasks):
                await self._stop(key)
            await rest.stop()
            await self.pusher.close()
            await server.stop(grace=1)
            await self.edge_channel.close()

    async def _register_loop(self) -> None:
        assert self.edge is not None
        backoff = Backoff(initial=0.5, cap=10.0)
        common = self.cfg.common
        info = pb.MapperInfo(name=common.name, version=common.version,
                             api_version=common.api_version, protocol=common.protocol,
                             address=self.cfg.grpc_server.socket_path.encode(), state="ok")
        while True:
            self._lost.clear()
            try:
                answer = await self.edge.MapperRegister(
                    pb.MapperRegisterRequest(withData=True, mapper=info),
                    timeout=self.call_timeout, wait_for_ready=False)
            except grpc.aio.AioRpcError as err:
                delay = backoff.next_delay()
                log.warning("mapper %s: registering with edgecore at %s failed (%s: %s); "
                            "again in %.1f s", common.name, common.edgecore_sock,
                            err.code().name, err.details(), delay)
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            self.registrations += 1
            log.info("mapper %s registered with edgecore (registration %d): %d device(s), "
                     "%d model(s)", common.name, self.registrations, len(answer.deviceList),
                     len(answer.modelList))
            self._reconcile(answer)
            self.registered.set()
            await self._lost.wait()
            self.registered.clear()
            log.warning("mapper %s: edgecore went away; registering again", common.name)

    async def _watch_edge(self) -> None:
        """Edgecore gone (its socket connection dropped): register again once it is back."""
        assert self.edge_channel is not None
        channel = self.edge_channel
        while True:
            await self.registered.wait()
            state = channel.get_state(try_to_connect=True)
            if state is grpc.ChannelConnectivity.READY:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(30):
                        await channel.wait_for_state_change(state)
                state = channel.get_state()
            if state is not grpc.ChannelConnectivity.READY and self.registered.is_set():
                self._lost.set()
            await asyncio.sleep(0.2)

    def _reconcile(self, answer: pb.MapperRegisterResponse) -> None:
        self.models = {_model_key(m.namespace, m.name): m for m in answer.modelList}
        wanted = {f"{d.namespace or 'default'}/{d.name}": d for d in answer.deviceList}
        for key in [k for k in self.specs if k not in wanted]:
            self.specs.pop(key, None)
            self._spawn_stop(key)
        for dev in wanted.values():
            self.add_device(dev)
        for runner in self.runners.values():
            runner.resend_state()

    # -- devices ----------------------------------------------------------------------------------

    def add_device(self, dev: pb.Device) -> None:
        """RegisterDevice and UpdateDevice: start, update in place (desired values) or
        restart the device's runner."""
        if self.closing:
            return
        spec = device_from_pb(dev, self.models)
        key = spec.id
        if _model_key(dev.namespace, dev.spec.deviceModelReference) not in self.models:
            log.warning("device %s: its model %s was not received; properties are strings",
                        key, dev.spec.deviceModelReference)
        self.specs[key] = dev
        runner = self.runners.get(key)
        if runner is not None and runner.same_shape(spec):
            runner.set_desired(spec)
            return
        if runner is not None:
            log.info("device %s changed; restarting it", key)
            task = self._tasks.pop(key)
            task.cancel()
        else:
            log.info("device %s received (%d properties)", key, len(spec.properties))
        self._start(spec)

    def _start(self, spec: Device) -> None:
        runner = DeviceRunner(spec, self.driver, self, push=self.pusher.push)
        self.runners[spec.id] = runner
        self._tasks[spec.id] = asyncio.create_task(self._guard(runner),
                                                   name=f"device-{spec.id}")

    async def _guard(self, runner: DeviceRunner) -> None:
        try:
            await runner.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("device %s: its runner failed", runner.device.id)

    def remove_device(self, key: str) -> None:
        self.specs.pop(key, None)
        self._spawn_stop(key)

    def _spawn_stop(self, key: str) -> None:
        task = self._tasks.pop(key, None)
        self.runners.pop(key, None)
        if task is not None:
            task.cancel()
            log.info("device %s removed", key)

    async def _stop(self, key: str) -> None:
        task = self._tasks.pop(key, None)
        self.runners.pop(key, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def model_changed(self, model: pb.DeviceModel | None, key: str) -> None:
        if model is None:
            self.models.pop(key, None)
        else:
            self.models[key] = model
        for dev in list(self.specs.values()):
            if _model_key(dev.namespace, dev.spec.deviceModelReference) == key:
                self.add_device(dev)

    # -- reporting (the runners' Reporter) --------------------------------------------------------

    async def report_twins(self, device: Device, twins: list[pb.Twin]) -> bool:
        req = pb.ReportDeviceStatusRequest(deviceName=device.name,
                                           deviceNamespace=device.namespace)
        req.reportedDevice.twins.extend(twins)
        req.reportedDevice.reportToCloud = True
        return await self._report("ReportDeviceStatus", req, device)

    async def report_state(self, device: Device, state: str) -> bool:
        return await self._report("ReportDeviceStates", pb.ReportDeviceStatesRequest(
            deviceName=device.name, deviceNamespace=device.namespace, state=state), device)

    async def _report(self, method: str, req: object, device: Device) -> bool:
        if self.edge is None or not self.registered.is_set():
            return False
        try:
            await getattr(self.edge, method)(req, timeout=self.call_timeout)
        except grpc.aio.AioRpcError as err:
            self.report_failures += 1
            if err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
                log.debug("%s for %s refused by edgecore's rate limit", method, device.id)
            elif err.code() is grpc.StatusCode.UNAVAILABLE:
                log.warning("%s for %s: edgecore unavailable", method, device.id)
                self._lost.set()
            else:
                log.error("%s for %s failed: %s: %s", method, device.id, err.code().name,
                          err.details())
            return False
        self.reports += 1
        return True

    def get_device(self, ns: str, name: str) -> pb.Device | None:
        key = f"{ns or 'default'}/{name}"
        dev = self.specs.get(key)
        if dev is None:
            return None
        out = pb.Device()
        out.CopyFrom(dev)
        runner = self.runners.get(key)
        if runner is not None:
            del out.status.twins[:]
            out.status.twins.extend(runner.twins())
        return out


def _prepare_socket(path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class _Servicer(pb_grpc.DeviceMapperServiceServicer):
    def __init__(self, mapper: Mapper) -> None:
        self.m = mapper

    @staticmethod
    async def _need(context: grpc.aio.ServicerContext, ok: bool, why: str) -> None:
        if not ok:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, why)

    async def RegisterDevice(self, request: pb.RegisterDeviceRequest,
                             context: grpc.aio.ServicerContext) -> pb.RegisterDeviceResponse:
        await self._need(context, bool(request.device.name), "the device has no name")
        self.m.add_device(request.device)
        return pb.RegisterDeviceResponse(deviceName=request.device.name,
                                         deviceNamespace=request.device.namespace)

    async def UpdateDevice(self, request: pb.UpdateDeviceRequest,
                           context: grpc.aio.ServicerContext) -> pb.UpdateDeviceResponse:
        await self._need(context, bool(request.device.name), "the device has no name")
        self.m.add_device(request.device)
        return pb.UpdateDeviceResponse()

    async def RemoveDevice(self, request: pb.RemoveDeviceRequest,
                           context: grpc.aio.ServicerContext) -> pb.RemoveDeviceResponse:
        self.m.remove_device(f"{request.deviceNamespace or 'default'}/{request.deviceName}")
        return pb.RemoveDeviceResponse()

    async def CreateDeviceModel(self, request: pb.CreateDeviceModelRequest,
                                context: grpc.aio.ServicerContext
                                ) -> pb.CreateDeviceModelResponse:
        m = request.model
        self.m.model_changed(m, _model_key(m.namespace, m.name))
        return pb.CreateDeviceModelResponse(deviceModelName=m.name,
                                            deviceModelNamespace=m.namespace)

    async def UpdateDeviceModel(self, request: pb.UpdateDeviceModelRequest,
                                context: grpc.aio.ServicerContext
                                ) -> pb.UpdateDeviceModelResponse:
        m = request.model
        self.m.model_changed(m, _model_key(m.namespace, m.name))
        return pb.UpdateDeviceModelResponse()

    async def RemoveDeviceModel(self, request: pb.RemoveDeviceModelRequest,
                                context: grpc.aio.ServicerContext
                                ) -> pb.RemoveDeviceModelResponse:
        self.m.model_changed(None, _model_key(request.modelNamespace, request.modelName))
        return pb.RemoveDeviceModelResponse()

    async def GetDevice(self, request: pb.GetDeviceRequest,
                        context: grpc.aio.ServicerContext) -> pb.GetDeviceResponse:
        dev = self.m.get_device(request.deviceNamespace, request.deviceName)
        if dev is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"device {request.deviceNamespace}/{request.deviceName} "
                                f"is not served by this mapper")
        return pb.GetDeviceResponse(device=dev)

