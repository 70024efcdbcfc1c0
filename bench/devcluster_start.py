"""How long the local control plane takes to become ready once its binaries are cached.

    python bench/devcluster_start.py [--runs 5] [--tier minimal|full]

Prints the median and worst time from start to /readyz (and to CRDs Established) per tier.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from pykubeedge.devcluster.binaries import ensure_binaries
from pykubeedge.devcluster.cluster import DevCluster


async def one(tier: str) -> tuple[float, float]:
    cluster = DevCluster(tier=tier, install_crds=False)  # type: ignore[arg-type]
    t0 = time.monotonic()
    try:
        await cluster.start()
        ready = time.monotonic() - t0
        from pykubeedge.devcluster.manifests import install_crds

        async with cluster.client() as kube:
            await install_crds(kube)
        return ready, time.monotonic() - t0
    finally:
        await cluster.stop()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tier", choices=("minimal", "full"), default="minimal")
    args = parser.parse_args()
    t0 = time.monotonic()
    ensure_binaries(args.tier)
    print(f"binaries (cached): {time.monotonic() - t0:.2f}s")
    ready, crds = [], []
    for _ in range(max(1, min(args.runs, 50))):
        r, c = await one(args.tier)
        ready.append(r)
        crds.append(c)
    print(f"tier {args.tier}, {len(ready)} runs")
    print(f"  start -> /readyz:          median {statistics.median(ready):.2f}s  "
          f"max {max(ready):.2f}s")
    print(f"  start -> CRDs Established: median {statistics.median(crds):.2f}s  "
          f"max {max(crds):.2f}s")


if __name__ == "__main__":
    asyncio.run(main())
