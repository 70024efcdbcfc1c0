"""The Node and its Lease as kubelet builds them: host facts, labels, status, conditions.

Host facts come from the real machine without psutil (``/proc``, ``statvfs``, ``platform``);
:func:`probe_host` does blocking reads, so call it through ``asyncio.to_thread``::

    host = await asyncio.to_thread(probe_host)
    node = node_object("edge-1", host, labels={"site": "a"}, status=status)
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pykubeedge import __version__
from pykubeedge.edge.edged.timefmt import micro_time, rfc3339

KUBERNETES_VERSION: Final = "v1.37.2"
"""The Kubernetes version pykubeedge's Edged speaks for (``kubeletVersion`` prefix)."""
DEFAULT_MAX_PODS: Final = 110
DEFAULT_KUBELET_PORT: Final = 10350
"""KubeEdge's edged port, reported as ``daemonEndpoints.kubeletEndpoint.Port``."""
NODE_LEASE_NAMESPACE: Final = "kube-node-lease"
DEFAULT_ROOT_DIR: Final = "/var/lib/kubelet"

LABEL_EDGE: Final = "node-role.kubernetes.io/edge"
LABEL_AGENT: Final = "node-role.kubernetes.io/agent"
LABEL_HOSTNAME: Final = "kubernetes.io/hostname"
LABEL_OS: Final = "kubernetes.io/os"
LABEL_ARCH: Final = "kubernetes.io/arch"
LABEL_BETA_OS: Final = "beta.kubernetes.io/os"
LABEL_BETA_ARCH: Final = "beta.kubernetes.io/arch"

_EVICTION_MEMORY_KI: Final = 100 * 1024  # kubelet's hard eviction: memory.available<100Mi
_EVICTION_NODEFS_FRACTION: Final = 0.10  # nodefs.available<10%

_GO_ARCH: Final = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def kubelet_version(kubernetes_version: str = KUBERNETES_VERSION) -> str:
    """The ``kubeletVersion`` pykubeedge reports.

    >>> kubelet_version("v1.37.2").startswith("v1.37.2-pykubeedge-")
    True
    """
    return f"v{kubernetes_version.removeprefix('v')}-pykubeedge-{__version__}"


def go_arch(machine: str) -> str:
    """Go's ``GOARCH`` name for ``platform.machine()``.

    >>> go_arch("x86_64"), go_arch("aarch64")
    ('amd64', 'arm64')
    """
    return _GO_ARCH.get(machine.lower(), machine.lower() or "unknown")


# -- host facts ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostInfo:
    """Facts about the machine that go into the Node."""

    hostname: str
    internal_ip: str
    cpu: int
    memory_bytes: int
    ephemeral_storage_bytes: int
    kernel_version: str
    os_image: str
    operating_system: str
    architecture: str
    machine_id: str = ""
    system_uuid: str = ""
    boot_id: str = ""
    memory_available_bytes: int = -1
    """MemAvailable (-1: unknown); memory.available for the MemoryPressure signal."""
    disk_available_bytes: int = -1
    """Free bytes of the filesystem of the root directory (nodefs.available)."""
    inodes_free_fraction: float = -1.0


def probe_host(root_dir: str = DEFAULT_ROOT_DIR) -> HostInfo:
    """Read the host's facts. Blocking: run it in a thread.

    >>> probe_host().operating_system    # doctest: +SKIP
    'linux'
    """
    return HostInfo(
        hostname=socket.gethostname().lower(),
        internal_ip=primary_ipv4(),
        cpu=_cpu_count(),
        memory_bytes=_memory_bytes(),
        ephemeral_storage_bytes=_disk_bytes(root_dir),
        kernel_version=platform.release(),
        os_image=_os_image(),
        operating_system=platform.system().lower() or "linux",
        architecture=go_arch(platform.machine()),
        machine_id=_read_first_line("/etc/machine-id"),
        system_uuid=_read_first_line("/sys/class/dmi/id/product_uuid"),
        boot_id=_read_first_line("/proc/sys/kernel/random/boot_id"),
        memory_available_bytes=_meminfo("MemAvailable:"),
        **_disk_free(root_dir),
    )


def _meminfo(key: str) -> int:
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo", encoding="ascii") as info:
        for line in info:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return -1


def _disk_free(root_dir: str) -> dict[str, Any]:
    for path in (root_dir, "/"):
        with contextlib.suppress(OSError):
            stat = os.statvfs(path)
            inodes = stat.f_ffree / stat.f_files if stat.f_files else -1.0
            return {"disk_available_bytes": stat.f_bavail * stat.f_frsize,
                    "inodes_free_fraction": inodes}
    return {}


def primary_ipv4() -> str:
    """The source address of the default IPv4 route, or ``127.0.0.1``.

    A connected UDP socket sends nothing; it only asks the kernel which address it would use.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
            address: str = sock.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    return address if address and not address.startswith("0.") else "127.0.0.1"


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _memory_bytes() -> int:
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo", encoding="ascii") as info:
        for line in info:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(AttributeError, ValueError, OSError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return 0


def _disk_bytes(root_dir: str) -> int:
    for path in (root_dir, "/"):
        with contextlib.suppress(OSError):
            stat = os.statvfs(path)
            return stat.f_blocks * stat.f_frsize
    return 0


def _os_image() -> str:
    with contextlib.suppress(OSError), open("/etc/os-release", encoding="utf-8") as release:
        for line in release:
            key, _, value = line.strip().partition("=")
            if key == "PRETTY_NAME":
                return value.strip().strip('"')
    return platform.platform()


def _read_first_line(path: str) -> str:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.readline().strip()
    except (OSError, UnicodeDecodeError):
        return ""


# -- conditions and status ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConditionState:
    """One node condition without its heartbeat."""

    status: str
    reason: str
    message: str
    transition: float


class NodeConditions:
    """Node conditions that remember when each last changed (``lastTransitionTime``).

    >>> c = NodeConditions()
    >>> c.set("Ready", "True", "KubeletReady", "kubelet is posting ready status", now=10.0)
    True
    >>> c.set("Ready", "True", "KubeletReady", "kubelet is posting ready status", now=20.0)
    False
    >>> c.render(heartbeat=30.0)[0]["lastTransitionTime"]
    '1970-01-01T00:00:10Z'
    """

    def __init__(self) -> None:
        self._conditions: dict[str, ConditionState] = {}

    def set(self, kind: str, status: str, reason: str, message: str, *, now: float) -> bool:
        """Set a condition; True when anything but the heartbeat changed."""
        old = self._conditions.get(kind)
        if old is not None and (old.status, old.reason, old.message) == (status, reason, message):
            return False
        transition = old.transition if old is not None and old.status == status else now
        self._conditions[kind] = ConditionState(status, reason, message, transition)
        return True

    def render(self, *, heartbeat: float) -> list[dict[str, str]]:
        """The ``status.conditions`` list with ``heartbeat`` as every ``lastHeartbeatTime``."""
        return [
            {
                "type": kind,
                "status": state.status,
                "lastHeartbeatTime": rfc3339(heartbeat),
                "lastTransitionTime": rfc3339(state.transition),
                "reason": state.reason,
                "message": state.message,
            }
            for kind, state in self._conditions.items()
        ]


PRESSURE_TRANSITION_PERIOD: Final = 300.0  # evictionPressureTransitionPeriod
_PRESSURES: Final = (
    ("MemoryPressure", ("KubeletHasInsufficientMemory", "kubelet has insufficient memory "
                        "available", "NodeHasInsufficientMemory"),
     ("KubeletHasSufficientMemory", "kubelet has sufficient memory available",
      "NodeHasSufficientMemory")),
    ("DiskPressure", ("KubeletHasDiskPressure", "kubelet has disk pressure",
                      "NodeHasDiskPressure"),
     ("KubeletHasNoDiskPressure", "kubelet has no disk pressure", "NodeHasNoDiskPressure")),
    ("PIDPressure", ("KubeletHasInsufficientPID", "kubelet has insufficient PID available",
                     "NodeHasInsufficientPID"),
     ("KubeletHasSufficientPID", "kubelet has sufficient PID available",
      "NodeHasSufficientPID")),
)


def pressure_signals(host: HostInfo) -> dict[str, bool]:
    """kubelet's default hard eviction signals (``memory.available<100Mi``,
    ``nodefs.available<10%``, ``nodefs.inodesFree<5%``; no PID threshold) on ``host``."""
    memory = 0 <= host.memory_available_bytes < _EVICTION_MEMORY_KI * 1024
    disk = (0 <= host.disk_available_bytes < host.ephemeral_storage_bytes
            * _EVICTION_NODEFS_FRACTION) or 0 <= host.inodes_free_fraction < 0.05
    return {"MemoryPressure": memory, "DiskPressure": disk, "PIDPressure": False}


def refresh_conditions(
    conditions: NodeConditions, *, runtime_error: str, now: float,
    pressure: Mapping[str, bool] | None = None,
    last_pressure: dict[str, float] | None = None,
) -> list[str]:
    """Set kubelet's four conditions in kubelet's order (Ready last); the node events of
    those that changed (``NodeHasSufficientMemory``, ``NodeReady``, ...).

    Ready follows the runtime (``runtime_error`` empty: ready), with upstream edged's reason
    ``EdgeReady``; a pressure condition stays True for 5 minutes after its signal cleared.
    """
    events: list[str] = []
    last = last_pressure if last_pressure is not None else {}
    for kind, on, off in _PRESSURES:
        if (pressure or {}).get(kind):
            last[kind] = now
        active = kind in last and now - last[kind] < PRESSURE_TRANSITION_PERIOD
        reason, message, event = on if active else off
        if conditions.set(kind, "True" if active else "False", reason, message, now=now):
            events.append(event)
    if runtime_error:
        if conditions.set("Ready", "False", "KubeletNotReady",
                          f"container runtime is down: {runtime_error}", now=now):
            events.append("NodeNotReady")
    elif conditions.set("Ready", "True", "EdgeReady", "edge is posting ready status", now=now):
        events.append("NodeReady")
    return events


def node_status(
    host: HostInfo,
    *,
    conditions: list[dict[str, str]],
    runtime_version: str,
    kubelet_version: str,
    max_pods: int = DEFAULT_MAX_PODS,
    kubelet_port: int = DEFAULT_KUBELET_PORT,
) -> dict[str, Any]:
    """The Node ``status`` object kubelet would report for ``host``."""
    memory_ki = host.memory_bytes // 1024
    capacity = {
        "cpu": str(host.cpu),
        "memory": f"{memory_ki}Ki",
        "pods": str(max_pods),
        "ephemeral-storage": f"{host.ephemeral_storage_bytes // 1024}Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
    }
    reserved_disk = int(host.ephemeral_storage_bytes * _EVICTION_NODEFS_FRACTION)
    allocatable = dict(capacity)
    allocatable["memory"] = f"{max(memory_ki - _EVICTION_MEMORY_KI, 0)}Ki"
    allocatable["ephemeral-storage"] = str(host.ephemeral_storage_bytes - reserved_disk)
    return {
        "conditions": conditions,
        "addresses": [
            {"type": "InternalIP", "address": host.internal_ip},
            {"type": "Hostname", "address": host.hostname},
        ],
        "capacity": capacity,
        "allocatable": allocatable,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "nodeInfo": {
            "machineID": host.machine_id,
            "systemUUID": host.system_uuid,
            "bootID": host.boot_id,
            "kernelVersion": host.kernel_version,
            "osImage": host.os_image,
            "containerRuntimeVersion": runtime_version,
            "kubeletVersion": kubelet_version,
            "operatingSystem": host.operating_system,
            "architecture": host.architecture,
        },
    }


def node_labels(
    node_name: str, host: HostInfo, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Kubelet's default labels plus KubeEdge's role labels and the configured ones.

    >>> h = HostInfo("h", "10.0.0.2", 1, 0, 0, "", "", "linux", "arm64")
    >>> node_labels("edge-1", h, {"site": "a"})["node-role.kubernetes.io/edge"]
    ''
    """
    labels = {
        LABEL_EDGE: "",
        LABEL_AGENT: "",
        LABEL_HOSTNAME: node_name,
        LABEL_OS: host.operating_system,
        LABEL_ARCH: host.architecture,
        LABEL_BETA_OS: host.operating_system,
        LABEL_BETA_ARCH: host.architecture,
    }
    labels.update(extra or {})
    return labels


def node_object(
    node_name: str, labels: Mapping[str, str], status: Mapping[str, Any]
) -> dict[str, Any]:
    """The v1 Node Edged registers."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node_name, "labels": dict(labels)},
        "spec": {},
        "status": dict(status),
    }


def status_without_heartbeats(status: Mapping[str, Any]) -> dict[str, Any]:
    """``status`` with the heartbeat times removed: what "changed" is measured on."""
    stripped = dict(status)
    stripped["conditions"] = [
        {k: v for k, v in c.items() if k != "lastHeartbeatTime"}
        for c in status.get("conditions", ())
    ]
    return stripped


# -- lease --------------------------------------------------------------------------------------


def lease_object(
    node_name: str,
    *,
    duration_seconds: int,
    renew_time: float,
    node_uid: str = "",
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The coordination.k8s.io/v1 Lease that says the node is alive.

    ``base`` is the last Lease the API server returned (its resourceVersion is kept);
    ``ownerReferences`` point to the Node once its ``node_uid`` is known.

    >>> lease = lease_object("edge-1", duration_seconds=40, renew_time=0, node_uid="u")
    >>> lease["spec"]["renewTime"], lease["metadata"]["ownerReferences"][0]["kind"]
    ('1970-01-01T00:00:00.000000Z', 'Node')
    """
    metadata: dict[str, Any] = {}
    if base is not None and isinstance(base.get("metadata"), dict):
        metadata = {
            k: v
            for k, v in base["metadata"].items()
            if k in ("resourceVersion", "uid", "creationTimestamp", "ownerReferences", "labels")
        }
    metadata["name"] = node_name
    metadata["namespace"] = NODE_LEASE_NAMESPACE
    if node_uid:
        metadata["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}
        ]
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": node_name,
            "leaseDurationSeconds": duration_seconds,
            "renewTime": micro_time(renew_time),
        },
    }
