"""The control plane's processes die with the process that started them, even on SIGKILL
(no orphans after a killed test run); missing binaries give a one-line error."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pykubeedge.core.errors import ControlPlaneError
from pykubeedge.devcluster.binaries import ensure_binaries
from tests.conftest import eventually

pytestmark = pytest.mark.integration

STARTER = textwrap.dedent("""
    import asyncio, sys
    from pykubeedge.devcluster.cluster import DevCluster

    async def main():
        cluster = DevCluster(tier="minimal", install_crds=False)
        await cluster.start()
        print(" ".join(str(p.pid) for p in cluster.procs.values()), flush=True)
        await asyncio.sleep(600)

    asyncio.run(main())
""")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


async def test_sigkill_of_the_parent_leaves_no_orphans() -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", STARTER,
                                                stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 120)
    pids = [int(p) for p in line.split()]
    assert len(pids) == 2 and all(alive(p) for p in pids)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    await eventually(lambda: not any(alive(p) for p in pids), timeout=30,
                     what="etcd and kube-apiserver gone after their parent was killed")


def test_a_user_bin_dir_without_binaries_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ControlPlaneError, match="lacks executable etcd, kube-apiserver"):
        ensure_binaries("minimal", bin_dir=tmp_path)
