"""Issue 8's closing figures: 50 pods from create to Running, and what cloudcore costs meanwhile,
for an edge and a cloudcore of each pairing of ours and upstream KubeEdge v1.23.1 (the rig of
tests/interop).

    flock /tmp/pykubeedge-suite.lock env PYTHONPATH=$PWD/src python3 bench/interop_pods.py \
        [--pods 50] [--pairs ours/upstream,upstream/upstream,upstream/ours]   # cloud/edge

Per pairing it prints pod create -> Running (each pod's own time, seen by a watch-like poll
of the node's pods every 0.1 s): p50, p99, max and the whole batch; and cloudcore's process
tree during the batch: peak and end RSS, CPU seconds used and its average CPU %.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.interop import steps
from tests.interop.rig import InteropRig

from _benchutil import percentiles
from pykubeedge.kube.resources import PODS

TIMEOUT_S = 600.0
POLL_S = 0.1
TICK = os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (through /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo and len(out) < 1000:
        p = todo.pop()
        out.append(p)
        task_dir = Path(f"/proc/{p}/task")
        try:
            tasks = list(task_dir.iterdir())
        except OSError:
            continue
        for t in tasks:
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in (t / "children").read_text().split())
    return out


def _usage(pid: int) -> tuple[int, float]:
    """(RSS bytes, CPU seconds) of the process tree of ``pid``."""
    rss, cpu = 0, 0.0
    for p in _tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            cpu += (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            continue
    return rss, cpu


@dataclass
class Sampler:
    pid: int
    peak_rss: int = 0
    last_rss: int = 0
    samples: list[int] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            rss, _ = _usage(self.pid)
            self.peak_rss = max(self.peak_rss, rss)
            self.last_rss = rss
            self.samples.append(rss)
            await asyncio.sleep(0.25)


async def batch(rig: InteropRig, pods: int) -> dict[str, float]:
    assert rig.cloudcore is not None and rig.cloudcore.pid is not None
    kube = steps.kube(rig)
    names = [f"bench-p{i:03d}" for i in range(pods)]
    pid = rig.cloudcore.pid
    sampler = Sampler(pid)
    sampling = asyncio.create_task(sampler.run())
    _, cpu0 = _usage(pid)
    created: dict[str, float] = {}
    running: dict[str, float] = {}
    t_start = time.monotonic()
    for name in names:
        await kube.create(PODS, steps.pod(name, rig.node))
        created[name] = time.monotonic()
    deadline = time.monotonic() + TIMEOUT_S
    while len(running) < pods and time.monotonic() < deadline:
        listed = await kube.list(PODS, namespace=steps.NS, label_selector="interop=yes")
        now = time.monotonic()
        for pod in listed["items"]:
            name = pod["metadata"]["name"]
            if name in created and name not in running and \
                    (pod.get("status") or {}).get("phase") == "Running":
                running[name] = now - created[name]
        await asyncio.sleep(POLL_S)
    t_batch = time.monotonic() - t_start
    _, cpu1 = _usage(pid)
    sampling.cancel()
    for name in names:
        await kube.delete(PODS, name, namespace=steps.NS)
    times = list(running.values())
    stats = percentiles(times)
    return {"running": float(len(times)), "p50": stats.get("p50", float("nan")),
            "p99": stats.get("p99", float("nan")), "max": stats.get("max", float("nan")),
            "batch_s": t_batch, "peak_rss_mb": sampler.peak_rss / 2**20,
            "end_rss_mb": sampler.last_rss / 2**20, "cpu_s": cpu1 - cpu0,
            "cpu_pct": 100.0 * (cpu1 - cpu0) / t_batch if t_batch else 0.0}


async def pairing(cloud: str, edge: str, pods: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="pke-bench-interop-pods-") as d:
        async with InteropRig(cloud=cloud, edge=edge, workdir=Path(d)) as rig:  # type: ignore[arg-type]
            return await batch(rig, pods)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--pairs", default="ours/upstream,upstream/upstream,upstream/ours",
                        help="cloud/edge pairs, comma-separated (ours|upstream)")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    for pair in args.pairs.split(","):
        cloud, edge = pair.split("/")
        results[pair] = await pairing(cloud, edge, args.pods)
        print(f"{pair}: {results[pair]}", flush=True)
    print(f"\n{args.pods} pods, create -> Running; cloudcore's process tree during the batch")
    print(f"{'cloud / edge':22} {'Running':>8} {'p50 s':>7} {'p99 s':>7} {'max s':>7} "
          f"{'batch s':>8} {'peak RSS MB':>12} {'end RSS MB':>11} {'CPU s':>7} {'CPU %':>6}")
    for pair, r in results.items():
        print(f"{pair.replace('/', ' / '):22} {r['running']:8.0f} {r['p50']:7.2f} "
              f"{r['p99']:7.2f} {r['max']:7.2f} {r['batch_s']:8.1f} {r['peak_rss_mb']:12.1f} "
              f"{r['end_rss_mb']:11.1f} {r['cpu_s']:7.1f} {r['cpu_pct']:6.1f}")


if __name__ == "__main__":
    asyncio.run(main())
