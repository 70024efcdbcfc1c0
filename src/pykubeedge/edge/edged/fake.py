"""An in-memory :class:`~.runtime.Runtime`: containers "run" deterministically, for tests and
for simulating many edge nodes (``edgecore`` with ``containerRuntimeEndpoint: fake://``)::

    runtime = FakeRuntime(scripts={"job": ContainerScript(exit_code=1, exit_after_ms=500)})
    sandbox = await runtime.run_pod_sandbox(SandboxConfig(uid="u1", name="web", namespace="ns"))
    cid = await runtime.start_container(sandbox.id, ContainerSpec(name="job", image="busybox"))
    (await runtime.list_pods())[0].containers[0].state    # ContainerState.RUNNING, then EXITED
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from pykubeedge.core.clock import TimeSource
from pykubeedge.edge.edged.fakestreams import FakeStreaming
from pykubeedge.edge.edged.runtime import (
    AuthConfig,
    CapacityError,
    ContainerRuntimeError,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    ExecResult,
    ImageInfo,
    ImagePullError,
    NotFoundError,
    PodSandboxStatus,
    Resources,
    RuntimeUnavailableError,
    RuntimeVersion,
    SandboxConfig,
    SandboxState,
)


@dataclass(frozen=True, slots=True)
class ContainerScript:
    """Scripted behaviour of fake containers, matched by container name, then by image
    (pull failures by image only: a pull does not know the container).

    ``exit_after_ms``: the container exits with ``exit_code`` that long after it started
    (``None``: it runs until stopped). ``pull_failures``: that many pulls of its image fail with
    ``pull_error`` before one succeeds (``-1``: always fail).
    """

    exit_code: int = 0
    exit_after_ms: int | None = None
    pull_error: str = ""
    pull_failures: int = 0
    exec_exit_code: int = 0
    exec_output: str = ""


FAKE_RUNTIME_NAME: Final = "fake"
FAKE_RUNTIME_VERSION: Final = "0.1.0"
_POD_SUBNET: Final = "10.88"  # containerd's default CNI range, 10.88.0.0/16


@dataclass(slots=True)
class _Container:
    status: ContainerStatus
    sandbox_id: str
    spec: ContainerSpec
    exit_at: float | None


@dataclass(slots=True)
class _Sandbox:
    status: PodSandboxStatus
    config: SandboxConfig
    ip_slot: int
    containers: dict[str, _Container] = field(default_factory=dict)


class FakeRuntime(FakeStreaming):
    """An in-memory :class:`Runtime`: containers are Running as soon as they start (exec,
    logs and stats: :class:`~.fakestreams.FakeStreaming`).

    Deterministic (ids from counters, times from ``clock``) and bounded (``max_sandboxes``,
    ``max_containers``). Scripted containers exit by themselves; the exit is seen on the next
    ``list_pods`` once ``clock`` has passed the exit time. ``healthy = False`` makes
    ``status`` fail; ``stop_exit_code`` is what a stopped container reports.

    >>> rt = FakeRuntime(clock=lambda: 100.0)
    >>> str(rt.runtime_version)
    'fake://0.1.0'
    """

    def __init__(
        self,
        *,
        scripts: Mapping[str, ContainerScript] | None = None,
        clock: TimeSource = time.time,
        max_sandboxes: int = 1024,
        max_containers: int = 4096,
        stop_exit_code: int = 0,
        host_ip: str = "127.0.0.1",
    ) -> None:
        self.scripts: dict[str, ContainerScript] = dict(scripts or {})
        self.healthy = True
        self.runtime_version = RuntimeVersion(FAKE_RUNTIME_NAME, FAKE_RUNTIME_VERSION)
        self._clock = clock
        self._max_sandboxes = max_sandboxes
        self._max_containers = max_containers
        self._stop_exit_code = stop_exit_code
        self._host_ip = host_ip
        self._sandboxes: dict[str, _Sandbox] = {}
        self._containers: dict[str, _Container] = {}
        self._pulls: dict[str, int] = {}
        self.images: dict[str, ImageInfo] = {}
        self.execs: list[tuple[str, tuple[str, ...]]] = []
        self.pulled: list[tuple[str, AuthConfig | None]] = []
        self._next_id = 0
        self.sandboxes_created = 0
        self.containers_started = 0

    # -- Runtime ------------------------------------------------------------------------------

    async def version(self) -> RuntimeVersion:
        return self.runtime_version

    async def status(self) -> None:
        if not self.healthy:
            raise RuntimeUnavailableError("fake runtime is marked unhealthy")

    async def run_pod_sandbox(self, config: SandboxConfig) -> PodSandboxStatus:
        self._check_healthy()
        if len(self._sandboxes) >= self._max_sandboxes:
            raise CapacityError(f"fake runtime holds {self._max_sandboxes} sandboxes already")
        sandbox_id = self._new_id("sandbox")
        slot = 0 if config.host_network else self._free_ip_slot()
        ip = self._host_ip if config.host_network else _slot_ip(slot)
        status = PodSandboxStatus(
            id=sandbox_id,
            uid=config.uid,
            name=config.name,
            namespace=config.namespace,
            attempt=config.attempt,
            state=SandboxState.READY,
            ip=ip,
            created_at=self._clock(),
        )
        self._sandboxes[sandbox_id] = _Sandbox(status, config, slot)
        self.sandboxes_created += 1
        return status

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        sandbox = self._sandboxes.get(sandbox_id)
        if sandbox is None:
            return
        for container in sandbox.containers.values():
            self._stop(container)
        sandbox.status = replace(sandbox.status, state=SandboxState.NOT_READY)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        sandbox = self._sandboxes.pop(sandbox_id, None)
        if sandbox is None:
            return
        for container_id in sandbox.containers:
            self._containers.pop(container_id, None)

    async def pull_image(self, image: str, auth: AuthConfig | None = None) -> str:
        self._check_healthy()
        if len(self.pulled) < 10_000:
            self.pulled.append((image, auth))
        script = self._script(None, image)
        if script is not None and script.pull_failures:
            failed = self._pulls.get(image, 0)
            if script.pull_failures < 0 or failed < script.pull_failures:
                # one counter per scripted image: bounded by the scripts themselves
                self._pulls[image] = failed + 1
                reason = script.pull_error or "not found"
                raise ImagePullError(f'failed to pull image "{image}": {reason}')
        ref = _image_ref(image)
        self.images[image] = ImageInfo(id=ref.rsplit("@", 1)[-1], tags=(image,),
                                       digests=(ref,), size=1024)
        return ref

    async def image_status(self, image: str) -> ImageInfo | None:
        """Every image is present, except scripted pull failures not pulled yet."""
        if image in self.images:
            return self.images[image]
        script = self._script(None, image)
        if script is not None and script.pull_failures:
            return None
        ref = _image_ref(image)
        return ImageInfo(id=ref.rsplit("@", 1)[-1], tags=(image,), digests=(ref,), size=1024)

    async def list_images(self) -> list[ImageInfo]:
        return list(self.images.values())

    async def remove_image(self, image_id: str) -> None:
        for name, info in list(self.images.items()):
            if info.id == image_id:
                del self.images[name]

    async def image_fs_info(self) -> tuple[str, int]:
        return "/fake", sum(i.size for i in self.images.values())

    async def exec_sync(self, container_id: str, cmd: tuple[str, ...],
                        timeout: float) -> ExecResult:
        container = self._containers.get(container_id)
        if container is None:
            raise NotFoundError(f"no container {container_id}")
        if len(self.execs) < 10_000:
            self.execs.append((container_id, cmd))
        script = self._script(container.spec.name, container.spec.image)
        if script is None:
            return ExecResult(0)
        return ExecResult(script.exec_exit_code, script.exec_output.encode())

    async def update_container_resources(self, container_id: str,
                                         resources: Resources) -> None:
        container = self._containers.get(container_id)
        if container is None:
            raise NotFoundError(f"no container {container_id}")
        container.spec = replace(container.spec, resources=resources)

    async def start_container(self, sandbox_id: str, spec: ContainerSpec) -> str:
        self._check_healthy()
        sandbox = self._sandboxes.get(sandbox_id)
        if sandbox is None:
            raise NotFoundError(f"no sandbox {sandbox_id}")
        if sandbox.status.state is not SandboxState.READY:
            raise ContainerRuntimeError(f"sandbox {sandbox_id} is not ready")
        if len(self._containers) >= self._max_containers:
            raise CapacityError(f"fake runtime holds {self._max_containers} containers already")
        script = self._script(spec.name, spec.image)
        now = self._clock()
        exit_at = None
        if script is not None and script.exit_after_ms is not None:
            exit_at = now + script.exit_after_ms / 1000
        container_id = self._new_id("container")
        container = _Container(
            status=ContainerStatus(
                id=container_id,
                name=spec.name,
                attempt=spec.attempt,
                state=ContainerState.RUNNING,
                image=spec.image,
                image_ref=_image_ref(spec.image),
                created_at=now,
                started_at=now,
            ),
            sandbox_id=sandbox_id,
            spec=spec,
            exit_at=exit_at,
        )
        self._containers[container_id] = container
        sandbox.containers[container_id] = container
        self.containers_started += 1
        return container_id

    async def stop_container(self, container_id: str, timeout: float) -> None:
        container = self._containers.get(container_id)
        if container is not None:
            self._stop(container)

    async def remove_container(self, container_id: str) -> None:
        container = self._containers.pop(container_id, None)
        if container is None:
            return
        sandbox = self._sandboxes.get(container.sandbox_id)
        if sandbox is not None:
            sandbox.containers.pop(container_id, None)

    async def list_pods(self, uid: str | None = None) -> list[PodSandboxStatus]:
        self._check_healthy()
        result = []
        for sandbox in self._sandboxes.values():
            if uid is not None and sandbox.config.uid != uid:
                continue
            statuses = tuple(self._observe(c) for c in sandbox.containers.values())
            result.append(replace(sandbox.status, containers=statuses))
        return result

    # -- test helpers -------------------------------------------------------------------------

    def sandbox_config(self, sandbox_id: str) -> SandboxConfig:
        """The config a sandbox was created with (volumes included)."""
        return self._sandboxes[sandbox_id].config

    def container_spec(self, container_id: str) -> ContainerSpec:
        """The spec a container was started with (resolved env included)."""
        return self._containers[container_id].spec

    def exit_container(self, container_id: str, exit_code: int) -> None:
        """Make a running container exit now with ``exit_code``."""
        container = self._containers[container_id]
        if container.status.state is ContainerState.RUNNING:
            container.exit_at = None
            container.status = _exited(container.status, self._clock(), exit_code)

    def reboot(self) -> None:
        """Simulate a host reboot: every container exits (137) and every sandbox is not ready."""
        for sandbox in self._sandboxes.values():
            for container in sandbox.containers.values():
                status = self._observe(container)
                if status.state is ContainerState.RUNNING:
                    container.exit_at = None
                    container.status = _exited(status, self._clock(), 137)
            sandbox.status = replace(sandbox.status, state=SandboxState.NOT_READY)

    # -- internals ----------------------------------------------------------------------------

    def _check_healthy(self) -> None:
        if not self.healthy:
            raise RuntimeUnavailableError("fake runtime is marked unhealthy")

    def _script(self, name: str | None, image: str) -> ContainerScript | None:
        if name is not None and name in self.scripts:
            return self.scripts[name]
        return self.scripts.get(image)

    def _observe(self, container: _Container) -> ContainerStatus:
        status = container.status
        if (
            status.state is ContainerState.RUNNING
            and container.exit_at is not None
            and self._clock() >= container.exit_at
        ):
            script = self._script(container.spec.name, container.spec.image)
            code = script.exit_code if script is not None else 0
            container.status = status = _exited(status, container.exit_at, code)
            container.exit_at = None
        return status

    def _stop(self, container: _Container) -> None:
        status = self._observe(container)
        if status.state is ContainerState.RUNNING:
            container.exit_at = None
            container.status = _exited(status, self._clock(), self._stop_exit_code)

    def _new_id(self, kind: str) -> str:
        self._next_id += 1
        return hashlib.sha256(f"{kind}-{self._next_id}".encode()).hexdigest()

    def _free_ip_slot(self) -> int:
        used = {s.ip_slot for s in self._sandboxes.values()}
        for slot in range(2, 65535):
            if slot not in used:
                return slot
        raise CapacityError("fake runtime has no free pod IP")


def _slot_ip(slot: int) -> str:
    return f"{_POD_SUBNET}.{slot // 256}.{slot % 256}"


def _image_ref(image: str) -> str:
    repo = image.split("@", 1)[0]
    last = repo.rsplit("/", 1)[-1]
    if ":" in last:
        repo = repo[: len(repo) - len(last)] + last.split(":", 1)[0]
    digest = hashlib.sha256(image.encode()).hexdigest()
    return f"{repo}@sha256:{digest}"


def _exited(status: ContainerStatus, at: float, code: int) -> ContainerStatus:
    return replace(
        status,
        state=ContainerState.EXITED,
        finished_at=at,
        exit_code=code,
        reason="Completed" if code == 0 else "Error",
    )
