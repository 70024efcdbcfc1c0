"""Idle memory of the two daemons: the control plane, cloudcore and one edgecore (Edged's
in-memory runtime, no workload) started by ``keadm local-up``'s machinery; after the edge node
is Ready and everything has sat idle, the VmRSS of each process is printed.

    python bench/idle_rss.py                 # 10 s idle, 3 samples 1 s apart
    python bench/idle_rss.py --idle 30

It asserts nothing; it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from _benchutil import percentiles
from pykubeedge.keadm.localup import LocalUp


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle", type=float, default=10.0, help="seconds idle before sampling")
    parser.add_argument("--samples", type=int, default=3)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pykubeedge-bench-rss-"))
    t0 = time.monotonic()
    async with LocalUp(tier="minimal", workdir=workdir, demo=False, runtime="fake") as up:
        started = time.monotonic() - t0
        await asyncio.sleep(max(0.0, args.idle))
        figures: dict[str, list[float]] = {"cloudcore": [], "edgecore": []}
        for i in range(max(1, args.samples)):
            for name, proc in (("cloudcore", up.cloudcore), ("edgecore", up.edgecore)):
                assert proc is not None and proc.pid is not None
                figures[name].append(rss_kib(proc.pid) / 1024)
            if i + 1 < args.samples:
                await asyncio.sleep(1.0)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
          f"up in {started:.1f}s (control plane tier minimal, edge runtime fake, no pods); "
          f"idle {args.idle:g}s")
    for name, values in figures.items():
        q = percentiles(values)
        print(f"{name:<10} idle VmRSS median {q['p50']:.1f} MiB (min {q['min']:.1f}, "
              f"max {q['max']:.1f}; {q['n']} samples)")


if __name__ == "__main__":
    asyncio.run(main())
