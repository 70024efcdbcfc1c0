"""CRIRuntime on a private containerd: memory and latency of real pods.

    python bench/cri_runtime.py [--pods 20] [--network loopback|bridge]

Prints containerd's idle RSS, the RSS each pod adds (its shim), and median/p99 of
RunPodSandbox and of one container's create+start+stop+remove. Pods use host networking
(``--network bridge``: their own network namespace and IP, through the CNI bridge).
"""

from __future__ import annotations

import argparse
import asyncio
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
    finally:
        await ctd.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--network", choices=["loopback", "bridge"], default="loopback")
    args = parser.parse_args()
    asyncio.run(run(max(1, min(args.pods, 200)), args.network))


if __name__ == "__main__":
    main()
