"""The full tier: the real kube-scheduler binds a Deployment's pod to a matching edge node."""

from __future__ import annotations

import pytest

from pykubeedge.devcluster.cluster import DevCluster
from pykubeedge.kube.resources import DEPLOYMENTS, NAMESPACES, NODES, PODS
from tests.conftest import eventually

pytestmark = [pytest.mark.integration, pytest.mark.full]


def ready_node(name: str, labels: dict[str, str]) -> dict:
    return {
        "metadata": {"name": name, "labels": labels},
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "fake node for the scheduler test"}],
        },
    }


async def test_deployment_with_node_selector_is_scheduled(full_cluster: DevCluster) -> None:
    async with full_cluster.client() as kube:
        await kube.create(NAMESPACES, {"metadata": {"name": "sched"}})
        await kube.create(NODES, ready_node("edge-node", {"node-role.kubernetes.io/edge": "",
                                                           "disktype": "test"}))
        await kube.create(NODES, ready_node("other-node", {}))
        await kube.create(DEPLOYMENTS, {
            "metadata": {"name": "web", "namespace": "sched"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"nodeSelector": {"disktype": "test"},
                             "containers": [{"name": "web", "image": "busybox"}]},
                },
            },
        })

        async def bound() -> bool:
            pods = (await kube.list(PODS, namespace="sched", label_selector="app=web"))["items"]
            return any(p["spec"].get("nodeName") for p in pods)

        # Deployment controller -> ReplicaSet controller -> pod -> scheduler -> binding.
        await eventually(bound, timeout=90, interval=0.2, what="pod bound by the scheduler")
        pods = (await kube.list(PODS, namespace="sched", label_selector="app=web"))["items"]
        assert [p["spec"]["nodeName"] for p in pods if p["spec"].get("nodeName")] == ["edge-node"]
