"""Kubernetes objects as the cloud sends them, for MetaManager and MetaServer tests."""

from __future__ import annotations

from typing import Any


def pod(name: str, namespace: str = "default", *, uid: str | None = None,
        phase: str = "Pending", labels: dict[str, str] | None = None,
        node: str = "edge-1", rv: str = "100") -> dict[str, Any]:
    """A small v1 Pod as the cloud sends it."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": uid or f"uid-{name}",
                     "labels": labels if labels is not None else {"app": name},
                     "resourceVersion": rv, "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "nginx"}]},
        "status": {"phase": phase},
    }


def configmap(name: str, namespace: str = "default", **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                         "resourceVersion": "7"},
            "data": dict(data)}


def node(name: str = "edge-1", ready: str = "True") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": f"uid-{name}",
                         "labels": {"node-role.kubernetes.io/edge": ""}},
            "status": {"conditions": [{"type": "Ready", "status": ready}]}}
