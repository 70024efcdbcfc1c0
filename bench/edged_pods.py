"""Edged on real containerd: pod start latency and edgecore's footprint.

    python bench/edged_pods.py [--pods 20] [--sample 30] [--no-events]

Prints, with the image already present:
- pod start p50/p99 from ``kubectl create`` to Running in the API server, 20 plain pods;
- the same for 20 pods with an exec readiness probe every second (Running and Ready);
- edgecore's RSS idle (no pods) and with the 20 probed pods running;
- edgecore's CPU (percent of one core) over ``--sample`` seconds with those 20 pods, each
  probed every second.

``--no-events`` turns ``modules.edged.reportEvent`` off (upstream edged's default): Events
share the edge's ``messageQPS`` (30/s) with status patches and ACKs.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from _benchutil import percentiles
from pykubeedge.keadm.localup import LocalUp
from pykubeedge.kube.informer import Informer, InformerEvent
from pykubeedge.kube.resources import PODS

DEADLINE_S = 180.0
SLEEP = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def manifest(node: str, prefix: str, n: int, probed: bool) -> dict[str, Any]:
    items = []
    for i in range(n):
        container: dict[str, Any] = {"name": "c", "image": "busybox:1.35", "command": SLEEP}
        if probed:
            container["readinessProbe"] = {"exec": {"command": ["true"]}, "periodSeconds": 1}
            container["livenessProbe"] = {"exec": {"command": ["true"]}, "periodSeconds": 1}
        items.append({"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": f"{prefix}-{i:03d}", "namespace": "default",
                                   "labels": {"bench": prefix}},
                      "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                               "containers": [container]}})
    return {"apiVersion": "v1", "kind": "List", "items": items}


async def start_batch(up: LocalUp, prefix: str, n: int, probed: bool) -> list[float]:
    """Create ``n`` pods with one ``kubectl create``; per pod, created -> Running (and Ready
    when probed), seconds."""
    assert up.kube is not None
    added: dict[str, float] = {}
    done: dict[str, float] = {}

    async def on_pod(ev: InformerEvent) -> None:
        name = ev.obj["metadata"]["name"]
        now = time.monotonic()
        added.setdefault(name, now)
        status = ev.obj.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in status.get("conditions") or [])
        if status.get("phase") == "Running" and (ready or not probed):
            done.setdefault(name, now)

    informer = Informer(up.kube, PODS, on_pod, namespace="default",
                        label_selector=f"bench={prefix}")
    watch = asyncio.create_task(informer.run())
    await informer.synced.wait()
    t0 = time.monotonic()
    await asyncio.to_thread(
        subprocess.run, ["kubectl", "--kubeconfig", str(up.cluster.kubeconfig), "create", "-f",
                         "-"], input=json.dumps(manifest(up.node, prefix, n, probed)),
        text=True, check=True, capture_output=True)
    while len(done) < n and time.monotonic() - t0 < DEADLINE_S:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    watch.cancel()
    await asyncio.gather(watch, return_exceptions=True)
    return [done[k] - added[k] for k in done if k in added]


async def delete_batch(up: LocalUp, prefix: str) -> None:
    await asyncio.to_thread(
        subprocess.run, ["kubectl", "--kubeconfig", str(up.cluster.kubeconfig), "delete",
                         "pods", "-l", f"bench={prefix}", "--wait=true", "--timeout=120s"],
        check=False, capture_output=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--sample", type=float, default=30.0)
    parser.add_argument("--no-events", action="store_true")
    args = parser.parse_args()
    n = max(1, min(args.pods, 200))
    workdir = Path(tempfile.mkdtemp(prefix="pykubeedge-bench-edged-"))
    async with LocalUp(tier="full", workdir=workdir, demo=False, runtime="containerd",
                       bridge="pkebench1", pod_subnet="10.254.82.0/24") as up:
        if args.no_events:
            cfg = yaml.safe_load(up.edgecore_config.read_text())
            cfg["modules"]["edged"]["reportEvent"] = False
            up.edgecore_config.write_text(yaml.safe_dump(cfg, sort_keys=False))
            await up.stop_edgecore()
            await up.start_edgecore()
            await up.wait_node_ready()
        assert up.edgecore is not None and up.edgecore.pid is not None
        pid = up.edgecore.pid
        await asyncio.sleep(5)
        idle = rss_mb(pid)
        plain = await start_batch(up, "plain", n, probed=False)
        await delete_batch(up, "plain")
        probed = await start_batch(up, "probed", n, probed=True)
        await asyncio.sleep(3)
        loaded = rss_mb(pid)
        before, t0 = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(args.sample)
        cpu = (cpu_seconds(pid) - before) / (time.monotonic() - t0) * 100
        await delete_batch(up, "probed")
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
          f"containerd, image present; events {'off' if args.no_events else 'on'}")
    for label, values in (("plain", plain), ("readiness+liveness probed", probed)):
        q = percentiles(values)
        if q["n"]:
            print(f"{n} pods {label}: created -> Running{' and Ready' if 'probed' in label else ''}"
                  f" p50 {q['p50']:.2f}s  p99 {q['p99']:.2f}s  max {q['max']:.2f}s "
                  f"({q['n']}/{n})")
        else:
            print(f"{n} pods {label}: none reached the goal in {DEADLINE_S:.0f}s")
    print(f"edgecore RSS: idle {idle:.1f} MB, with {n} probed pods {loaded:.1f} MB")
    print(f"edgecore CPU with {n} pods, each probed every second (liveness + readiness): "
          f"{cpu:.1f}% of one core over {args.sample:.0f}s")


if __name__ == "__main__":
    asyncio.run(main())
