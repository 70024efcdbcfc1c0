"""What a pod worker needs from a container runtime: the :class:`Runtime` protocol, the
data it passes, and its errors (kubelet's ``kubecontainer.Runtime``, shrunk).

:class:`Runtime` is the small async surface Edged drives (sandboxes, images, containers, one
``list_pods`` snapshot for the relist). :class:`~.cri.CRIRuntime` implements it over CRI;
:class:`~.fake.FakeRuntime` in memory::

    sandbox = await runtime.run_pod_sandbox(SandboxConfig(uid="u1", name="web", namespace="ns"))
    cid = await runtime.start_container(sandbox.id, ContainerSpec(name="job", image="busybox"))
    (await runtime.list_pods())[0].containers[0].state    # ContainerState.RUNNING
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from pykubeedge.core.errors import PyKubeEdgeError
from pykubeedge.edge.edged.streaming import StreamingRuntime

# -- errors -------------------------------------------------------------------------------------


class ContainerRuntimeError(PyKubeEdgeError):
    """The container runtime refused or failed an operation."""


class RuntimeUnavailableError(ContainerRuntimeError):
    """The runtime cannot be reached or says it is not ready (Node Ready=False)."""


class ImagePullError(ContainerRuntimeError):
    """The image could not be pulled (ErrImagePull, then ImagePullBackOff)."""


class NotFoundError(ContainerRuntimeError, LookupError):
    """No sandbox or container with that id."""


class CapacityError(ContainerRuntimeError):
    """The runtime is full (a bound of the fake runtime, or of a real one)."""


# -- data ---------------------------------------------------------------------------------------


class ContainerState(enum.StrEnum):
    """A container's state as CRI reports it."""

    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"


class SandboxState(enum.StrEnum):
    """A pod sandbox's state as CRI reports it."""

    READY = "ready"
    NOT_READY = "notready"


@dataclass(frozen=True, slots=True)
class RuntimeVersion:
    """``name://version`` is what the Node reports as ``containerRuntimeVersion``."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}://{self.version}"


@dataclass(frozen=True, slots=True)
class DNSConfig:
    """The pod's resolv.conf (CRI ``DNSConfig``); empty: the runtime's default."""

    servers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PortMapping:
    """A container port published on the host (``hostPort``)."""

    container_port: int
    host_port: int
    protocol: str = "TCP"
    host_ip: str = ""


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """What the runtime needs to create a pod sandbox.

    ``volumes`` holds the resolved files of configMap/secret/projected volumes
    (volume name -> relative path -> bytes); a real backend writes them under the pod's
    directory and bind-mounts them, the fake one keeps them for inspection.
    """

    uid: str
    name: str
    namespace: str
    attempt: int = 0
    host_network: bool = False
    hostname: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    volumes: Mapping[str, Mapping[str, bytes]] = field(default_factory=dict)
    dns: DNSConfig | None = None
    ports: tuple[PortMapping, ...] = ()
    sysctls: Mapping[str, str] = field(default_factory=dict)
    cgroup_parent: str = ""
    share_process_namespace: bool = False
    host_pid: bool = False
    host_ipc: bool = False
    run_as_user: int | None = None
    run_as_group: int | None = None
    supplemental_groups: tuple[int, ...] = ()
    privileged: bool = False


@dataclass(frozen=True, slots=True)
class Mount:
    """A volume mounted into a container. ``host_path`` set: Edged's volume manager laid the
    volume out already and this is where it is on the node (else the runtime resolves
    ``volume`` under its pods directory, the older way)."""

    volume: str
    path: str
    read_only: bool = False
    sub_path: str = ""
    host_path: str = ""
    propagation: str = ""


@dataclass(frozen=True, slots=True)
class Resources:
    """A container's cgroup limits as kubelet computes them (CRI ``LinuxContainerResources``);
    0 = unset."""

    cpu_shares: int = 2
    cpu_quota: int = 0
    cpu_period: int = 100_000
    memory_limit: int = 0
    oom_score_adj: int = 1000


@dataclass(frozen=True, slots=True)
class Security:
    """A container's effective security context (CRI ``LinuxContainerSecurityContext``)."""

    run_as_user: int | None = None
    run_as_username: str = ""
    run_as_group: int | None = None
    run_as_non_root: bool = False
    privileged: bool = False
    readonly_rootfs: bool = False
    add_capabilities: tuple[str, ...] = ()
    drop_capabilities: tuple[str, ...] = ()
    no_new_privs: bool = False
    supplemental_groups: tuple[int, ...] = ()
    unmasked_proc: bool = False


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Registry credentials for one pull (CRI ``AuthConfig``: kubelet fills these two)."""

    username: str = ""
    password: str = ""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """An image the runtime holds."""

    id: str
    tags: tuple[str, ...] = ()
    digests: tuple[str, ...] = ()
    size: int = 0
    pinned: bool = False
    uid: int | None = None
    """The image's user, as a uid (its ``USER``), or as a name in ``username``."""
    username: str = ""


@dataclass(frozen=True, slots=True)
class ExecResult:
    """What ``exec_sync`` returns: the exit code and the combined output (bounded)."""

    exit_code: int
    output: bytes = b""
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """One container to create and start in a sandbox; ``attempt`` is its restart count."""

    name: str
    image: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    working_dir: str = ""
    attempt: int = 0
    resources: Resources = field(default_factory=Resources)
    security: Security = field(default_factory=Security)
    annotations: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    stdin: bool = False
    stdin_once: bool = False
    tty: bool = False


@dataclass(frozen=True, slots=True)
class ContainerStatus:
    """One container instance; times are Unix seconds (0 = not yet).

    ``image`` is the image as the spec asked for it (Edged restarts a container whose spec
    image changed); ``image_ref`` the resolved reference (``imageID``).
    """

    id: str
    name: str
    attempt: int
    state: ContainerState
    image: str
    image_ref: str = ""
    created_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    exit_code: int = 0
    reason: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class PodSandboxStatus:
    """A sandbox and every container instance in it (several attempts of one name possible)."""

    id: str
    uid: str
    name: str
    namespace: str
    attempt: int
    state: SandboxState
    ip: str
    created_at: float
    containers: tuple[ContainerStatus, ...] = ()


# -- the protocol -------------------------------------------------------------------------------


class Runtime(StreamingRuntime, Protocol):
    """The runtime operations Edged's pod workers use (a subset of CRI), and the streaming
    and stats calls of its kubelet server (:class:`~.streaming.StreamingRuntime`).

    All calls are async and must not block the event loop. Errors are
    :class:`ContainerRuntimeError` subclasses.
    """

    async def version(self) -> RuntimeVersion:
        """Runtime name and version, e.g. ``containerd://2.0.0``."""
        ...

    async def status(self) -> None:
        """Return if the runtime is ready; raise :class:`RuntimeUnavailableError` if not."""
        ...

    async def run_pod_sandbox(self, config: SandboxConfig) -> PodSandboxStatus:
        """Create and start a sandbox (network namespace, pod IP); return its status."""
        ...

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        """Stop a sandbox (its containers must be stopped first); idempotent."""
        ...

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        """Remove a sandbox and its containers; idempotent."""
        ...

    async def pull_image(self, image: str, auth: AuthConfig | None = None) -> str:
        """Pull ``image`` (always: the caller applies the pull policy); return its image
        reference (``repo@sha256:...``)."""
        ...

    async def image_status(self, image: str) -> ImageInfo | None:
        """The image if the runtime has it, else None."""
        ...

    async def list_images(self) -> list[ImageInfo]:
        """Every image the runtime has."""
        ...

    async def remove_image(self, image_id: str) -> None:
        """Remove an image (image GC); idempotent."""
        ...

    async def image_fs_info(self) -> tuple[str, int]:
        """The image filesystem's mountpoint and the bytes images use on it."""
        ...

    async def exec_sync(self, container_id: str, cmd: tuple[str, ...],
                        timeout: float) -> ExecResult:
        """Run ``cmd`` in the container and wait for it (exec probes and hooks)."""
        ...

    async def update_container_resources(self, container_id: str,
                                         resources: Resources) -> None:
        """Change a running container's cgroup limits."""
        ...

    async def start_container(self, sandbox_id: str, spec: ContainerSpec) -> str:
        """Create and start a container in the sandbox; return the container id."""
        ...

    async def stop_container(self, container_id: str, timeout: float) -> None:
        """Stop a container, killing it after ``timeout`` seconds; idempotent."""
        ...

    async def remove_container(self, container_id: str) -> None:
        """Remove a stopped container; idempotent."""
        ...

    async def list_pods(self, uid: str | None = None) -> list[PodSandboxStatus]:
        """Every sandbox (of pod ``uid`` if given) with its containers: what the relist
        compares and a pod worker syncs against (CRI: a label filter on the pod UID)."""
        ...


def container_id_uri(version: RuntimeVersion, container_id: str) -> str:
    """The ``containerID`` of a container status: ``<runtime>://<id>``.

    >>> container_id_uri(RuntimeVersion("containerd", "2.0.0"), "abc")
    'containerd://abc'
    """
    return f"{version.name}://{container_id}"
