"""kubectl logs and exec on an edge pod through the API server, CloudStream, the tunnel,
EdgeStream and Edged's kubelet server (real processes, real containerd), and what an open
stream costs:

    python bench/streams.py [--log-mb 100] [--execs 100] [--streams 200]

- ``kubectl logs`` of a container that logged ``--log-mb`` MB (1 KiB lines): MB/s of log
  text, median of 3; the same read straight from Edged's kubelet server (no tunnel) and from
  CloudStream (no API server) say where the time goes;
- ``kubectl exec <pod> -- echo`` ``--execs`` times one after another: round trip p50/p99
  (kubectl's own start-up included: that is what a user waits for);
- ``--streams`` followed logs held open at once through the API server: cloudcore's and
  edgecore's RSS growth per stream.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from _benchutil import percentiles, raise_nofile
from pykubeedge.devcluster.kubeletaccess import KUBELET_CLIENT
from pykubeedge.keadm.localup import LocalUp
from pykubeedge.kube.resources import PODS

MB = 1024 * 1024


def rss_kb(pid: int | None) -> int:
    assert pid is not None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pod(name: str, node: str, script: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "restartPolicy": "Never",
                     "containers": [{"name": "c", "image": "busybox:1.35",
                                     "command": ["sh", "-c", script]}]}}


async def wait_running(up: LocalUp, name: str, timeout: float = 120) -> dict[str, Any]:
    assert up.kube is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = await up.kube.get(PODS, name, namespace="default")
        if (obj.get("status") or {}).get("phase") == "Running":
            return obj
        await asyncio.sleep(0.2)
    raise SystemExit(f"pod {name} not Running in {timeout:.0f}s")


def log_file(up: LocalUp, obj: dict[str, Any]) -> Path:
    meta = obj["metadata"]
    return up.edge_dir / "pod-logs" / f"default_{meta['name']}_{meta['uid']}" / "c" / "0.log"


async def wait_logged(path: Path, lines: int, timeout: float = 600) -> None:
    """Until the log file holds ``lines`` lines (containerd writes them as they come)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = await asyncio.to_thread(
            lambda: path.read_bytes().count(b"\n") if path.exists() else 0)
        if count >= lines:
            return
        await asyncio.sleep(1)
    raise SystemExit(f"{path} did not reach {lines} lines in {timeout:.0f}s")


def kubectl_bytes(up: LocalUp, *args: str) -> tuple[int, float]:
    """Bytes kubectl printed and the seconds it took."""
    t0 = time.monotonic()
    proc = subprocess.Popen(["kubectl", "--kubeconfig", str(up.cluster.kubeconfig), *args],
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None
    total = 0
    while chunk := proc.stdout.read(1 << 20):
        total += len(chunk)
    proc.wait()
    return total, time.monotonic() - t0


async def http_bytes(url: str, ssl_ctx: ssl.SSLContext | None = None,
                     headers: dict[str, str] | None = None) -> tuple[int, float]:
    t0 = time.monotonic()
    total = 0
    async with aiohttp.ClientSession() as http, http.get(url, ssl=ssl_ctx or False,
                                                         headers=headers) as resp:
        assert resp.status == 200, resp.status
        async for chunk in resp.content.iter_chunked(1 << 20):
            total += len(chunk)
    return total, time.monotonic() - t0


def kubelet_client(up: LocalUp) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.load_cert_chain(up.cluster.pki_file(f"{KUBELET_CLIENT}.crt"),
                        up.cluster.pki_file(f"{KUBELET_CLIENT}.key"))
    return ctx


async def throughput(up: LocalUp, mb: int) -> None:
    assert up.kube is not None
    lines = mb * 1024
    # fold leaves the last line without its newline: echo ends it (containerd holds an
    # unterminated line back)
    script = (f"head -c {lines * 1023} /dev/zero | tr '\\0' x | fold -w 1023; echo; "
              "sleep 3600")
    await up.kube.create(PODS, pod("biglog", up.node, script), namespace="default")
    obj = await wait_running(up, "biglog")
    t0 = time.monotonic()
    await wait_logged(log_file(up, obj), lines)
    print(f"log written: {mb} MB of 1 KiB lines by containerd in "
          f"{time.monotonic() - t0:.1f}s")
    text = lines * 1024 / MB
    runs = [await asyncio.to_thread(kubectl_bytes, up, "logs", "biglog") for _ in range(3)]
    assert all(n >= lines * 1024 for n, _ in runs), [n for n, _ in runs]
    best = statistics.median(text / s for _, s in runs)
    print(f"kubectl logs ({mb} MB): median {best:.1f} MB/s "
          f"({', '.join(f'{s:.2f}s' for _, s in runs)})")
    path = "/containerLogs/default/biglog/c"
    local = [await http_bytes(f"http://127.0.0.1:{up.kubelet_port}{path}") for _ in range(3)]
    print(f"  Edged's kubelet server alone: median "
          f"{statistics.median(text / s for _, s in local):.1f} MB/s")
    cloud = [await http_bytes(f"https://{up.node_ip}:{up.stream_port}{path}",
                              kubelet_client(up)) for _ in range(3)]
    print(f"  CloudStream + tunnel, no API server: median "
          f"{statistics.median(text / s for _, s in cloud):.1f} MB/s")
    await up.kube.delete(PODS, "biglog", namespace="default")


async def exec_latency(up: LocalUp, n: int) -> None:
    assert up.kube is not None
    await up.kube.create(PODS, pod("sleeper", up.node, "sleep 3600"), namespace="default")
    await wait_running(up, "sleeper")
    argv = ["kubectl", "--kubeconfig", str(up.cluster.kubeconfig), "exec", "sleeper", "--",
            "echo", "hi"]
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        out = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True,
                                      timeout=60)
        times.append(time.monotonic() - t0)
        assert out.stdout == "hi\n", out.stderr
    q = percentiles(times)
    version = (await asyncio.to_thread(
        subprocess.run, ["kubectl", "version", "--client"], capture_output=True,
        text=True)).stdout.partition("\n")[0]
    t0 = time.monotonic()
    await asyncio.to_thread(subprocess.run, ["kubectl", "version", "--client"],
                            capture_output=True)
    startup = time.monotonic() - t0
    print(f"kubectl exec -- echo, {n} times: p50 {q['p50'] * 1000:.0f} ms, p99 "
          f"{q['p99'] * 1000:.0f} ms, max {q['max'] * 1000:.0f} ms (kubectl's start-up alone: "
          f"{startup * 1000:.0f} ms; {version})")


async def stream_memory(up: LocalUp, n: int) -> None:
    assert up.kube is not None
    await up.kube.create(PODS, pod("ticker", up.node, "while true; do echo tick; sleep 1; done"),
                         namespace="default")
    await wait_running(up, "ticker")
    await asyncio.sleep(2)
    cloud0, edge0 = rss_kb(up.cloudcore.pid), rss_kb(up.edgecore.pid)  # type: ignore[union-attr]
    token = up.cluster.token
    url = (f"{up.cluster.server}/api/v1/namespaces/default/pods/ticker/log?follow=true"
           "&tailLines=1")
    ca = ssl.create_default_context(cafile=str(up.cluster.pki_file("ca.crt")))
    connector = aiohttp.TCPConnector(limit=0, ssl=ca)
    async with aiohttp.ClientSession(connector=connector, headers={
            "Authorization": f"Bearer {token}"}) as http:
        responses = []
        for _ in range(n):
            resp = await http.get(url, timeout=aiohttp.ClientTimeout(total=None))
            assert resp.status == 200, resp.status
            responses.append(resp)
        await asyncio.gather(*(r.content.readline() for r in responses))
        await asyncio.sleep(3)
        cloud1, edge1 = rss_kb(up.cloudcore.pid), rss_kb(up.edgecore.pid)  # type: ignore[union-attr]
        for r in responses:
            r.close()
    print(f"{n} followed logs open at once: cloudcore RSS +{(cloud1 - cloud0) / n:.1f} KB per "
          f"stream ({cloud0 // 1024} -> {cloud1 // 1024} MB), edgecore +"
          f"{(edge1 - edge0) / n:.1f} KB per stream ({edge0 // 1024} -> {edge1 // 1024} MB)")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log-mb", type=int, default=100)
    parser.add_argument("--execs", type=int, default=100)
    parser.add_argument("--streams", type=int, default=200)
    args = parser.parse_args()
    raise_nofile()
    workdir = Path(tempfile.mkdtemp(prefix="pykubeedge-bench-streams-"))
    async with LocalUp(tier="minimal", workdir=workdir, demo=False, runtime="containerd",
                       bridge="pkebench2", pod_subnet="10.254.86.0/24") as up:
        print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; edge node "
              f"{up.node} at {up.node_ip}, CloudStream :{up.stream_port}")
        if args.log_mb:
            await throughput(up, max(1, min(args.log_mb, 1024)))
        if args.execs:
            await exec_latency(up, max(1, min(args.execs, 1000)))
        if args.streams:
            await stream_memory(up, max(1, min(args.streams, 500)))
    print("done")


if __name__ == "__main__":
    asyncio.run(main())
