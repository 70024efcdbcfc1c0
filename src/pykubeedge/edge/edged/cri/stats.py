"""CRI's stats calls for :class:`~.remote.CRIRuntime`: ``ListContainerStats`` and
``ListPodSandboxStats``, as plain :mod:`~pykubeedge.edge.edged.streaming` records::

    for stats in await runtime.list_container_stats():
        print(stats.pod_name, stats.name, stats.usage.memory_working_set_bytes)

containerd's ``usage_nano_cores`` is measured against whichever caller asked last, so it is
not read: rates are computed from ``usage_core_nano_seconds`` by the consumer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pykubeedge.edge.edged.cri import api_pb2 as api
from pykubeedge.edge.edged.streaming import (
    ContainerStats,
    InterfaceUsage,
    PodSandboxStats,
    ResourceUsage,
)

# kubelet's labels, as CRIRuntime sets them on every container
_POD_NAME, _POD_NAMESPACE, _POD_UID = ("io.kubernetes.pod.name", "io.kubernetes.pod.namespace",
                                       "io.kubernetes.pod.uid")


def _usage(cpu: api.CpuUsage, memory: api.MemoryUsage) -> ResourceUsage | None:
    stamp = cpu.timestamp or memory.timestamp
    if not stamp or not cpu.HasField("usage_core_nano_seconds"):
        return None
    return ResourceUsage(
        timestamp=stamp / 1e9,
        cpu_core_nanoseconds=cpu.usage_core_nano_seconds.value,
        memory_working_set_bytes=memory.working_set_bytes.value,
        memory_usage_bytes=memory.usage_bytes.value,
        memory_rss_bytes=memory.rss_bytes.value,
    )


def container_stats(stats: api.ContainerStats) -> ContainerStats:
    """One CRI ContainerStats as a record."""
    attributes = stats.attributes
    labels = attributes.labels
    layer = stats.writable_layer
    return ContainerStats(
        container_id=attributes.id,
        name=attributes.metadata.name,
        pod_name=labels.get(_POD_NAME, ""),
        pod_namespace=labels.get(_POD_NAMESPACE, ""),
        pod_uid=labels.get(_POD_UID, ""),
        usage=_usage(stats.cpu, stats.memory),
        writable_layer_bytes=layer.used_bytes.value if layer.HasField("used_bytes") else None,
    )


def sandbox_stats(stats: api.PodSandboxStats) -> PodSandboxStats:
    """One CRI PodSandboxStats as a record."""
    meta = stats.attributes.metadata
    linux = stats.linux
    network = linux.network
    interfaces = tuple(
        InterfaceUsage(i.name, i.rx_bytes.value, i.tx_bytes.value, i.rx_errors.value,
                       i.tx_errors.value)
        for i in (*([network.default_interface] if network.HasField("default_interface")
                    else []), *network.interfaces))
    unique = tuple({i.name: i for i in interfaces}.values())
    return PodSandboxStats(
        sandbox_id=stats.attributes.id,
        pod_name=meta.name,
        pod_namespace=meta.namespace,
        pod_uid=meta.uid,
        usage=_usage(linux.cpu, linux.memory),
        interfaces=unique,
        default_interface=network.default_interface.name,
        process_count=(linux.process.process_count.value
                       if linux.process.HasField("process_count") else None),
    )


class CRIStats:
    """The stats half of :class:`~.streaming.StreamingRuntime` over CRI (a mixin of
    :class:`~.remote.CRIRuntime`)."""

    query_timeout: float

    _call: Callable[[str, str, Any, float], Awaitable[Any]]  # CRIRuntime's gRPC call

    async def list_container_stats(self) -> list[ContainerStats]:
        """Every pod container's CPU and memory (containers Edged did not make are left out)."""
        reply = await self._call("runtime", "ListContainerStats",
                                 api.ListContainerStatsRequest(
                                     filter=api.ContainerStatsFilter()), self.query_timeout)
        return [container_stats(s) for s in reply.stats if _POD_UID in s.attributes.labels]

    async def list_pod_sandbox_stats(self) -> list[PodSandboxStats]:
        """Every pod sandbox's CPU, memory, network and process count."""
        reply = await self._call("runtime", "ListPodSandboxStats",
                                 api.ListPodSandboxStatsRequest(
                                     filter=api.PodSandboxStatsFilter()), self.query_timeout)
        return [sandbox_stats(s) for s in reply.stats if s.attributes.metadata.uid]
