"""Pods end to end through real processes (control plane, cloudcore, edgecore): how fast 100
pods created with ``kubectl create`` are Running in the API server, and how fast the edge
converges after a cloudcore restart with 100 pods changed.

    python bench/pods_e2e.py [--pods 100] [--runtime containerd|fake] [--qps 30 --burst 60]

``--runtime containerd`` (default) runs real containers in a private containerd; ``fake`` runs
them in memory. ``--qps/--burst`` are the edge's ``messageQPS``/``messageBurst`` (KubeEdge's
defaults 30/60): every status patch and every ACK the edge sends counts against them.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _benchutil import percentiles
from pykubeedge.keadm.localup import LocalUp
from pykubeedge.kube.informer import Informer, InformerEvent
from pykubeedge.kube.resources import PODS

DEADLINE_S = 300.0


def edge_pods(db: Path) -> dict[str, dict]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute("SELECT key, value FROM meta WHERE type='pod'").fetchall()
    finally:
        conn.close()
    return {k: json.loads(v) for k, v in rows}


def set_edge_rate(up: LocalUp, qps: float, burst: int) -> None:
    cfg = yaml.safe_load(up.edgecore_config.read_text())
    cfg["modules"]["edgeHub"]["messageQPS"] = qps
    cfg["modules"]["edgeHub"]["messageBurst"] = burst
    up.edgecore_config.write_text(yaml.safe_dump(cfg, sort_keys=False))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--qps", type=float, default=30)
    parser.add_argument("--burst", type=int, default=60)
    parser.add_argument("--runtime", choices=("containerd", "fake"), default="containerd")
    args = parser.parse_args()
    n = max(1, min(args.pods, 1000))
    workdir = Path(tempfile.mkdtemp(prefix="pykubeedge-bench-"))
    async with LocalUp(tier="minimal", workdir=workdir, demo=False, runtime=args.runtime,
                       bridge="pkebench0", pod_subnet="10.254.80.0/22") as up:
        assert up.kube is not None
        kube = up.kube
        set_edge_rate(up, args.qps, args.burst)
        await up.stop_edgecore()
        await up.start_edgecore()
        await up.wait_node_ready()

        added: dict[str, float] = {}
        running: dict[str, float] = {}

        async def on_pod(ev: InformerEvent) -> None:
            name = ev.obj["metadata"]["name"]
            now = time.time()  # wall clock: compared with edgecore's log lines
            added.setdefault(name, now)
            if (ev.obj.get("status") or {}).get("phase") == "Running":
                running.setdefault(name, now)

        informer = Informer(kube, PODS, on_pod, namespace="default",
                            label_selector="bench=pods")
        watch = asyncio.create_task(informer.run())
        await informer.synced.wait()
        pods = {"apiVersion": "v1", "kind": "List", "items": [{
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"bench-{i:04d}", "namespace": "default",
                         "labels": {"bench": "pods"}},
            "spec": {"nodeName": up.node, "containers": [{"name": "c", "image": "busybox:1.35"}]},
        } for i in range(n)]}
        t0 = time.monotonic()
        await asyncio.to_thread(
            subprocess.run, ["kubectl", "--kubeconfig", str(up.cluster.kubeconfig), "create",
                             "-f", "-"], input=json.dumps(pods), text=True, check=True,
            capture_output=True)
        created = time.monotonic() - t0
        while len(running) < n and time.monotonic() - t0 < DEADLINE_S:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        total = time.monotonic() - t0
        lat = [running[k] - added[k] for k in running if k in added]
        print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
              f"edge messageQPS {args.qps}, messageBurst {args.burst}; runtime {args.runtime}")
        print(f"{n} pods: kubectl create took {created:.2f}s; all Running in the API server "
              f"{total:.2f}s after it started ({len(running)}/{n} Running)")
        if lat:
            q = percentiles(lat)
            print(f"per pod, created -> Running: p50 {q['p50']:.2f}s  p99 {q['p99']:.2f}s  "
                  f"max {q['max']:.2f}s")
            started = edge_started(up.workdir / "edgecore.log")
            down = [started[k] - added[k] for k in running if k in started and k in added]
            up_ = [running[k] - started[k] for k in running if k in started]
            if down and up_:
                d, u = percentiles(down), percentiles(up_)
                print(f"  where: created -> container started on the edge p50 {d['p50']:.2f}s"
                      f" p99 {d['p99']:.2f}s; started -> Running in the API server p50 "
                      f"{u['p50']:.2f}s p99 {u['p99']:.2f}s (edgecore's log lines)")

        # Convergence: cloudcore down, 100 pods changed, cloudcore back.
        await up.stop_cloudcore()
        for i in range(n):
            await kube.patch(PODS, f"bench-{i:04d}", {"metadata": {"labels": {"gen": "2"}}},
                             namespace="default")
        t0 = time.monotonic()
        await up.start_cloudcore()
        started = time.monotonic() - t0
        while time.monotonic() - t0 < DEADLINE_S:
            pods_now = edge_pods(up.edge_db)
            done = sum(1 for v in pods_now.values()
                       if (v["metadata"].get("labels") or {}).get("gen") == "2")
            if done >= n:
                break
            await asyncio.sleep(0.02)
        print(f"convergence after a cloudcore restart with {n} pods changed: "
              f"{time.monotonic() - t0:.2f}s from starting cloudcore "
              f"(of which cloudcore start-up {started:.2f}s)")
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)


def edge_started(log: Path) -> dict[str, float]:
    """Pod name -> when edgecore logged its first container start (wall clock)."""
    found: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        if ": started container " not in line or "PodWorker(default/" not in line:
            continue
        name = line.split("PodWorker(default/", 1)[1].split(" ", 1)[0]
        stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
        found.setdefault(name, stamp.timestamp())
    return found


if __name__ == "__main__":
    asyncio.run(main())
