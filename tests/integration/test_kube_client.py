"""pykubeedge.kube against a real kube-apiserver + etcd."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from pykubeedge.core import errors
from pykubeedge.devcluster.cluster import DevCluster
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.resources import CONFIGMAPS, NODES, PODS

pytestmark = pytest.mark.integration


def kubectl(cluster: DevCluster, *args: str) -> str:
    out = subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), *args],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def node_manifest(name: str) -> dict:
    return {"metadata": {"name": name, "labels": {"node-role.kubernetes.io/edge": ""}},
            "status": {"capacity": {"cpu": "2", "memory": "2Gi", "pods": "110"}}}


async def test_node_and_pod_roundtrip_through_kubectl(cluster: DevCluster, kube: KubeClient,
                                                      ns: str) -> None:
    node = f"edge-{ns}"
    await kube.create(NODES, node_manifest(node))
    pod = await kube.create(PODS, {
        "metadata": {"name": "nginx", "namespace": ns},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
    })
    assert pod["spec"]["nodeName"] == node

    got = json.loads(await asyncio.to_thread(kubectl, cluster, "get", "pod", "nginx", "-n", ns,
                                             "-o", "json"))
    assert got["metadata"]["uid"] == pod["metadata"]["uid"]
    assert got["spec"]["nodeName"] == node
    got_node = json.loads(await asyncio.to_thread(kubectl, cluster, "get", "node", node,
                                                  "-o", "json"))
    assert "node-role.kubernetes.io/edge" in got_node["metadata"]["labels"]


async def test_patch_kinds_and_status_subresource(kube: KubeClient, ns: str) -> None:
    node = f"edge-{ns}"
    await kube.create(NODES, node_manifest(node))
    await kube.patch(NODES, node, {"metadata": {"labels": {"disktype": "test"}}})
    await kube.patch(NODES, node, [{"op": "add", "path": "/metadata/annotations",
                                    "value": {"cloudcore": "127.0.0.1"}}], patch_type="json")
    ready = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok"}
    patched = await kube.patch_status(NODES, node, {"status": {"conditions": [ready]}})
    assert patched["status"]["conditions"][0]["status"] == "True"
    # The status subresource cannot change the spec.
    patched = await kube.patch_status(NODES, node, {"spec": {"unschedulable": True},
                                                    "status": {"conditions": [ready]}})
    assert not patched["spec"].get("unschedulable")
    got = await kube.get(NODES, node)
    assert got["metadata"]["labels"]["disktype"] == "test"
    assert got["metadata"]["annotations"] == {"cloudcore": "127.0.0.1"}


async def test_typed_errors(kube: KubeClient, ns: str) -> None:
    with pytest.raises(errors.NotFound):
        await kube.get(CONFIGMAPS, "missing", namespace=ns)
    cm = await kube.create(CONFIGMAPS, {"metadata": {"name": "a", "namespace": ns},
                                        "data": {"k": "1"}})
    with pytest.raises(errors.Conflict):
        await kube.create(CONFIGMAPS, {"metadata": {"name": "a", "namespace": ns}})
    stale = {**cm, "data": {"k": "2"}}
    await kube.replace(CONFIGMAPS, stale)
    with pytest.raises(errors.Conflict):  # same resourceVersion again: stale now
        await kube.replace(CONFIGMAPS, {**cm, "data": {"k": "3"}})
    with pytest.raises(errors.Invalid):
        await kube.create(CONFIGMAPS, {"metadata": {"name": "Not_Valid", "namespace": ns}})
    with pytest.raises(errors.Conflict):  # uid precondition: only that incarnation
        await kube.delete(CONFIGMAPS, "a", namespace=ns, uid="00000000-0000-0000-0000-000000000000")
    await kube.delete(CONFIGMAPS, "a", namespace=ns, uid=cm["metadata"]["uid"])


async def test_list_pages_and_selectors(kube: KubeClient, ns: str) -> None:
    for i in range(7):
        await kube.create(CONFIGMAPS, {"metadata": {"name": f"cm-{i}", "namespace": ns,
                                                    "labels": {"even": str(i % 2 == 0)}}})
    page = await kube.list(CONFIGMAPS, namespace=ns, page_size=2)
    names = sorted(o["metadata"]["name"] for o in page["items"]
                   if o["metadata"]["name"].startswith("cm-"))
    assert names == [f"cm-{i}" for i in range(7)]
    assert page["metadata"]["resourceVersion"]
    even = await kube.list(CONFIGMAPS, namespace=ns, label_selector="even=True")
    assert len(even["items"]) == 4


async def test_unauthorized_token_is_typed(cluster: DevCluster) -> None:
    from dataclasses import replace

    from pykubeedge.kube.config import load_kubeconfig

    bad = replace(load_kubeconfig(cluster.kubeconfig), token="not-a-token")
    async with KubeClient(bad) as kube:
        with pytest.raises(errors.Unauthorized):
            await kube.list(NODES)


async def test_unreachable_server_is_a_connection_error(cluster: DevCluster) -> None:
    from pykubeedge.devcluster.cluster import free_port
    from pykubeedge.kube.config import KubeConfig

    async with KubeClient(KubeConfig(server=f"https://127.0.0.1:{free_port()}"),
                          timeout=5) as kube:
        with pytest.raises(errors.KubeConnectionError, match="cannot reach"):
            await kube.list(NODES)
