"""Nodes and pods end to end (issue 4): the edge node registers and is Ready, pods created with
kubectl reach it and run, ConfigMaps follow, a cloudcore restart converges the edge to exactly
the API server's state, and an edge cut off from the cloud restarts from SQLite."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import pytest

from pykubeedge.keadm.localup import LocalUp
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.config import KubeConfig
from pykubeedge.kube.resources import CONFIGMAPS, NODES, PODS
from tests.conftest import eventually
from tests.e2e.conftest import edge_rows

pytestmark = pytest.mark.integration


def kubectl(*args: str, server: str | None = None, kubeconfig: str | None = None,
            stdin: str | None = None) -> str:
    target = ["--server", server] if server else ["--kubeconfig", str(kubeconfig)]
    out = subprocess.run(["kubectl", *target, *args], capture_output=True, text=True,
                         input=stdin, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


async def k(local: LocalUp, *args: str, stdin: str | None = None) -> str:
    return await asyncio.to_thread(kubectl, *args, kubeconfig=str(local.cluster.kubeconfig),
                                   stdin=stdin)


def pod_manifest(name: str, node: str, cm: str) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"e2e": "yes"}},
        "spec": {"nodeName": node,
                 "containers": [{"name": "c", "image": "busybox:1.35", "command": ["sleep", "3600"],
                                 "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]}],
                 "volumes": [{"name": "cfg", "configMap": {"name": cm}}]},
    })


async def phase(local: LocalUp, name: str) -> str:
    assert local.kube is not None
    pod = await local.kube.get(PODS, name, namespace="default")
    return str((pod.get("status") or {}).get("phase"))


async def test_edge_node_is_ready_with_roles(local: LocalUp) -> None:
    out = await k(local, "get", "nodes", local.node, "--no-headers")
    name, status, roles = out.split()[:3]
    assert (name, status, roles) == (local.node, "Ready", "agent,edge")
    assert "pykubeedge" in await k(local, "get", "node", local.node, "-o",
                                   "jsonpath={.status.nodeInfo.kubeletVersion}")


async def test_pod_runs_on_the_edge_and_its_configmap_follows(local: LocalUp) -> None:
    await k(local, "create", "configmap", "e2e-cfg", "--from-literal=v=1")
    await k(local, "apply", "-f", "-", stdin=pod_manifest("e2e-web", local.node, "e2e-cfg"))
    await eventually(lambda: phase(local, "e2e-web"), what="pod reported")
    await eventually(lambda: _is(phase(local, "e2e-web"), "Running"), what="pod Running")
    assert "default/pod/e2e-web" in edge_rows(local.edge_db, "pod")
    assert edge_rows(local.edge_db, "configmap")["default/configmap/e2e-cfg"]["data"] == {"v": "1"}

    t0 = time.monotonic()
    await k(local, "patch", "configmap", "e2e-cfg", "-p", '{"data":{"v":"2"}}')
    await eventually(lambda: edge_rows(local.edge_db, "configmap")
                     ["default/configmap/e2e-cfg"]["data"] == {"v": "2"}, interval=0.01,
                     what="configmap update in the edge database")
    print(f"configmap update reached the edge database in {time.monotonic() - t0:.3f}s")

    # The edge's own API serves it too.
    out = await asyncio.to_thread(kubectl, "get", "pods", "-A", server=local.metaserver)
    assert "e2e-web" in out

    await k(local, "delete", "pod", "e2e-web", "--wait=false", "--grace-period=1")
    await eventually(lambda: "default/pod/e2e-web" not in edge_rows(local.edge_db, "pod"),
                     what="pod removed from the edge")
    assert local.kube is not None
    await eventually(lambda: _gone(local, "e2e-web"), what="pod deletion finished by the edge")


async def _is(coro: object, value: str) -> bool:
    return await coro == value  # type: ignore[misc]


async def _gone(local: LocalUp, name: str) -> bool:
    from pykubeedge.core.errors import NotFound

    assert local.kube is not None
    try:
        await local.kube.get(PODS, name, namespace="default")
    except NotFound:
        return True
    return False


async def test_cloudcore_restart_converges_the_edge(local: LocalUp) -> None:
    assert local.kube is not None
    kube = local.kube
    await k(local, "create", "configmap", "conv-cfg", "--from-literal=v=1")
    await k(local, "create", "configmap", "conv-gone", "--from-literal=v=1")
    for name in ("conv-keep", "conv-change"):
        await k(local, "apply", "-f", "-", stdin=pod_manifest(name, local.node, "conv-cfg"))
    await k(local, "apply", "-f", "-", stdin=pod_manifest("conv-remove", local.node, "conv-gone"))
    await eventually(lambda: {f"default/pod/{n}" for n in ("conv-keep", "conv-change",
                                                           "conv-remove")}
                     <= set(edge_rows(local.edge_db, "pod")), what="3 pods on the edge")

    await local.stop_cloudcore(crash=True)
    await kube.patch(PODS, "conv-change", {"metadata": {"labels": {"v": "2"}}},
                     namespace="default")
    await kube.delete(PODS, "conv-remove", namespace="default", grace_period_seconds=0)
    await kube.delete(CONFIGMAPS, "conv-gone", namespace="default")
    await k(local, "apply", "-f", "-", stdin=pod_manifest("conv-new", local.node, "conv-cfg"))
    await kube.patch(CONFIGMAPS, "conv-cfg", {"data": {"v": "2"}}, namespace="default")
    t0 = time.monotonic()
    await local.start_cloudcore()

    async def converged() -> bool:
        api = {p["metadata"]["name"]: p for p in (await kube.list(
            PODS, namespace="default", field_selector=f"spec.nodeName={local.node}"))["items"]}
        edge = {v["metadata"]["name"]: v for v in edge_rows(local.edge_db, "pod").values()}
        if set(api) != set(edge):
            return False
        if edge["conv-change"]["metadata"].get("labels", {}).get("v") != "2":
            return False
        cms = edge_rows(local.edge_db, "configmap")
        cm = cms.get("default/configmap/conv-cfg")
        return cm is not None and cm["data"] == {"v": "2"} and \
            "default/configmap/conv-gone" not in cms

    await eventually(converged, timeout=60, interval=0.05, what="edge == API server")
    print(f"edge converged {time.monotonic() - t0:.2f}s after cloudcore came back")
    await local.wait_node_ready()


async def test_edge_restarts_from_sqlite_while_cut_off(local: LocalUp) -> None:
    assert local.kube is not None
    kube = local.kube
    await k(local, "create", "configmap", "auto-cfg", "--from-literal=v=1")
    manifest = json.loads(pod_manifest("auto-job", local.node, "auto-cfg"))
    manifest["spec"]["restartPolicy"] = "Never"
    # It runs for a while, then fails: that happens while the edge is cut off.
    manifest["spec"]["containers"][0]["command"] = ["sh", "-c", "sleep 12; exit 3"]
    await k(local, "apply", "-f", "-", stdin=json.dumps(manifest))
    await eventually(lambda: _is(phase(local, "auto-job"), "Running"), what="pod Running")
    before = await kube.get(PODS, "auto-job", namespace="default")
    container = before["status"]["containerStatuses"][0]["containerID"]

    await local.stop_cloudcore()  # the cloud is unreachable
    await local.stop_edgecore()  # and edgecore restarts
    await local.start_edgecore()

    def served() -> dict:
        out = kubectl("get", "pod", "auto-job", "-n", "default", "-o", "json",
                      server=local.metaserver)
        return json.loads(out)

    # From SQLite: the MetaServer serves the pod, and Edged adopted the running container.
    pod = await asyncio.to_thread(served)
    assert pod["metadata"]["uid"] == before["metadata"]["uid"]
    assert (await kube.get(PODS, "auto-job", namespace="default"))["status"]["phase"] == "Running"

    async def failed_offline() -> bool:
        status = (await asyncio.to_thread(served)).get("status") or {}
        return status.get("phase") == "Failed"

    await eventually(failed_offline, timeout=60, what="the pod's failure seen at the edge")
    status = (await asyncio.to_thread(served))["status"]["containerStatuses"][0]
    assert status["containerID"] == container  # adopted, not recreated
    assert status["state"]["terminated"]["exitCode"] == 3
    # A Kubernetes client library works against the edge's MetaServer too (offline).
    async with KubeClient(KubeConfig(server=local.metaserver)) as edge_api:
        names = {p["metadata"]["name"] for p in (await edge_api.list(PODS))["items"]}
        assert "auto-job" in names

    await local.start_cloudcore()

    async def status_delivered() -> bool:
        pod = await kube.get(PODS, "auto-job", namespace="default")
        return (pod.get("status") or {}).get("phase") == "Failed"

    await eventually(status_delivered, timeout=60, what="offline status in the API server")
    after = await kube.get(PODS, "auto-job", namespace="default")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]  # never deleted/recreated
    terminated = after["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3
    await local.wait_node_ready()


async def test_node_goes_not_ready_when_cut_off_and_ready_again(local: LocalUp) -> None:
    assert local.kube is not None
    kube = local.kube
    pods_before = {p["metadata"]["uid"] for p in (await kube.list(
        PODS, field_selector=f"spec.nodeName={local.node}"))["items"]}

    async def ready_status() -> str:
        node = await kube.get(NODES, local.node)
        return next(c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready")

    await local.stop_cloudcore()
    t0 = time.monotonic()
    await eventually(lambda: _is_not(ready_status(), "True"), timeout=90, interval=0.5,
                     what="node marked not ready by the node lifecycle controller")
    print(f"node not ready {time.monotonic() - t0:.1f}s after the cut")
    await local.start_cloudcore()
    t0 = time.monotonic()
    await local.wait_node_ready(timeout=60)
    print(f"node Ready again {time.monotonic() - t0:.1f}s after cloudcore came back")
    pods_after = {p["metadata"]["uid"] for p in (await kube.list(
        PODS, field_selector=f"spec.nodeName={local.node}"))["items"]}
    assert pods_before <= pods_after  # nothing evicted or recreated by a short outage


async def _is_not(coro: object, value: str) -> bool:
    return await coro != value  # type: ignore[misc]


async def test_an_edge_with_a_wiped_database_gets_everything_back(local: LocalUp) -> None:
    """Upstream only resends what changed since the last ACK: a reinstalled edge would never
    see its unchanged pods again. Here a (re)registering node is sent everything it needs."""
    assert local.kube is not None
    await k(local, "create", "configmap", "wipe-cfg", "--from-literal=v=1")
    await k(local, "apply", "-f", "-", stdin=pod_manifest("wipe-web", local.node, "wipe-cfg"))
    await eventually(lambda: "default/pod/wipe-web" in edge_rows(local.edge_db, "pod"),
                     what="pod on the edge")
    await local.stop_edgecore()
    for suffix in ("", "-wal", "-shm"):
        local.edge_db.with_name(local.edge_db.name + suffix).unlink(missing_ok=True)
    await local.start_edgecore()
    await eventually(lambda: "default/pod/wipe-web" in edge_rows(local.edge_db, "pod")
                     and "default/configmap/wipe-cfg" in edge_rows(local.edge_db, "configmap"),
                     timeout=60, what="pod and configmap back in the new database")
    await eventually(lambda: _is(phase(local, "wipe-web"), "Running"), what="still Running")
