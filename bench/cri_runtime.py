"""CRIRuntime on a private containerd: memory and latency of real pods.

    python bench/cri_runtime.py [--pods 20] [--network loopback|bridge]

Prints containerd's idle RSS, the RSS each pod adds (its shim), and median/p99 of
RunPodSandbox and of one container's create+start+stop+remove. Pods use host networking
(``--network bridge``: their own network namespace and IP, through the CNI bridge).

Then the floor under Edged's pod start (``bench/edged_pods.py``): the same number of pods
started all at once straight through CRI (sandbox, then one container), with no API server,
cloudcore or edgecore: per pod p50/p99 until its container runs, and the CPU seconds that
containerd, its shims, runc and the CNI plugins spent on the burst.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from pykubeedge.devcluster.containerd import PrivateContainerd
from pykubeedge.devcluster.localimages import build_local_images
from pykubeedge.edge.edged.cri import CRIRuntime
from pykubeedge.edge.edged.runtime import ContainerSpec, SandboxConfig


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pss_mb(pid: int) -> float:
    """Proportional set size: shared pages (the shim binary) split among their users."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def line(what: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"{what:<38} median {statistics.median(ms):7.1f} ms   p99 {pct(ms, 0.99):7.1f} ms"
            f"   (n={len(ms)})")


async def run(pods: int, network: str) -> None:
    base = Path(tempfile.mkdtemp(prefix="pke-bench-", dir="/tmp"))
    ctd = PrivateContainerd(base, network=network)  # type: ignore[arg-type]
    host_network = network != "bridge"
    try:
        started = time.monotonic()
        await ctd.start()
        print(f"containerd ready in {time.monotonic() - started:.2f} s")
        archive = base / "images.tar"
        await build_local_images(archive)
        started = time.monotonic()
        await ctd.import_images(archive)
        print(f"images imported in {time.monotonic() - started:.2f} s")
        await asyncio.sleep(2)
        assert ctd.pid is not None
        idle = rss_mb(ctd.pid)

        rt: CRIRuntime
        async with ctd.runtime(pods_dir=base / "pods", pod_logs_dir=base / "logs") as rt:
            await rt.version()
            sandbox_times, cycle_times, sandboxes = [], [], []
            for i in range(pods):
                config = SandboxConfig(uid=str(uuid.uuid4()), name=f"bench-{i}",
                                       namespace="default", host_network=host_network)
                t0 = time.monotonic()
                sandbox = await rt.run_pod_sandbox(config)
                sandbox_times.append(time.monotonic() - t0)
                sandboxes.append(sandbox.id)
                # one short-lived container through its whole life, then one that stays
                t0 = time.monotonic()
                cid = await rt.start_container(sandbox.id, ContainerSpec(
                    name="cycle", image="busybox", command=("sleep", "3600")))
                await rt.stop_container(cid, 0)
                await rt.remove_container(cid)
                cycle_times.append(time.monotonic() - t0)
                await rt.start_container(sandbox.id, ContainerSpec(
                    name="app", image="busybox", command=("sleep", "3600")))
            await asyncio.sleep(1)
            shims = ctd.shim_pids()
            shim_rss = [rss_mb(pid) for pid in shims]
            shim_pss = [pss_mb(pid) for pid in shims]
            loaded = rss_mb(ctd.pid)
            t0 = time.monotonic()
            await rt.list_pods()
            relist_cold = time.monotonic() - t0
            t0 = time.monotonic()
            listed = await rt.list_pods()
            relist = time.monotonic() - t0
            teardown = []
            for pod in listed:
                t0 = time.monotonic()
                for container in pod.containers:
                    await rt.stop_container(container.id, 0)
                await rt.stop_pod_sandbox(pod.id)
                await rt.remove_pod_sandbox(pod.id)
                teardown.append(time.monotonic() - t0)

            burst, burst_cpu, burst_wall = await _burst(rt, ctd.pid, pods, host_network)

        print(f"containerd {ctd.endpoint} ({network}), {pods} pods, each: pause + 1 busybox")
        print(f"containerd idle RSS                     {idle:7.1f} MB")
        print(f"containerd RSS with {pods} pods             {loaded:7.1f} MB "
              f"(+{(loaded - idle) / pods:.2f} MB/pod)")
        print(f"shims: {len(shims)}, RSS each              "
              f" median {statistics.median(shim_rss):5.1f} MB   max {max(shim_rss):5.1f} MB"
              f"   total {sum(shim_rss):6.1f} MB")
        print(f"shims, PSS each (shared pages split)     median {statistics.median(shim_pss):5.1f}"
              f" MB   total {sum(shim_pss):6.1f} MB")
        print(line("RunPodSandbox (+ its status)", sandbox_times))
        print(line("container create+start+stop+remove", cycle_times))
        print(line("pod teardown (stop + remove sandbox)", teardown))
        print(f"{'relist (list_pods of all pods)':<38} first {relist_cold * 1000:6.1f} ms"
              f"   then {relist * 1000:6.1f} ms (status cached)")
        print(line(f"{pods} pods at once: start to running", burst))
        print(f"{pods} pods at once: all running after {burst_wall:.2f} s; containerd, shims,"
              f" runc and CNI used {burst_cpu:.2f} CPU-s ({burst_cpu / pods * 1000:.0f} ms/pod;"
              f" {os.cpu_count()} cores)")
    finally:
        await ctd.stop()
        shutil.rmtree(base, ignore_errors=True)


def _cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` and of its children it has reaped (runc, CNI plugins)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rpartition(")")[2].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _runtime_cpu_s(containerd_pid: int) -> float:
    """containerd's CPU seconds and those of every live shim (shims reparent to init)."""
    total = _cpu_s(containerd_pid)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm", encoding="ascii") as f:
                    if f.read().startswith("containerd-shim"):
                        total += _cpu_s(int(entry))
            except OSError:
                continue
    return total


async def _burst(rt: CRIRuntime, containerd_pid: int, pods: int,
                 host_network: bool) -> tuple[list[float], float, float]:
    """Start ``pods`` pods at once; per pod seconds until its container runs, the runtime's
    CPU seconds for the whole burst, its wall time. The pods are removed again."""
    async def one(i: int) -> tuple[str, float]:
        t0 = time.monotonic()
        sandbox = await rt.run_pod_sandbox(SandboxConfig(
            uid=str(uuid.uuid4()), name=f"burst-{i}", namespace="default",
            host_network=host_network))
        await rt.start_container(sandbox.id, ContainerSpec(
            name="app", image="busybox", command=("sleep", "3600")))
        return sandbox.id, time.monotonic() - t0

    cpu0, t0 = _runtime_cpu_s(containerd_pid), time.monotonic()
    results = await asyncio.gather(*(one(i) for i in range(pods)))
    wall = time.monotonic() - t0
    cpu = _runtime_cpu_s(containerd_pid) - cpu0
    for pod in await rt.list_pods():
        for container in pod.containers:
            await rt.stop_container(container.id, 0)
        await rt.stop_pod_sandbox(pod.id)
        await rt.remove_pod_sandbox(pod.id)
    return [took for _, took in results], cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--network", choices=["loopback", "bridge"], default="loopback")
    args = parser.parse_args()
    asyncio.run(run(max(1, min(args.pods, 200)), args.network))


if __name__ == "__main__":
    main()
