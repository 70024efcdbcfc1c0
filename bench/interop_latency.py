"""Issue 8's table: how fast pod and ConfigMap changes travel between an edge and a cloudcore,
for each pairing of ours and upstream KubeEdge v1.23.1 (tests/interop's rig).

    flock /tmp/pykubeedge-suite.lock python bench/interop_latency.py [--runs 3]
        [--pairs upstream/ours,upstream/upstream]     # cloud/edge

Per pairing and step it prints the median and the worst of ``--runs`` tries:
- a pod with a ConfigMap volume, from create to Running in the API server;
- ``kubectl delete pod`` (it returns when the pod is gone from the API server);
- a ConfigMap update, from the patch to the new data in the edge's SQLite database.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import eventually
from tests.interop import steps
from tests.interop.rig import InteropRig

from pykubeedge.kube.resources import CONFIGMAPS, PODS

STEPS = ("pod with a ConfigMap to Running", "kubectl delete pod", "ConfigMap update to the edge")
TIMEOUT_S = 180.0


async def one_run(rig: InteropRig, i: int) -> dict[str, float]:
    kube = steps.kube(rig)
    cm, name = f"bench-cfg-{i}", f"bench-web-{i}"
    await steps.create_configmap(rig, cm, {"v": "1"})
    t0 = time.monotonic()
    await kube.create(PODS, steps.pod(name, rig.node, configmap=cm))
    await eventually(lambda: steps.is_(steps.phase(rig, name), "Running"),
                           timeout=TIMEOUT_S, what="Running")
    running = time.monotonic() - t0

    t0 = time.monotonic()
    await kube.patch(CONFIGMAPS, cm, {"data": {"v": "2"}}, namespace=steps.NS)
    await eventually(lambda: (steps.edge_row(rig, "configmap", cm) or {}).get("data")
                           == {"v": "2"}, timeout=TIMEOUT_S, what="ConfigMap at the edge")
    cm_update = time.monotonic() - t0

    t0 = time.monotonic()
    await asyncio.to_thread(subprocess.run, [
        "kubectl", "--kubeconfig", str(rig.cluster.kubeconfig), "delete", "pod", name,
        f"--timeout={TIMEOUT_S:.0f}s"], check=True, capture_output=True)
    deleted = time.monotonic() - t0
    return dict(zip(STEPS, (running, deleted, cm_update), strict=True))


async def pairing(cloud: str, edge: str, runs: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {s: [] for s in STEPS}
    with tempfile.TemporaryDirectory(prefix="pke-bench-interop-") as d:
        async with InteropRig(cloud=cloud, edge=edge, workdir=Path(d)) as rig:  # type: ignore[arg-type]
            for i in range(runs):
                for step, took in (await one_run(rig, i)).items():
                    figures[step].append(took)
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pairs", default="upstream/ours,upstream/upstream",
                        help="cloud/edge pairs, comma-separated (ours|upstream)")
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {}
    for pair in args.pairs.split(","):
        cloud, edge = pair.split("/")
        results[pair] = await pairing(cloud, edge, args.runs)
    print(f"\n{'step':34} " + " ".join(f"{'cloud ' + p.replace('/', ', edge '):>34}"
                                        for p in results))
    for step in STEPS:
        cells = []
        for figures in results.values():
            xs = figures[step]
            cells.append(f"{statistics.median(xs):8.2f}s med {max(xs):8.2f}s max")
        print(f"{step:34} " + " ".join(f"{c:>34}" for c in cells))
    print(f"({args.runs} runs each)")


if __name__ == "__main__":
    asyncio.run(main())
