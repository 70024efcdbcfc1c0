"""The node's resource usage in kubelet's three shapes: the Summary API
(``/stats/summary``, ``stats/v1alpha1``), ``/metrics/resource`` (what metrics-server scrapes)
and ``/metrics/cadvisor`` (cAdvisor's container series), from one :class:`Snapshot`::

    snap = Snapshot(node_name="edge-1", node=node_stats, pods=[...], taken=time.time())
    body = resource_metrics(snap)          # Prometheus text, millisecond timestamps
    doc = summary(snap, rates)             # the Summary JSON document

metrics-server drops a pod whose containers report zero CPU or memory, and needs two
scrapes before ``kubectl top`` answers; the figures come straight from CRI and the root
cgroup, never made up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pykubeedge.edge.edged.server.stats import CPURates, NodeStats
from pykubeedge.edge.edged.streaming import InterfaceUsage, ResourceUsage


@dataclass(frozen=True, slots=True)
class ContainerView:
    name: str
    container_id: str
    start_time: float
    usage: ResourceUsage | None
    image: str = ""
    writable_layer_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class PodView:
    name: str
    namespace: str
    uid: str
    start_time: float
    containers: tuple[ContainerView, ...] = ()
    usage: ResourceUsage | None = None
    interfaces: tuple[InterfaceUsage, ...] = ()
    default_interface: str = ""
    process_count: int | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    node_name: str
    node: NodeStats
    pods: tuple[PodView, ...] = ()
    taken: float = field(default_factory=time.time)
    scrape_error: bool = False


def rfc3339(seconds: float) -> str:
    """``metav1.Time``: RFC 3339 in seconds, UTC.

    >>> rfc3339(0)
    '1970-01-01T00:00:00Z'
    """
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def sum_usage(usages: Iterable[ResourceUsage | None]) -> ResourceUsage | None:
    """The total of several containers' usage (a pod's, when the runtime gives none)."""
    known = [u for u in usages if u is not None]
    if not known:
        return None
    return ResourceUsage(
        timestamp=max(u.timestamp for u in known),
        cpu_core_nanoseconds=sum(u.cpu_core_nanoseconds for u in known),
        memory_working_set_bytes=sum(u.memory_working_set_bytes for u in known),
        memory_usage_bytes=sum(u.memory_usage_bytes for u in known),
        memory_rss_bytes=sum(u.memory_rss_bytes for u in known))


# -- the Summary API ----------------------------------------------------------------------------


def _cpu(key: str, usage: ResourceUsage, rates: CPURates) -> dict[str, Any]:
    out: dict[str, Any] = {"time": rfc3339(usage.timestamp),
                           "usageCoreNanoSeconds": usage.cpu_core_nanoseconds}
    nano = rates.nano_cores(key, usage)
    if nano is not None:
        out["usageNanoCores"] = nano
    return out


def _memory(usage: ResourceUsage, available: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"time": rfc3339(usage.timestamp),
                           "usageBytes": usage.memory_usage_bytes,
                           "workingSetBytes": usage.memory_working_set_bytes,
                           "rssBytes": usage.memory_rss_bytes}
    if available is not None:
        out["availableBytes"] = available
    return out


def _network(when: float, interfaces: Iterable[InterfaceUsage], default: str) -> dict[str, Any]:
    listed = [{"name": i.name, "rxBytes": i.rx_bytes, "rxErrors": i.rx_errors,
               "txBytes": i.tx_bytes, "txErrors": i.tx_errors} for i in interfaces]
    out: dict[str, Any] = {"time": rfc3339(when)}
    chosen = next((i for i in listed if i["name"] == default), listed[0] if listed else None)
    if chosen is not None:
        out.update(chosen)  # the default interface, inline (Go's embedded InterfaceStats)
    out["interfaces"] = listed
    return out


def summary(snap: Snapshot, rates: CPURates, *, only_cpu_and_memory: bool = False,
            ) -> dict[str, Any]:
    """The Summary API document (``GET /stats/summary``)."""
    node = snap.node
    node_doc: dict[str, Any] = {
        "nodeName": snap.node_name,
        "startTime": rfc3339(node.boot_time),
        "cpu": _cpu("node", node.usage, rates),
        "memory": _memory(node.usage, node.memory_available_bytes),
    }
    if not only_cpu_and_memory:
        node_doc["network"] = _network(snap.taken, node.interfaces, "")
        if node.fs is not None:
            fs = {"time": rfc3339(snap.taken), "availableBytes": node.fs.available_bytes,
                  "capacityBytes": node.fs.capacity_bytes, "usedBytes": node.fs.used_bytes,
                  "inodesFree": node.fs.inodes_free, "inodes": node.fs.inodes,
                  "inodesUsed": node.fs.inodes - node.fs.inodes_free}
            node_doc["fs"] = fs
            node_doc["runtime"] = {"imageFs": fs, "containerFs": fs}
        node_doc["rlimit"] = {"time": rfc3339(snap.taken), "maxpid": node.max_pid,
                              "curproc": node.processes}
    pods = []
    for pod in snap.pods:
        containers = []
        for c in pod.containers:
            entry: dict[str, Any] = {"name": c.name, "startTime": rfc3339(c.start_time)}
            if c.usage is not None:
                entry["cpu"] = _cpu(c.container_id, c.usage, rates)
                entry["memory"] = _memory(c.usage)
            if c.writable_layer_bytes is not None and not only_cpu_and_memory:
                entry["rootfs"] = {"time": rfc3339(snap.taken),
                                   "usedBytes": c.writable_layer_bytes}
            containers.append(entry)
        pod_doc: dict[str, Any] = {
            "podRef": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
            "startTime": rfc3339(pod.start_time),
            "containers": containers,
        }
        if pod.usage is not None:
            pod_doc["cpu"] = _cpu(f"pod/{pod.uid}", pod.usage, rates)
            pod_doc["memory"] = _memory(pod.usage)
        if not only_cpu_and_memory:
            if pod.interfaces:
                pod_doc["network"] = _network(snap.taken, pod.interfaces, pod.default_interface)
            if pod.process_count is not None:
                pod_doc["process_stats"] = {"process_count": pod.process_count}
        pods.append(pod_doc)
    return {"node": node_doc, "pods": pods}


# -- Prometheus text ----------------------------------------------------------------------------


def _value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    body = ",".join(f'{k}="{esc(v)}"' for k, v in sorted(pairs))
    return "{" + body + "}" if body else ""


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: Iterable[tuple[str, str]], value: float,
               when: float | None = None) -> None:
        stamp = f" {int(when * 1000)}" if when is not None else ""
        self.lines.append(f"{name}{_labels(labels)} {_value(value)}{stamp}")

    def render(self) -> bytes:
        return ("\n".join(self.lines) + "\n").encode()


def _running(snap: Snapshot) -> Iterable[tuple[PodView, ContainerView, ResourceUsage]]:
    for pod in snap.pods:
        for c in pod.containers:
            if c.usage is not None:
                yield pod, c, c.usage


def resource_metrics(snap: Snapshot) -> bytes:
    """``GET /metrics/resource`` (kubelet's resource metrics collector)."""
    t = _Text()
    rows = list(_running(snap))

    def ids(pod: PodView, c: ContainerView) -> list[tuple[str, str]]:
        return [("container", c.name), ("namespace", pod.namespace), ("pod", pod.name)]

    t.family("container_cpu_usage_seconds_total", "counter",
             "[STABLE] Cumulative cpu time consumed by the container in core-seconds")
    for pod, c, u in rows:
        t.sample("container_cpu_usage_seconds_total", ids(pod, c), u.cpu_core_nanoseconds / 1e9,
                 u.timestamp)
    t.family("container_memory_working_set_bytes", "gauge",
             "[STABLE] Current working set of the container in bytes")
    for pod, c, u in rows:
        t.sample("container_memory_working_set_bytes", ids(pod, c),
                 u.memory_working_set_bytes, u.timestamp)
    t.family("container_start_time_seconds", "gauge",
             "[STABLE] Start time of the container since unix epoch in seconds")
    for pod, c, _ in rows:
        t.sample("container_start_time_seconds", ids(pod, c), c.start_time)
    node = snap.node.usage
    t.family("node_cpu_usage_seconds_total", "counter",
             "[STABLE] Cumulative cpu time consumed by the node in core-seconds")
    t.sample("node_cpu_usage_seconds_total", (), node.cpu_core_nanoseconds / 1e9, node.timestamp)
    t.family("node_memory_working_set_bytes", "gauge",
             "[STABLE] Current working set of the node in bytes")
    t.sample("node_memory_working_set_bytes", (), node.memory_working_set_bytes, node.timestamp)
    t.family("pod_cpu_usage_seconds_total", "counter",
             "[STABLE] Cumulative cpu time consumed by the pod in core-seconds")
    t.family("pod_memory_working_set_bytes", "gauge",
             "[STABLE] Current working set of the pod in bytes")
    for pod in snap.pods:
        usage = pod.usage
        if usage is None:
            continue
        labels = [("namespace", pod.namespace), ("pod", pod.name)]
        t.sample("pod_cpu_usage_seconds_total", labels, usage.cpu_core_nanoseconds / 1e9,
                 usage.timestamp)
        t.sample("pod_memory_working_set_bytes", labels, usage.memory_working_set_bytes,
                 usage.timestamp)
    t.family("resource_scrape_error", "gauge",
             "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise")
    t.sample("resource_scrape_error", (), 1 if snap.scrape_error else 0)
    return t.render()


def cadvisor_metrics(snap: Snapshot) -> bytes:
    """``GET /metrics/cadvisor``: cAdvisor's container CPU, memory and network series, for
    what CRI reports (no per-cgroup detail beyond it)."""
    t = _Text()
    rows = list(_running(snap))

    def ids(pod: PodView, c: ContainerView) -> list[tuple[str, str]]:
        return [("container", c.name), ("id", c.container_id), ("image", c.image),
                ("name", c.container_id), ("namespace", pod.namespace), ("pod", pod.name)]

    series: tuple[tuple[str, str, str, Callable[[ResourceUsage], float]], ...] = (
        ("container_cpu_usage_seconds_total", "counter",
         "Cumulative cpu time consumed in seconds.", lambda u: u.cpu_core_nanoseconds / 1e9),
        ("container_memory_working_set_bytes", "gauge", "Current working set in bytes.",
         lambda u: u.memory_working_set_bytes),
        ("container_memory_usage_bytes", "gauge",
         "Current memory usage in bytes, including all memory regardless of when it was "
         "accessed", lambda u: u.memory_usage_bytes),
        ("container_memory_rss", "gauge", "Size of RSS in bytes.", lambda u: u.memory_rss_bytes),
    )
    for name, kind, help_text, pick in series:
        t.family(name, kind, help_text)
        for pod, c, u in rows:
            t.sample(name, ids(pod, c), pick(u), u.timestamp)
    for name, attr, help_text in (
            ("container_network_receive_bytes_total", "rx_bytes",
             "Cumulative count of bytes received"),
            ("container_network_transmit_bytes_total", "tx_bytes",
             "Cumulative count of bytes transmitted")):
        t.family(name, "counter", help_text)
        for pod in snap.pods:
            for i in pod.interfaces:
                t.sample(name, [("interface", i.name), ("namespace", pod.namespace),
                                ("pod", pod.name)], getattr(i, attr), snap.taken)
    return t.render()
