"""Server-side Tables: the columns and cells ``kubectl get`` prints."""

from __future__ import annotations

import datetime as dt

import pytest

from pykubeedge.edge.metamanager.metaserver.tables import human_duration, to_table
from pykubeedge.edge.metamanager.resources import BY_PLURAL
from tests.unit.edge.metamanager.objects import configmap, node, pod

NOW = dt.datetime(2024, 1, 1, 0, 10, tzinfo=dt.UTC)  # 10 minutes after the objects' creation


@pytest.mark.parametrize(("seconds", "text"), [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (119, "119s"), (120, "2m"), (150, "2m30s"),
    (600, "10m"), (3 * 3600, "3h"), (3 * 3600 + 60, "3h1m"), (10 * 3600, "10h"),
    (3 * 86400, "3d"), (3 * 86400 + 3600, "3d1h"), (30 * 86400, "30d"),
    (800 * 86400, "2y70d"), (9 * 365 * 86400, "9y"),
])
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def cells(plural: str, obj: dict) -> list:
    return to_table(BY_PLURAL[plural], [obj], revision=1, now=NOW)["rows"][0]["cells"]


def test_pod_row() -> None:
    running = pod("web", phase="Running")
    running["status"].update(podIP="10.0.0.7", containerStatuses=[
        {"name": "main", "ready": True, "restartCount": 2, "state": {"running": {}}}])
    assert cells("pods", running) == ["web", "1/1", "Running", 2, "10m", "10.0.0.7", "edge-1",
                                      "<none>", "<none>"]


@pytest.mark.parametrize(("state", "reason"), [
    ({"waiting": {"reason": "ImagePullBackOff"}}, "ImagePullBackOff"),
    ({"terminated": {"reason": "Error", "exitCode": 1}}, "Error"),
    ({"terminated": {"exitCode": 3}}, "ExitCode:3"),
    ({"terminated": {"signal": 9}}, "Signal:9"),
])
def test_pod_status_reason(state: dict, reason: str) -> None:
    p = pod("web", phase="Running")
    p["status"]["containerStatuses"] = [{"name": "main", "ready": False, "restartCount": 0,
                                         "state": state}]
    assert cells("pods", p)[2] == reason


def test_terminating_pod() -> None:
    p = pod("web", phase="Running")
    p["metadata"]["deletionTimestamp"] = "2024-01-01T00:09:00Z"
    assert cells("pods", p)[2] == "Terminating"


def test_node_row_shows_roles_and_readiness() -> None:
    n = node(ready="False")
    n["metadata"]["labels"]["node-role.kubernetes.io/agent"] = ""
    n["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    n["status"]["nodeInfo"] = {"kubeletVersion": "v1.32.10-pykubeedge-0.1.0"}
    n["spec"] = {"unschedulable": True}
    assert cells("nodes", n)[:5] == ["edge-1", "NotReady,SchedulingDisabled", "agent,edge",
                                     "10m", "v1.32.10-pykubeedge-0.1.0"]


def test_configmap_secret_service_endpoints_rows() -> None:
    assert cells("configmaps", configmap("c", a="1", b="2"))[:2] == ["c", 2]
    secret = {"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"a": "", "b": ""}}
    assert cells("secrets", secret)[:3] == ["s", "kubernetes.io/tls", 2]
    service = {"metadata": {"name": "svc"},
               "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "selector": {"app": "a"},
                        "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}}
    assert cells("services", service) == ["svc", "NodePort", "10.96.0.10", "<none>",
                                          "80:30080/TCP", "<unknown>", "app=a"]
    endpoints = {"metadata": {"name": "svc"}, "subsets": [
        {"addresses": [{"ip": f"10.0.0.{i}"} for i in range(5)], "ports": [{"port": 80}]}]}
    assert cells("endpoints", endpoints)[1] == "10.0.0.0:80,10.0.0.1:80,10.0.0.2:80 + 2 more..."


def test_rows_carry_metadata_or_the_object() -> None:
    p = pod("web")
    meta_row = to_table(BY_PLURAL["pods"], [p], revision=3)["rows"][0]
    assert meta_row["object"]["kind"] == "PartialObjectMetadata"
    assert meta_row["object"]["metadata"]["namespace"] == "default"
    full = to_table(BY_PLURAL["pods"], [p], revision=3, include_object="Object")
    assert full["rows"][0]["object"] == p
    assert full["metadata"] == {"resourceVersion": "3"}
    bare = to_table(BY_PLURAL["pods"], [p], revision=3, include_object="None",
                    with_columns=False)
    assert "object" not in bare["rows"][0] and bare["columnDefinitions"] == []
