"""Edged's :class:`~pykubeedge.edge.edged.runtime.Runtime` over CRI (``runtime.v1`` gRPC).

The container runtime (containerd) listens on a unix socket; every call has a deadline, and a
failed call becomes a :class:`ContainerRuntimeError` that names what failed::

    runtime = CRIRuntime("unix:///run/containerd/containerd.sock",
                         pods_dir="/var/lib/kubelet/pods", pod_logs_dir="/var/log/pods")
    print(await runtime.version())          # containerd://1.6.20~ds1
    ...
    await runtime.close()

Files, as kubelet lays them out: a pod's configMap/secret/projected volume files are written
under ``<pods_dir>/<uid>/volumes/`` and bind-mounted read-only; any other volume a container
mounts is an empty directory there (emptyDir). Container logs go to
``<pod_logs_dir>/<namespace>_<name>_<uid>/<container>/<attempt>.log`` in CRI format.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final, TypeVar

import grpc
import grpc.aio

from pykubeedge.core.errors import ConfigError
from pykubeedge.edge.edged.cri import api_pb2 as api
from pykubeedge.edge.edged.cri import api_pb2_grpc as api_grpc
from pykubeedge.edge.edged.cri.stats import CRIStats
from pykubeedge.edge.edged.cri.streaming import CRIStreaming
from pykubeedge.edge.edged.node import primary_ipv4
from pykubeedge.edge.edged.runtime import (
    AuthConfig,
    ContainerRuntimeError,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    ExecResult,
    ImageInfo,
    ImagePullError,
    Mount,
    NotFoundError,
    PodSandboxStatus,
    Resources,
    RuntimeUnavailableError,
    RuntimeVersion,
    SandboxConfig,
    SandboxState,
    Security,
)
from pykubeedge.edge.edged.volumes import DEFAULT_POD_LOGS_DIR, DEFAULT_PODS_DIR, PodVolumes

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT: Final = "unix:///run/containerd/containerd.sock"
CRI_API_VERSION: Final = "v1"

REQUEST_TIMEOUT: Final = 120.0
"""Seconds for a call that changes something (kubelet's ``runtimeRequestTimeout``, 2 min)."""
QUERY_TIMEOUT: Final = 10.0
"""Seconds for Version, Status and the list/status calls of a relist."""
PULL_TIMEOUT: Final = 600.0
MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024  # kubelet's maxMsgSize
MAX_CONCURRENT_CALLS: Final = 64
MAX_PARALLEL_PULLS: Final = 2
_STATUS_CACHE: Final = 8192

# kubelet's labels, so a KubeEdge engineer finds pods with crictl as usual
POD_NAME_LABEL: Final = "io.kubernetes.pod.name"
POD_NAMESPACE_LABEL: Final = "io.kubernetes.pod.namespace"
POD_UID_LABEL: Final = "io.kubernetes.pod.uid"
CONTAINER_NAME_LABEL: Final = "io.kubernetes.container.name"
RESTART_COUNT_ANNOTATION: Final = "io.kubernetes.container.restartCount"
# containerd reports an image by its first repo tag ("busybox" comes back as
# "docker.io/library/busybox:latest"); Edged compares the spec's own string
IMAGE_ANNOTATION: Final = "pykubeedge.io/image"
HOSTNAME_ANNOTATION: Final = "pykubeedge.io/hostname"

_CONTAINER_STATES: Final = {
    api.CONTAINER_CREATED: ContainerState.CREATED,
    api.CONTAINER_RUNNING: ContainerState.RUNNING,
    api.CONTAINER_EXITED: ContainerState.EXITED,
    api.CONTAINER_UNKNOWN: ContainerState.UNKNOWN,
}
_MAX_HOSTNAME: Final = 63
MAX_EXEC_OUTPUT: Final = 10 * 1024  # kubelet's probe maxReadLength
# kubelet's default masked and read-only paths (procMount Default)
MASKED_PATHS: Final = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS: Final = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                         "/proc/sysrq-trigger")
_PROTOCOLS: Final = {"TCP": 0, "UDP": 1, "SCTP": 2}
_PROPAGATION: Final = {"": 0, "None": 0, "HostToContainer": 1, "Bidirectional": 2}
_T = TypeVar("_T")


def parse_endpoint(endpoint: str) -> tuple[str, str]:
    """The gRPC target and socket path of a CRI endpoint (``unix://`` URL or a plain path).

    >>> parse_endpoint("unix:///run/containerd/containerd.sock")
    ('unix:///run/containerd/containerd.sock', '/run/containerd/containerd.sock')
    """
    path = endpoint.removeprefix("unix://")
    if "://" in path or not path.startswith("/"):
        raise ConfigError(
            f"container runtime endpoint {endpoint!r} is not a unix socket "
            f"(expected unix:///path/to/socket)")
    return f"unix://{path}", path


def sandbox_hostname(config: SandboxConfig) -> str:
    """The sandbox hostname: empty with host networking (CRI requires it), else the pod's
    hostname cut to 63 characters as kubelet does."""
    if config.host_network:
        return ""
    return (config.hostname or config.name)[:_MAX_HOSTNAME].rstrip("-.")


def _namespaces(host_network: bool, *, host_pid: bool = False, host_ipc: bool = False,
                shared_pid: bool = False) -> api.NamespaceOption:
    # kubelet's choice for v1 pods: one PID namespace per container (unless
    # shareProcessNamespace), IPC shared in the pod
    pid = api.NODE if host_pid else (api.POD if shared_pid else api.CONTAINER)
    return api.NamespaceOption(network=api.NODE if host_network else api.POD, pid=pid,
                               ipc=api.NODE if host_ipc else api.POD)


def _one_line(text: str | None, limit: int = 400) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _seconds(nanoseconds: int) -> float:
    return nanoseconds / 1e9 if nanoseconds > 0 else 0.0


class CRINotServedError(RuntimeUnavailableError):
    """The socket answers, but not CRI ``runtime.v1`` (containerd's cri plugin is off or
    failed to load)."""


class CRIRuntime(CRIStreaming, CRIStats):
    """A :class:`~pykubeedge.edge.edged.runtime.Runtime` talking CRI to a unix socket
    (streaming and stats calls: :mod:`.streaming`, :mod:`.stats`).

    ``timeout`` bounds calls that change something, ``query_timeout`` Version, Status and the
    relist's list and status calls, ``pull_timeout`` image pulls; a stop waits its grace
    period on top of ``timeout``. At most ``max_concurrent_calls`` calls and
    ``max_parallel_pulls`` pulls are in flight. ``host_ip`` gives a host-network pod its IP.
    An image already present is not pulled again (``IfNotPresent``).
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        pods_dir: str | Path = DEFAULT_PODS_DIR,
        pod_logs_dir: str | Path = DEFAULT_POD_LOGS_DIR,
        timeout: float = REQUEST_TIMEOUT,
        query_timeout: float = QUERY_TIMEOUT,
        pull_timeout: float = PULL_TIMEOUT,
        runtime_handler: str = "",
        cgroup_parent: str = "",
        max_concurrent_calls: int = MAX_CONCURRENT_CALLS,
        max_parallel_pulls: int = MAX_PARALLEL_PULLS,
        host_ip: Callable[[], str] = primary_ipv4,
    ) -> None:
        self.endpoint = endpoint
        self._target, self.socket_path = parse_endpoint(endpoint)
        self.volumes = PodVolumes(pods_dir, pod_logs_dir)
        self.pods_dir = self.volumes.pods_dir
        self.pod_logs_dir = self.volumes.pod_logs_dir
        self.timeout = timeout
        self.query_timeout = query_timeout
        self.pull_timeout = pull_timeout
        self.runtime_handler = runtime_handler
        self.cgroup_parent = cgroup_parent
        self._host_ip = host_ip
        self._calls = asyncio.Semaphore(max_concurrent_calls)
        self._pulls = asyncio.Semaphore(max_parallel_pulls)
        self._channel: grpc.aio.Channel | None = None
        self._runtime: Any = None
        self._images: Any = None
        self._sandbox_ips: OrderedDict[str, str] = OrderedDict()  # immutable per sandbox
        self._statuses: OrderedDict[str, ContainerStatus] = OrderedDict()

    def __repr__(self) -> str:
        return f"CRIRuntime({self.endpoint!r})"

    # -- connection ---------------------------------------------------------------------------

    def _connect(self) -> None:
        if self._channel is not None:
            return
        self._channel = grpc.aio.insecure_channel(
            self._target,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.enable_http_proxy", 0),
                # a restarted runtime is found again within seconds, not gRPC's 2 minutes
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 2000),
            ],
        )
        stubs: Any = api_grpc  # generated, untyped
        self._runtime = stubs.RuntimeServiceStub(self._channel)
        self._images = stubs.ImageServiceStub(self._channel)

    async def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()

    async def __aenter__(self) -> CRIRuntime:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _call(self, service: str, method: str, request: Any, timeout: float, *,
                    raw: bool = False) -> Any:
        """One unary call with a deadline; gRPC errors become runtime errors (``raw``: the
        gRPC error is raised as it is)."""
        self._connect()
        stub = self._runtime if service == "runtime" else self._images
        async with self._calls:
            try:
                return await getattr(stub, method)(request, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                if raw:
                    raise
                raise self._error(method, exc, timeout) from None

    def _error(self, method: str, exc: grpc.aio.AioRpcError, timeout: float) -> Exception:
        code, details = exc.code(), _one_line(exc.details())
        if code == grpc.StatusCode.UNAVAILABLE:
            return RuntimeUnavailableError(
                f"container runtime at {self.endpoint} is unreachable: {details}")
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return CRINotServedError(
                f"container runtime at {self.endpoint} does not serve CRI runtime.v1 {method} "
                f"(is containerd's cri plugin enabled?): {details}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ContainerRuntimeError(
                f"CRI {method} at {self.endpoint}: no answer within {timeout:g}s")
        if code == grpc.StatusCode.NOT_FOUND:
            return NotFoundError(f"CRI {method}: {details}")
        return ContainerRuntimeError(f"CRI {method} failed ({code.name}): {details}")

    # -- runtime ------------------------------------------------------------------------------

    async def version(self) -> RuntimeVersion:
        """``containerd://1.6.20~ds1``."""
        try:
            reply = await self._call("runtime", "Version",
                                     api.VersionRequest(version=CRI_API_VERSION),
                                     self.query_timeout)
        except RuntimeUnavailableError:
            raise
        except ContainerRuntimeError as exc:
            raise RuntimeUnavailableError(str(exc)) from None
        return RuntimeVersion(reply.runtime_name, reply.runtime_version)

    async def status(self) -> None:
        """Raise :class:`RuntimeUnavailableError` unless RuntimeReady and NetworkReady hold."""
        try:
            reply = await self._call("runtime", "Status", api.StatusRequest(),
                                     self.query_timeout)
        except RuntimeUnavailableError:
            raise
        except ContainerRuntimeError as exc:
            raise RuntimeUnavailableError(str(exc)) from None
        conditions = {c.type: c for c in reply.status.conditions}
        for kind, what in (("RuntimeReady", "container runtime"),
                           ("NetworkReady", "container runtime network")):
            condition = conditions.get(kind)
            if condition is None or not condition.status:
                reason = condition.reason if condition is not None else "Missing"
                message = _one_line(condition.message) if condition is not None else ""
                raise RuntimeUnavailableError(
                    f"{what} not ready: {kind}=false reason:{reason} message:{message}")

    # -- sandboxes ----------------------------------------------------------------------------

    def sandbox_config(self, config: SandboxConfig) -> api.PodSandboxConfig:
        """The CRI ``PodSandboxConfig`` for a pod (labels and log directory as kubelet's)."""
        labels = dict(config.labels)
        labels.update({POD_NAME_LABEL: config.name, POD_NAMESPACE_LABEL: config.namespace,
                       POD_UID_LABEL: config.uid})
        hostname = sandbox_hostname(config)
        security = api.LinuxSandboxSecurityContext(
            namespace_options=_namespaces(config.host_network, host_pid=config.host_pid,
                                          host_ipc=config.host_ipc,
                                          shared_pid=config.share_process_namespace),
            supplemental_groups=list(config.supplemental_groups),
            privileged=config.privileged)
        if config.run_as_user is not None:
            security.run_as_user.value = config.run_as_user
        if config.run_as_group is not None:
            security.run_as_group.value = config.run_as_group
        dns = None
        if config.dns is not None:
            dns = api.DNSConfig(servers=list(config.dns.servers),
                                searches=list(config.dns.searches),
                                options=list(config.dns.options))
        return api.PodSandboxConfig(
            metadata=api.PodSandboxMetadata(name=config.name, uid=config.uid,
                                            namespace=config.namespace,
                                            attempt=config.attempt),
            hostname=hostname,
            log_directory=str(self.volumes.log_dir(config.namespace, config.name, config.uid)),
            dns_config=dns,
            port_mappings=[api.PortMapping(protocol=_PROTOCOLS.get(p.protocol, 0),  # type: ignore[arg-type]
                                           container_port=p.container_port,
                                           host_port=p.host_port, host_ip=p.host_ip)
                           for p in config.ports],
            labels=labels,
            annotations={HOSTNAME_ANNOTATION: hostname},
            linux=api.LinuxPodSandboxConfig(
                cgroup_parent=config.cgroup_parent or self.cgroup_parent,
                security_context=security,
                sysctls=dict(config.sysctls),
            ),
        )

    def _config_from_status(self, status: api.PodSandboxStatus) -> api.PodSandboxConfig:
        """The sandbox's config again, from what the runtime keeps (CreateContainer needs it:
        containerd takes the log directory from it)."""
        meta = status.metadata
        host_network = status.linux.namespaces.options.network == api.NODE
        config = SandboxConfig(
            uid=meta.uid, name=meta.name, namespace=meta.namespace, attempt=meta.attempt,
            host_network=host_network,
            hostname=status.annotations.get(HOSTNAME_ANNOTATION, ""),
            labels={k: v for k, v in status.labels.items()},
        )
        return self.sandbox_config(config)

    async def run_pod_sandbox(self, config: SandboxConfig) -> PodSandboxStatus:
        """Write the pod's volume files, run its sandbox, return the sandbox's status."""
        try:
            await asyncio.to_thread(self.volumes.prepare, config)
        except OSError as exc:
            raise ContainerRuntimeError(f"cannot prepare the pod directories: {exc}") from exc
        request = api.RunPodSandboxRequest(config=self.sandbox_config(config),
                                           runtime_handler=self.runtime_handler)
        reply = await self._call("runtime", "RunPodSandbox", request, self.timeout)
        status = await self._sandbox_status(reply.pod_sandbox_id)
        return self._sandbox(status, ())

    async def _sandbox_status(self, sandbox_id: str) -> api.PodSandboxStatus:
        reply = await self._call("runtime", "PodSandboxStatus",
                                 api.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id),
                                 self.query_timeout)
        status: api.PodSandboxStatus = reply.status
        return status

    def _sandbox(self, status: api.PodSandboxStatus | api.PodSandbox,
                 containers: tuple[ContainerStatus, ...]) -> PodSandboxStatus:
        ip = self._sandbox_ips.get(status.id)
        if ip is None and isinstance(status, api.PodSandboxStatus):
            host_network = status.linux.namespaces.options.network == api.NODE
            ip = status.network.ip or (self._host_ip() if host_network else "")
            self._remember(self._sandbox_ips, status.id, ip)
        meta = status.metadata
        return PodSandboxStatus(
            id=status.id,
            uid=meta.uid,
            name=meta.name,
            namespace=meta.namespace,
            attempt=meta.attempt,
            state=SandboxState.READY if status.state == api.SANDBOX_READY
            else SandboxState.NOT_READY,
            ip=ip or "",
            created_at=_seconds(status.created_at),
            containers=containers,
        )

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        """Stop the sandbox and its containers; idempotent."""
        with contextlib.suppress(NotFoundError):
            await self._call("runtime", "StopPodSandbox",
                             api.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), self.timeout)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        """Remove the sandbox and its containers; idempotent. The pod's volume files and
        logs go with its last sandbox."""
        try:
            status = await self._sandbox_status(sandbox_id)
        except NotFoundError:
            return
        with contextlib.suppress(NotFoundError):
            await self._call("runtime", "RemovePodSandbox",
                             api.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id),
                             self.timeout)
        self._sandbox_ips.pop(sandbox_id, None)
        meta = status.metadata
        try:
            left = await self._call(
                "runtime", "ListPodSandbox",
                api.ListPodSandboxRequest(
                    filter=api.PodSandboxFilter(label_selector={POD_UID_LABEL: meta.uid})),
                self.query_timeout)
        except ContainerRuntimeError as exc:
            log.warning("pod %s/%s: files kept, sandboxes not listed: %s", meta.namespace,
                        meta.name, exc)
            return
        if not left.items:
            await asyncio.to_thread(self.volumes.remove, meta.namespace, meta.name, meta.uid)

    # -- images -------------------------------------------------------------------------------

    async def pull_image(self, image: str, auth: AuthConfig | None = None) -> str:
        """Pull ``image`` (the caller applies the pull policy); its image reference."""
        request = api.PullImageRequest(image=api.ImageSpec(image=image))
        if auth is not None:
            request.auth.username = auth.username
            request.auth.password = auth.password
        async with self._pulls:
            try:
                reply = await self._call("image", "PullImage", request, self.pull_timeout,
                                         raw=True)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE:
                    raise self._error("PullImage", exc, self.pull_timeout) from None
                # kubelet shows the gRPC error as it is (ErrImagePull's message)
                code = exc.code().name.title().replace("_", "")
                raise ImagePullError(f"rpc error: code = {code} desc = "
                                     f"{_one_line(exc.details(), 1024)}") from None
        ref: str = reply.image_ref
        return ref

    async def image_status(self, image: str) -> ImageInfo | None:
        """The image if containerd has it."""
        reply = await self._call("image", "ImageStatus",
                                 api.ImageStatusRequest(image=api.ImageSpec(image=image)),
                                 self.query_timeout)
        if not reply.HasField("image") or not reply.image.id:
            return None
        return _image_info(reply.image)

    async def list_images(self) -> list[ImageInfo]:
        """Every image containerd holds."""
        reply = await self._call("image", "ListImages", api.ListImagesRequest(),
                                 self.query_timeout)
        return [_image_info(image) for image in reply.images]

    async def image_names(self) -> list[str]:
        """Every image's tags (or its ID when it has none)."""
        names: list[str] = []
        for image in await self.list_images():
            names.extend(image.tags or (image.id,))
        return names

    async def remove_image(self, image_id: str) -> None:
        """Remove an image; idempotent."""
        with contextlib.suppress(NotFoundError):
            await self._call("image", "RemoveImage",
                             api.RemoveImageRequest(image=api.ImageSpec(image=image_id)),
                             self.timeout)

    async def image_fs_info(self) -> tuple[str, int]:
        """The image filesystem's mountpoint and the bytes its images use."""
        reply = await self._call("image", "ImageFsInfo", api.ImageFsInfoRequest(),
                                 self.query_timeout)
        if not reply.image_filesystems:
            return "", 0
        usage = reply.image_filesystems[0]
        return usage.fs_id.mountpoint, int(usage.used_bytes.value)

    async def exec_sync(self, container_id: str, cmd: tuple[str, ...],
                        timeout: float) -> ExecResult:
        """Run ``cmd`` in the container (probes, hooks); a timeout is reported, not raised."""
        seconds = max(0, math.ceil(timeout))
        request = api.ExecSyncRequest(container_id=container_id, cmd=list(cmd), timeout=seconds)
        deadline = (timeout + self.query_timeout) if timeout > 0 else self.timeout
        try:
            reply = await self._call("runtime", "ExecSync", request, deadline)
        except ContainerRuntimeError as exc:
            if "timeout" in str(exc).lower() or "deadline" in str(exc).lower():
                return ExecResult(-1, b"", timed_out=True)
            raise
        output = (bytes(reply.stdout) + bytes(reply.stderr))[-MAX_EXEC_OUTPUT:]
        return ExecResult(int(reply.exit_code), output)

    async def update_container_resources(self, container_id: str,
                                         resources: Resources) -> None:
        """Change a running container's cgroup limits."""
        await self._call("runtime", "UpdateContainerResources",
                         api.UpdateContainerResourcesRequest(
                             container_id=container_id, linux=_linux_resources(resources)),
                         self.timeout)

    # -- containers ---------------------------------------------------------------------------

    def container_config(self, spec: ContainerSpec, sandbox: api.PodSandboxConfig,
                         mounts: Iterable[api.Mount]) -> api.ContainerConfig:
        """The CRI ``ContainerConfig`` (labels, log path ``<name>/<attempt>.log``, cgroup
        limits and security context as kubelet maps them)."""
        meta = sandbox.metadata
        options = sandbox.linux.security_context.namespace_options
        labels = {**spec.labels, CONTAINER_NAME_LABEL: spec.name, POD_NAME_LABEL: meta.name,
                  POD_NAMESPACE_LABEL: meta.namespace, POD_UID_LABEL: meta.uid}
        annotations = {**spec.annotations, RESTART_COUNT_ANNOTATION: str(spec.attempt),
                       IMAGE_ANNOTATION: spec.image}
        return api.ContainerConfig(
            metadata=api.ContainerMetadata(name=spec.name, attempt=spec.attempt),
            image=api.ImageSpec(image=spec.image, user_specified_image=spec.image),
            command=list(spec.command),
            args=list(spec.args),
            working_dir=spec.working_dir,
            envs=[api.KeyValue(key=k, value=v) for k, v in spec.env.items()],
            mounts=list(mounts),
            labels=labels,
            annotations=annotations,
            log_path=f"{spec.name}/{spec.attempt}.log",
            stdin=spec.stdin, stdin_once=spec.stdin_once, tty=spec.tty,
            linux=api.LinuxContainerConfig(
                resources=_linux_resources(spec.resources),
                security_context=_security_context(spec.security, options)),
        )

    def host_mounts(self, uid: str, mounts: Iterable[Mount]) -> list[api.Mount]:
        """CRI mounts for a container's volume mounts (blocking: see :class:`PodVolumes`).
        Mounts Edged's volume manager resolved (``host_path``) are passed as they are."""
        mounts = list(mounts)
        resolved = [api.Mount(container_path=m.path, host_path=m.host_path,
                              readonly=m.read_only,
                              propagation=_PROPAGATION.get(m.propagation, 0))  # type: ignore
                    for m in mounts if m.host_path]
        legacy = [api.Mount(container_path=m.container_path, host_path=m.host_path,
                            readonly=m.read_only)
                  for m in self.volumes.mounts(uid, [m for m in mounts if not m.host_path])]
        return resolved + legacy

    async def start_container(self, sandbox_id: str, spec: ContainerSpec) -> str:
        """Create and start the container; a container that fails to start is removed."""
        status = await self._sandbox_status(sandbox_id)
        if status.state != api.SANDBOX_READY:
            raise ContainerRuntimeError(f"sandbox {sandbox_id[:12]} is not ready")
        sandbox = self._config_from_status(status)
        try:
            mounts = await asyncio.to_thread(self.host_mounts, status.metadata.uid, spec.mounts)
        except OSError as exc:
            raise ContainerRuntimeError(f"cannot prepare volumes of {spec.name}: {exc}") from exc
        request = api.CreateContainerRequest(
            pod_sandbox_id=sandbox_id,
            config=self.container_config(spec, sandbox, mounts),
            sandbox_config=sandbox,
        )
        created = await self._call("runtime", "CreateContainer", request, self.timeout)
        container_id: str = created.container_id
        try:
            await self._call("runtime", "StartContainer",
                             api.StartContainerRequest(container_id=container_id), self.timeout)
        except ContainerRuntimeError:
            with contextlib.suppress(ContainerRuntimeError):
                await self.remove_container(container_id)
            raise
        return container_id

    async def stop_container(self, container_id: str, timeout: float) -> None:
        """Stop within ``timeout`` seconds (then killed); idempotent."""
        grace = max(0, math.ceil(timeout))
        with contextlib.suppress(NotFoundError):
            await self._call("runtime", "StopContainer",
                             api.StopContainerRequest(container_id=container_id, timeout=grace),
                             self.timeout + grace)

    async def remove_container(self, container_id: str) -> None:
        """Remove the container; idempotent."""
        with contextlib.suppress(NotFoundError):
            await self._call("runtime", "RemoveContainer",
                             api.RemoveContainerRequest(container_id=container_id),
                             self.timeout)
        self._statuses.pop(container_id, None)

    # -- the relist ---------------------------------------------------------------------------

    async def list_pods(self, uid: str | None = None) -> list[PodSandboxStatus]:
        """Every pod sandbox Edged made (of pod ``uid`` if given), with its containers.

        Two list calls, plus a status call only for what is new or changed state (a
        running container's start time and an exited one's exit code never change).
        """
        selector = {POD_UID_LABEL: uid} if uid is not None else {}
        sandboxes_reply, containers_reply = await asyncio.gather(
            self._call("runtime", "ListPodSandbox",
                       api.ListPodSandboxRequest(
                           filter=api.PodSandboxFilter(label_selector=selector)),
                       self.query_timeout),
            self._call("runtime", "ListContainers",
                       api.ListContainersRequest(
                           filter=api.ContainerFilter(label_selector=selector)),
                       self.query_timeout),
        )
        sandboxes = [s for s in sandboxes_reply.items if s.metadata.uid
                     and POD_UID_LABEL in s.labels]
        containers = [c for c in containers_reply.containers if POD_UID_LABEL in c.labels]
        if uid is None:  # a full list: forget what is gone
            _keep_only(self._sandbox_ips, {s.id for s in sandboxes})
            _keep_only(self._statuses, {c.id for c in containers})
        unknown = [s.id for s in sandboxes if s.id not in self._sandbox_ips]
        for sandbox_id in unknown:
            with contextlib.suppress(NotFoundError):
                self._sandbox(await self._sandbox_status(sandbox_id), ())
        statuses = await asyncio.gather(*(self._container(c) for c in containers))
        by_sandbox: dict[str, list[ContainerStatus]] = {}
        for container, status in zip(containers, statuses, strict=True):
            if status is not None:
                by_sandbox.setdefault(container.pod_sandbox_id, []).append(status)
        return [self._sandbox(s, tuple(by_sandbox.get(s.id, ()))) for s in sandboxes]

    async def _container(self, container: api.Container) -> ContainerStatus | None:
        state = _CONTAINER_STATES.get(container.state, ContainerState.UNKNOWN)
        known = self._statuses.get(container.id)
        if known is not None and known.state is state and state in (
                ContainerState.RUNNING, ContainerState.EXITED):
            return known
        try:
            reply = await self._call("runtime", "ContainerStatus",
                                     api.ContainerStatusRequest(container_id=container.id),
                                     self.query_timeout)
        except NotFoundError:
            return None  # removed meanwhile
        status = _container_status(reply.status)
        return self._remember(self._statuses, container.id, status)

    @staticmethod
    def _remember(cache: OrderedDict[str, _T], key: str, value: _T) -> _T:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > _STATUS_CACHE:
            cache.popitem(last=False)
        return value


def _keep_only(cache: OrderedDict[str, Any], keys: set[str]) -> None:
    for key in [k for k in cache if k not in keys]:
        del cache[key]


def _container_status(status: api.ContainerStatus) -> ContainerStatus:
    return ContainerStatus(
        id=status.id,
        name=status.metadata.name,
        attempt=status.metadata.attempt,
        state=_CONTAINER_STATES.get(status.state, ContainerState.UNKNOWN),
        image=status.annotations.get(IMAGE_ANNOTATION) or status.image.image,
        image_ref=status.image_ref,
        created_at=_seconds(status.created_at),
        started_at=_seconds(status.started_at),
        finished_at=_seconds(status.finished_at),
        exit_code=status.exit_code,
        reason=status.reason,
        message=_one_line(status.message, 1024),
    )


def _image_ref(image: api.Image) -> str:
    return image.repo_digests[0] if image.repo_digests else image.id


def _image_info(image: api.Image) -> ImageInfo:
    return ImageInfo(id=image.id, tags=tuple(image.repo_tags),
                     digests=tuple(image.repo_digests), size=int(image.size),
                     pinned=bool(image.pinned),
                     uid=int(image.uid.value) if image.HasField("uid") else None,
                     username=image.username)


def _linux_resources(resources: Resources) -> api.LinuxContainerResources:
    return api.LinuxContainerResources(
        cpu_shares=resources.cpu_shares, cpu_quota=resources.cpu_quota,
        cpu_period=resources.cpu_period if resources.cpu_quota else 0,
        memory_limit_in_bytes=resources.memory_limit, oom_score_adj=resources.oom_score_adj)


def _security_context(security: Security,
                      options: api.NamespaceOption) -> api.LinuxContainerSecurityContext:
    context = api.LinuxContainerSecurityContext(
        namespace_options=options,
        capabilities=api.Capability(add_capabilities=list(security.add_capabilities),
                                    drop_capabilities=list(security.drop_capabilities)),
        privileged=security.privileged,
        readonly_rootfs=security.readonly_rootfs,
        no_new_privs=security.no_new_privs,
        supplemental_groups=list(security.supplemental_groups),
    )
    if security.run_as_user is not None:
        context.run_as_user.value = security.run_as_user
    elif security.run_as_username:
        context.run_as_username = security.run_as_username
    if security.run_as_group is not None:
        context.run_as_group.value = security.run_as_group
    if not security.privileged and not security.unmasked_proc:
        context.masked_paths.extend(MASKED_PATHS)
        context.readonly_paths.extend(READONLY_PATHS)
    return context


__all__ = [
    "DEFAULT_ENDPOINT",
    "CRIRuntime",
    "parse_endpoint",
    "sandbox_hostname",
]
