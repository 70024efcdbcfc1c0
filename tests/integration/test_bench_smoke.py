"""Smoke test of the fabric benchmark: ``bench/fabric.py --quick`` runs end to end (a cloudcore
process, real TLS on loopback, real EdgeHubs) and prints every labelled figure.

No thresholds on the numbers: benchmarks print their figures, tests never time (DESIGN.md).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LABELS = (
    "machine",
    "idle connect",
    "idle sessions",
    "idle RSS",
    "throughput",
    "throughput detail",
    "ACK latency (bulk)",
    "ACK latency (paced)",
    "throughput (QPS 30)",
    "reconnect",
    "reconnect (edge view)",
    "reconnect detail",
    "done",
)


def test_fabric_bench_quick_prints_its_figures(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fabric.py"), "--quick", "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    labels = {line[:22].rstrip() for line in proc.stdout.splitlines()}
    missing = [label for label in LABELS if label not in labels]
    assert not missing, f"no line for {missing} in:\n{proc.stdout}"
    assert list(tmp_path.iterdir()) == []  # its working directory is gone: it cleaned up
