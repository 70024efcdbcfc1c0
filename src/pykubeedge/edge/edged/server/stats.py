"""The node's own CPU, memory, filesystem and network, read as kubelet (cAdvisor) reads them:
the root cgroup (v1 ``cpuacct``/``memory``, or v2's ``cpu.stat``/``memory.stat``), falling
back to ``/proc``; plus the rates the Summary API reports, computed between two samples::

    node = await asyncio.to_thread(read_node_stats, "/var/lib/kubelet")
    node.usage.cpu_core_nanoseconds, node.usage.memory_working_set_bytes
    rates = CPURates()
    rates.nano_cores("node", node.usage)      # None on the first sample

Working set is usage minus inactive file pages (cAdvisor's rule), never below zero.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pykubeedge.edge.edged.streaming import InterfaceUsage, ResourceUsage

CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
MAX_RATE_KEYS: Final = 8192


@dataclass(frozen=True, slots=True)
class FsUsage:
    capacity_bytes: int
    available_bytes: int
    used_bytes: int
    inodes: int
    inodes_free: int


@dataclass(frozen=True, slots=True)
class NodeStats:
    usage: ResourceUsage
    memory_available_bytes: int
    fs: FsUsage | None
    interfaces: tuple[InterfaceUsage, ...]
    boot_time: float
    max_pid: int
    processes: int


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _stat_file(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[key] = int(value)
    return out


def _meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    for line in _read(Path("/proc/meminfo")).splitlines():
        key, _, rest = line.partition(":")
        with contextlib.suppress(ValueError, IndexError):
            out[key] = int(rest.split()[0]) * 1024
    return out


def node_cpu_nanoseconds(root: Path = CGROUP_ROOT) -> int:
    """Cumulative CPU time of the whole node."""
    v1 = _read(root / "cpuacct" / "cpuacct.usage").strip()
    if v1.isdigit():
        return int(v1)
    v2 = _stat_file(_read(root / "cpu.stat"))
    if "usage_usec" in v2:
        return v2["usage_usec"] * 1000
    first = _read(Path("/proc/stat")).partition("\n")[0].split()
    ticks = os.sysconf("SC_CLK_TCK") or 100
    # user nice system idle iowait irq softirq steal: everything but idle and iowait
    busy = sum(int(v) for i, v in enumerate(first[1:9]) if i not in (3, 4)) if first else 0
    return busy * 1_000_000_000 // ticks


def node_memory(root: Path = CGROUP_ROOT) -> tuple[int, int, int]:
    """``(usage, working set, rss)`` of the node in bytes."""
    v1 = _read(root / "memory" / "memory.usage_in_bytes").strip()
    if v1.isdigit():
        stat = _stat_file(_read(root / "memory" / "memory.stat"))
        usage = int(v1)
        working = max(usage - stat.get("total_inactive_file", 0), 0)
        return usage, working, stat.get("total_rss", 0)
    stat = _stat_file(_read(root / "memory.stat"))
    if "anon" in stat and "file" in stat:
        usage = stat["anon"] + stat["file"]
        return usage, max(usage - stat.get("inactive_file", 0), 0), stat["anon"]
    info = _meminfo()
    usage = info.get("MemTotal", 0) - info.get("MemFree", 0)
    working = info.get("MemTotal", 0) - info.get("MemAvailable", 0)
    return usage, max(working, 0), 0


def _fs(path: str) -> FsUsage | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    capacity = st.f_blocks * st.f_frsize
    available = st.f_bavail * st.f_frsize
    return FsUsage(capacity, available, capacity - st.f_bfree * st.f_frsize, st.f_files,
                   st.f_ffree)


def _interfaces() -> tuple[InterfaceUsage, ...]:
    found = []
    for line in _read(Path("/proc/net/dev")).splitlines()[2:]:
        name, _, rest = line.partition(":")
        fields = rest.split()
        name = name.strip()
        if len(fields) < 11 or name == "lo":
            continue
        with contextlib.suppress(ValueError):
            found.append(InterfaceUsage(name, int(fields[0]), int(fields[8]), int(fields[2]),
                                        int(fields[10])))
    return tuple(found)


def _boot_time() -> float:
    for line in _read(Path("/proc/stat")).splitlines():
        if line.startswith("btime "):
            with contextlib.suppress(ValueError):
                return float(line.split()[1])
    return 0.0


def read_node_stats(root_dir: str = "/", cgroup_root: Path = CGROUP_ROOT) -> NodeStats:
    """Everything the Summary API and ``/metrics/resource`` say of the node (blocking)."""
    now = time.time()
    cpu = node_cpu_nanoseconds(cgroup_root)
    usage, working, rss = node_memory(cgroup_root)
    total = _meminfo().get("MemTotal", 0)
    pid_max = _read(Path("/proc/sys/kernel/pid_max")).strip()
    processes = sum(1 for name in os.listdir("/proc") if name.isdigit())
    return NodeStats(
        usage=ResourceUsage(timestamp=now, cpu_core_nanoseconds=cpu,
                            memory_working_set_bytes=working, memory_usage_bytes=usage,
                            memory_rss_bytes=rss),
        memory_available_bytes=max(total - working, 0),
        fs=_fs(root_dir) or _fs("/"),
        interfaces=_interfaces(),
        boot_time=_boot_time(),
        max_pid=int(pid_max) if pid_max.isdigit() else 0,
        processes=processes,
    )


class CPURates:
    """``usageNanoCores`` from two cumulative samples of the same key (bounded)."""

    def __init__(self, max_keys: int = MAX_RATE_KEYS) -> None:
        self._last: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._max = max_keys

    def nano_cores(self, key: str, usage: ResourceUsage) -> int | None:
        previous = self._last.get(key)
        self._last[key] = (usage.timestamp, usage.cpu_core_nanoseconds)
        self._last.move_to_end(key)
        while len(self._last) > self._max:
            self._last.popitem(last=False)
        if previous is None:
            return None
        elapsed = usage.timestamp - previous[0]
        spent = usage.cpu_core_nanoseconds - previous[1]
        if elapsed <= 0 or spent < 0:
            return None
        return int(spent / elapsed)
