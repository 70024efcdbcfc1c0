"""A fake CRI server (runtime.v1 over a unix socket) that records requests and answers from
a small in-memory state, for testing :class:`CRIRuntime` without containerd."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from pykubeedge.edge.edged.cri import api_pb2 as api
from pykubeedge.edge.edged.cri import api_pb2_grpc as api_grpc

NS = 1_000_000_000


@dataclass
class FakeCRI(api_grpc.RuntimeServiceServicer, api_grpc.ImageServiceServicer):
    """Sandboxes and containers in dicts; ``fail`` maps a method to the status it returns."""

    requests: list[tuple[str, Any]] = field(default_factory=list)
    sandboxes: dict[str, api.PodSandboxStatus] = field(default_factory=dict)
    containers: dict[str, api.ContainerStatus] = field(default_factory=dict)
    container_sandbox: dict[str, str] = field(default_factory=dict)
    images: dict[str, api.Image] = field(default_factory=dict)
    fail: dict[str, tuple[grpc.StatusCode, str]] = field(default_factory=dict)
    delay: dict[str, float] = field(default_factory=dict)
    network_ready: bool = True
    pod_ip: str = "10.88.0.7"
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def calls(self, method: str) -> list[Any]:
        return [r for m, r in self.requests if m == method]

    async def _enter(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        self.requests.append((method, request))
        if method in self.delay:
            await asyncio.sleep(self.delay[method])
        if method in self.fail:
            code, details = self.fail[method]
            await context.abort(code, details)

    def _new_id(self) -> str:
        return f"{next(self._ids):064x}"

    # -- runtime ------------------------------------------------------------------------------

    async def Version(self, request: Any, context: Any) -> api.VersionResponse:
        await self._enter("Version", request, context)
        return api.VersionResponse(version="0.1.0", runtime_name="fakecri",
                                   runtime_version="9.9.9", runtime_api_version="v1")

    async def Status(self, request: Any, context: Any) -> api.StatusResponse:
        await self._enter("Status", request, context)
        return api.StatusResponse(status=api.RuntimeStatus(conditions=[
            api.RuntimeCondition(type="RuntimeReady", status=True),
            api.RuntimeCondition(type="NetworkReady", status=self.network_ready,
                                 reason="" if self.network_ready else "NetworkPluginNotReady",
                                 message="" if self.network_ready
                                 else "Network plugin returns error: cni plugin not initialized"),
        ]))

    async def RunPodSandbox(self, request: Any, context: Any) -> api.RunPodSandboxResponse:
        await self._enter("RunPodSandbox", request, context)
        sandbox_id = self._new_id()
        config = request.config
        host = config.linux.security_context.namespace_options.network == api.NODE
        self.sandboxes[sandbox_id] = api.PodSandboxStatus(
            id=sandbox_id, metadata=config.metadata, state=api.SANDBOX_READY,
            created_at=1_700_000_000 * NS,
            network=api.PodSandboxNetworkStatus(ip="" if host else self.pod_ip),
            linux=api.LinuxPodSandboxStatus(namespaces=api.Namespace(
                options=config.linux.security_context.namespace_options)),
            labels=config.labels, annotations=config.annotations)
        return api.RunPodSandboxResponse(pod_sandbox_id=sandbox_id)

    async def StopPodSandbox(self, request: Any, context: Any) -> api.StopPodSandboxResponse:
        await self._enter("StopPodSandbox", request, context)
        sandbox = self._sandbox(request.pod_sandbox_id)
        if sandbox is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "sandbox not found")
        sandbox.state = api.SANDBOX_NOTREADY
        return api.StopPodSandboxResponse()

    async def RemovePodSandbox(self, request: Any, context: Any) -> api.RemovePodSandboxResponse:
        await self._enter("RemovePodSandbox", request, context)
        self.sandboxes.pop(request.pod_sandbox_id, None)
        for cid, sid in list(self.container_sandbox.items()):
            if sid == request.pod_sandbox_id:
                self.containers.pop(cid, None)
                del self.container_sandbox[cid]
        return api.RemovePodSandboxResponse()

    async def PodSandboxStatus(self, request: Any, context: Any) -> api.PodSandboxStatusResponse:
        await self._enter("PodSandboxStatus", request, context)
        sandbox = self._sandbox(request.pod_sandbox_id)
        if sandbox is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "an error occurred: not found")
        return api.PodSandboxStatusResponse(status=sandbox)

    def _sandbox(self, sandbox_id: str) -> api.PodSandboxStatus | None:
        return self.sandboxes.get(sandbox_id)

    async def ListPodSandbox(self, request: Any, context: Any) -> api.ListPodSandboxResponse:
        await self._enter("ListPodSandbox", request, context)
        selector = dict(request.filter.label_selector)
        items = [
            api.PodSandbox(id=s.id, metadata=s.metadata, state=s.state, created_at=s.created_at,
                           labels=s.labels, annotations=s.annotations)
            for s in self.sandboxes.values()
            if all(s.labels.get(k) == v for k, v in selector.items())
        ]
        return api.ListPodSandboxResponse(items=items)

    async def CreateContainer(self, request: Any, context: Any) -> api.CreateContainerResponse:
        await self._enter("CreateContainer", request, context)
        container_id = self._new_id()
        config = request.config
        self.containers[container_id] = api.ContainerStatus(
            id=container_id, metadata=config.metadata, state=api.CONTAINER_CREATED,
            created_at=1_700_000_001 * NS, image=api.ImageSpec(image="docker.io/x/resolved:1"),
            image_ref="sha256:" + "ab" * 32, labels=config.labels,
            annotations=config.annotations, mounts=config.mounts)
        self.container_sandbox[container_id] = request.pod_sandbox_id
        return api.CreateContainerResponse(container_id=container_id)

    async def StartContainer(self, request: Any, context: Any) -> api.StartContainerResponse:
        await self._enter("StartContainer", request, context)
        status = self.containers[request.container_id]
        status.state, status.started_at = api.CONTAINER_RUNNING, 1_700_000_002 * NS
        return api.StartContainerResponse()

    async def StopContainer(self, request: Any, context: Any) -> api.StopContainerResponse:
        await self._enter("StopContainer", request, context)
        status = self.containers.get(request.container_id)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "container not found")
        self.exit(request.container_id, 137)
        return api.StopContainerResponse()

    def exit(self, container_id: str, code: int) -> None:
        status = self.containers[container_id]
        status.state, status.exit_code = api.CONTAINER_EXITED, code
        status.finished_at = 1_700_000_003 * NS
        status.reason = "Completed" if code == 0 else "Error"

    async def RemoveContainer(self, request: Any, context: Any) -> api.RemoveContainerResponse:
        await self._enter("RemoveContainer", request, context)
        if request.container_id not in self.containers:
            await context.abort(grpc.StatusCode.NOT_FOUND, "container not found")
        del self.containers[request.container_id]
        del self.container_sandbox[request.container_id]
        return api.RemoveContainerResponse()

    async def ListContainers(self, request: Any, context: Any) -> api.ListContainersResponse:
        await self._enter("ListContainers", request, context)
        selector = dict(request.filter.label_selector)
        items = [
            api.Container(id=c.id, pod_sandbox_id=self.container_sandbox[c.id],
                          metadata=c.metadata, image=c.image, image_ref=c.image_ref,
                          state=c.state, created_at=c.created_at, labels=c.labels,
                          annotations=c.annotations)
            for c in self.containers.values()
            if all(c.labels.get(k) == v for k, v in selector.items())
        ]
        return api.ListContainersResponse(containers=items)

    async def ContainerStatus(self, request: Any, context: Any) -> api.ContainerStatusResponse:
        await self._enter("ContainerStatus", request, context)
        status = self.containers.get(request.container_id)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "container not found")
        return api.ContainerStatusResponse(status=status)

    # -- images -------------------------------------------------------------------------------

    async def ImageStatus(self, request: Any, context: Any) -> api.ImageStatusResponse:
        await self._enter("ImageStatus", request, context)
        image = self.images.get(request.image.image)
        return api.ImageStatusResponse(image=image) if image else api.ImageStatusResponse()

    async def PullImage(self, request: Any, context: Any) -> api.PullImageResponse:
        await self._enter("PullImage", request, context)
        name = request.image.image
        self.images[name] = api.Image(id="sha256:" + "cd" * 32, repo_tags=[name],
                                      repo_digests=[f"{name}@sha256:" + "ef" * 32])
        return api.PullImageResponse(image_ref=self.images[name].id)

    async def ListImages(self, request: Any, context: Any) -> api.ListImagesResponse:
        await self._enter("ListImages", request, context)
        return api.ListImagesResponse(images=list(self.images.values()))


@asynccontextmanager
async def serve_fake_cri(fake: FakeCRI | None = None) -> AsyncIterator[tuple[FakeCRI, str]]:
    """Serve ``fake`` on a unix socket in a short temporary directory; yield it and the
    endpoint."""
    fake = fake or FakeCRI()
    directory = Path(tempfile.mkdtemp(prefix="pke-fakecri-", dir="/tmp"))
    socket = directory / "cri.sock"
    server = grpc.aio.server()
    api_grpc.add_RuntimeServiceServicer_to_server(fake, server)
    api_grpc.add_ImageServiceServicer_to_server(fake, server)
    server.add_insecure_port(f"unix://{socket}")
    await server.start()
    try:
        yield fake, f"unix://{socket}"
    finally:
        await server.stop(grace=None)
        shutil.rmtree(directory, ignore_errors=True)
