"""What Edged's kubelet server needs of a container runtime, beyond running pods: streaming
URLs (CRI ``Exec``/``Attach``/``PortForward``), where a container's log is, and resource
usage (CRI ``ListContainerStats``/``ListPodSandboxStats``).

The runtime answers an exec with the URL of its own streaming server; the kubelet server
relays the API server's upgraded connection to it byte for byte (containerd's server speaks
SPDY to the API server; nothing here has to)::

    url = await runtime.exec(container_id, ["sh"], tty=True, stdin=True, stdout=True,
                             stderr=False)            # http://127.0.0.1:35107/exec/Xa9_kf2c
    stats = await runtime.list_container_stats()
    stats[0].usage.cpu_core_nanoseconds               # cumulative CPU time
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ResourceUsage:
    """CPU and memory at ``timestamp`` (Unix seconds), as CRI's CpuUsage and MemoryUsage."""

    timestamp: float
    cpu_core_nanoseconds: int
    """Cumulative CPU time (``usage_core_nano_seconds``)."""
    memory_working_set_bytes: int
    memory_usage_bytes: int = 0
    memory_rss_bytes: int = 0


@dataclass(frozen=True, slots=True)
class ContainerStats:
    container_id: str
    name: str
    pod_name: str
    pod_namespace: str
    pod_uid: str
    usage: ResourceUsage | None
    """None when the runtime had no figures (a container that just started)."""
    writable_layer_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class InterfaceUsage:
    name: str
    rx_bytes: int
    tx_bytes: int
    rx_errors: int = 0
    tx_errors: int = 0


@dataclass(frozen=True, slots=True)
class PodSandboxStats:
    sandbox_id: str
    pod_name: str
    pod_namespace: str
    pod_uid: str
    usage: ResourceUsage | None
    interfaces: tuple[InterfaceUsage, ...] = ()
    default_interface: str = ""
    process_count: int | None = None


class StreamingRuntime(Protocol):
    """The streaming and stats half of :class:`~.runtime.Runtime`."""

    async def exec(self, container_id: str, cmd: Sequence[str], *, tty: bool, stdin: bool,
                   stdout: bool, stderr: bool) -> str:
        """The streaming URL of a new exec session (single use, valid about a minute)."""
        ...

    async def attach(self, container_id: str, *, tty: bool, stdin: bool, stdout: bool,
                     stderr: bool) -> str:
        """The streaming URL of an attach session to the container's main process."""
        ...

    async def port_forward(self, sandbox_id: str, ports: Sequence[int]) -> str:
        """The streaming URL of a port-forward session into the sandbox's network."""
        ...

    async def container_log_path(self, container_id: str) -> str:
        """The container's log file (CRI format); :class:`~.runtime.NotFoundError` if the
        container is gone."""
        ...

    async def list_container_stats(self) -> list[ContainerStats]:
        """CPU and memory of every container the runtime has."""
        ...

    async def list_pod_sandbox_stats(self) -> list[PodSandboxStats]:
        """CPU, memory, network and process count of every pod sandbox."""
        ...
