"""The main job with real containers: local-up with a private containerd (CRI) runs the demo
and a pod's ConfigMap for real, and cleans everything up."""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from pykubeedge.keadm.localup import LocalUp
from pykubeedge.kube.resources import PODS
from tests.conftest import eventually

pytestmark = pytest.mark.integration


def log_text(root: Path, pod: str) -> str:
    return "\n".join(p.read_text(errors="replace") for p in root.glob(f"default_{pod}_*/*/*.log"))


async def test_local_up_runs_real_containers() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="pke-e2e-"))
    up = LocalUp(tier="minimal", workdir=workdir, runtime="containerd", network="bridge",
                 bridge="pkee2e0", pod_subnet="10.254.78.0/24")
    async with up:
        assert up.kube is not None and up.containerd is not None
        pods = (await up.kube.list(PODS, namespace="default",
                                   label_selector="app=pykubeedge-demo"))["items"]
        assert len(pods) == 2
        for pod in pods:
            status = pod["status"]
            assert status["phase"] == "Running"
            assert status["containerStatuses"][0]["containerID"].startswith("containerd://")
            assert status["podIP"].startswith("10.254.78.")
        manifest = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "reader", "namespace": "default"},
            "spec": {"nodeName": up.node, "restartPolicy": "Never",
                     "containers": [{"name": "c", "image": "busybox:1.35", "command": [
                         "sh", "-c", "cat /etc/demo/greeting; echo; echo done"],
                         "volumeMounts": [{"name": "cfg", "mountPath": "/etc/demo"}]}],
                     "volumes": [{"name": "cfg", "configMap": {"name": "demo-config"}}]},
        }
        await asyncio.to_thread(
            subprocess.run, ["kubectl", "--kubeconfig", str(up.cluster.kubeconfig), "apply",
                             "-f", "-"], input=json.dumps(manifest), text=True, check=True,
            capture_output=True)

        async def succeeded() -> bool:
            assert up.kube is not None
            pod = await up.kube.get(PODS, "reader", namespace="default")
            return (pod.get("status") or {}).get("phase") == "Succeeded"

        await eventually(succeeded, timeout=60, what="the reader pod Succeeded")
        logs = up.edge_dir / "pod-logs"
        assert "hello from the cloud" in log_text(logs, "reader")
        base = up.containerd.base
    # Stopped: no containerd, no shim, no bridge left behind.
    assert not base.exists()
    leftovers = await asyncio.to_thread(subprocess.run, ["pgrep", "-f", str(base)],
                                        capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""
    link = await asyncio.to_thread(subprocess.run, ["ip", "link", "show", "pkee2e0"],
                                   capture_output=True, text=True)
    assert link.returncode != 0
