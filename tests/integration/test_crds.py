"""pykubeedge's CRDs in the real API server: upstream-style samples are accepted, invalid
objects are rejected by the OpenAPI schema."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
import yaml

from pykubeedge.devcluster.cluster import DevCluster
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.resources import CRDS, DEVICEMODELS, DEVICES

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).parents[2] / "deploy" / "samples"


def kubectl_apply(cluster: DevCluster, ns: str, sample: str) -> subprocess.CompletedProcess[str]:
    """``kubectl apply`` a sample into the test's own namespace (samples name ``default``)."""
    doc = yaml.safe_load((SAMPLES / sample).read_text())
    doc["metadata"].pop("namespace", None)
    return subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), "apply", "-n", ns,
                           "-f", "-"], input=yaml.safe_dump(doc), capture_output=True, text=True,
                          timeout=60)


async def test_crds_are_established(kube: KubeClient) -> None:
    names = {c["metadata"]["name"] for c in (await kube.list(CRDS))["items"]}
    assert {"devices.devices.kubeedge.io", "devicemodels.devices.kubeedge.io",
            "objectsyncs.reliablesyncs.kubeedge.io", "clusterobjectsyncs.reliablesyncs.kubeedge.io",
            "rules.rules.kubeedge.io", "ruleendpoints.rules.kubeedge.io"} <= names


async def test_sample_device_and_model_are_accepted(cluster: DevCluster, kube: KubeClient,
                                                    ns: str) -> None:
    for sample in ("device-model.yaml", "device.yaml"):
        out = await asyncio.to_thread(kubectl_apply, cluster, ns, sample)
        assert out.returncode == 0, out.stderr
    devices = (await kube.list(DEVICES, namespace=ns))["items"]
    models = (await kube.list(DEVICEMODELS, namespace=ns))["items"]
    assert len(devices) == 1 and len(models) == 1
    assert devices[0]["spec"]["deviceModelRef"]["name"] == models[0]["metadata"]["name"]


async def test_device_without_model_ref_is_rejected(cluster: DevCluster, ns: str) -> None:
    out = await asyncio.to_thread(kubectl_apply, cluster, ns, "invalid-device-no-model-ref.yaml")
    assert out.returncode != 0
    assert "deviceModelRef" in out.stderr and "Required value" in out.stderr
