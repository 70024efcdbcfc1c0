"""Small pieces: time formats, reply unwrapping, node conditions and lease, host facts."""

from __future__ import annotations

from pykubeedge.edge.edged.metaclient import list_items, object_resp
from pykubeedge.edge.edged.node import (
    NodeConditions,
    go_arch,
    lease_object,
    primary_ipv4,
    probe_host,
    status_without_heartbeats,
)
from pykubeedge.edge.edged.podworker import grace_seconds, parse_time
from pykubeedge.edge.edged.timefmt import micro_time, rfc3339


def test_time_formats() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert micro_time(1.000123) == "1970-01-01T00:00:01.000123Z"
    assert parse_time("2023-11-14T22:13:20Z") == 1700000000.0
    assert parse_time("yesterday") is None
    assert parse_time(None) is None


def test_object_resp_and_list_items() -> None:
    assert object_resp({"Object": {"a": 1}, "Err": ""}) == ({"a": 1}, "")
    assert object_resp({"Object": None, "Err": "boom"}) == (None, "boom")
    assert object_resp({"Object": {}, "Err": {"ErrStatus": {"reason": "NotFound"}}}) == (
        None, "NotFound")
    assert object_resp({"metadata": {}}) == ({"metadata": {}}, "")
    assert object_resp("OK") == (None, "")
    assert object_resp(None) == (None, "")
    assert list_items(['{"a": 1}', "{bad", {"b": 2}, 3]) == [{"a": 1}, {"b": 2}]
    assert list_items({"items": [{"c": 3}]}) == [{"c": 3}]
    assert list_items("nonsense") == []
    assert list_items(None) == []


def test_node_conditions_keep_transition_times() -> None:
    conditions = NodeConditions()
    assert conditions.set("Ready", "True", "KubeletReady", "ok", now=1)
    assert not conditions.set("Ready", "True", "KubeletReady", "ok", now=2)
    assert conditions.set("Ready", "True", "KubeletReady", "other message", now=3)
    [ready] = conditions.render(heartbeat=4)
    assert ready["lastTransitionTime"] == rfc3339(1)  # the status did not flip
    assert ready["lastHeartbeatTime"] == rfc3339(4)
    assert conditions.set("Ready", "False", "KubeletNotReady", "down", now=5)
    assert conditions.render(heartbeat=6)[0]["lastTransitionTime"] == rfc3339(5)
    stripped = status_without_heartbeats({"conditions": conditions.render(heartbeat=7)})
    assert "lastHeartbeatTime" not in stripped["conditions"][0]


def test_lease_object_keeps_the_resource_version_of_the_last_reply() -> None:
    base = {"metadata": {"name": "n", "resourceVersion": "42", "uid": "lease-uid",
                         "managedFields": [{}]}, "spec": {}}
    lease = lease_object("n", duration_seconds=40, renew_time=1.5, base=base)
    assert lease["metadata"] == {"resourceVersion": "42", "uid": "lease-uid", "name": "n",
                                 "namespace": "kube-node-lease"}
    assert lease["spec"] == {"holderIdentity": "n", "leaseDurationSeconds": 40,
                             "renewTime": "1970-01-01T00:00:01.500000Z"}


def test_grace_seconds() -> None:
    assert grace_seconds({"metadata": {}, "spec": {"terminationGracePeriodSeconds": 5}}) == 5
    assert grace_seconds({"metadata": {"deletionGracePeriodSeconds": 0}, "spec": {}}) == 0
    assert grace_seconds({"metadata": {"deletionGracePeriodSeconds": "x"}}) == 30
    assert grace_seconds({}) == 30


def test_host_facts_of_this_machine() -> None:
    host = probe_host("/nonexistent")
    assert host.cpu >= 1
    assert host.memory_bytes > 0
    assert host.ephemeral_storage_bytes > 0  # falls back to /
    assert host.operating_system == "linux"
    assert host.architecture == go_arch(__import__("platform").machine())
    assert primary_ipv4().count(".") == 3
    assert go_arch("aarch64") == "arm64"
    assert go_arch("x86_64") == "amd64"
    assert go_arch("mips") == "mips"
