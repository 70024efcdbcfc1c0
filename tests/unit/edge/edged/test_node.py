"""Edged's node side: registration, node status patches, and the Lease."""

from __future__ import annotations

import re

import orjson

from pykubeedge.edge.edged import FakeRuntime
from pykubeedge.edge.edged.timefmt import rfc3339
from tests.unit.edge.edged.harness import (
    NODE,
    FakeMetaManager,
    FakeTime,
    host_info,
    make_edged,
    make_pod,
    running,
    settle,
)

MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


async def test_registration_sends_the_node_with_labels_capacity_and_node_info() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    edged = make_edged(t, node_labels={"site": "lab", "tier": "edge"})

    async with running(edged, meta):
        inserts = meta.requests("insert", "node")

    assert len(inserts) == 1
    msg = inserts[0]
    assert msg.resource == f"null/node/{NODE}"
    assert (msg.source, msg.group) == ("edged", "meta")
    node = msg.content
    assert node["apiVersion"] == "v1"
    assert node["kind"] == "Node"
    assert node["metadata"]["name"] == NODE
    assert node["metadata"]["labels"] == {
        "node-role.kubernetes.io/edge": "",
        "node-role.kubernetes.io/agent": "",
        "kubernetes.io/hostname": NODE,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "arm64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "arm64",
        "site": "lab",
        "tier": "edge",
    }
    status = node["status"]
    assert status["addresses"] == [
        {"type": "InternalIP", "address": "192.168.1.10"},
        {"type": "Hostname", "address": "edge-host"},
    ]
    assert status["capacity"]["cpu"] == "4"
    assert status["capacity"]["memory"] == f"{8 * 1024 * 1024}Ki"
    assert status["capacity"]["pods"] == "110"
    assert status["capacity"]["ephemeral-storage"] == f"{100 * 1024 * 1024}Ki"
    assert status["allocatable"]["memory"] == f"{8 * 1024 * 1024 - 100 * 1024}Ki"
    assert status["allocatable"]["pods"] == "110"
    info = status["nodeInfo"]
    assert info["kubeletVersion"] == "v1.37.2-pykubeedge-0.1.0"
    assert info["containerRuntimeVersion"] == "fake://0.1.0"
    assert info["kernelVersion"] == "6.1.0-test"
    assert info["osImage"] == "Debian GNU/Linux 12 (bookworm)"
    assert (info["operatingSystem"], info["architecture"]) == ("linux", "arm64")
    conditions = {c["type"]: c for c in status["conditions"]}
    assert set(conditions) == {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure"}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Ready"]["reason"] == "EdgeReady"  # upstream edged's wording
    for kind in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        assert conditions[kind]["status"] == "False"
    for condition in conditions.values():
        assert condition["lastHeartbeatTime"] == rfc3339(t.now)
        assert condition["lastTransitionTime"] == rfc3339(t.now)
    assert edged.node_uid == "node-uid-1"


async def test_kubernetes_version_can_be_passed_in() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    async with running(make_edged(t, kubernetes_version="1.33.0"), meta):
        node = meta.requests("insert", "node")[0].content
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.33.0-pykubeedge-0.1.0"


async def test_registration_is_retried_with_backoff_while_offline_and_pods_still_run() -> None:
    t, meta = FakeTime(), FakeMetaManager(online=False)
    pod = make_pod("stored")
    meta.pods["default/pod/stored"] = pod
    runtime = FakeRuntime(clock=t.clock)
    edged = make_edged(t, runtime=runtime)

    async with running(edged, meta):
        assert len(meta.requests("insert", "node")) == 1
        assert not edged.registered.is_set()
        # edge autonomy: the stored pod runs although the node is not registered
        assert runtime.containers_started == 1
        assert meta.last_status("stored")["phase"] == "Running"

        await t.advance(0.1)  # back-off 0.1 s, 0.2 s, 0.4 s, ... (jitter pinned to 1)
        assert len(meta.requests("insert", "node")) == 2
        await t.advance(0.2)
        assert len(meta.requests("insert", "node")) == 3
        await t.advance(0.3)
        assert len(meta.requests("insert", "node")) == 3
        await t.advance(0.15)
        assert len(meta.requests("insert", "node")) == 4
        await t.advance(60)
        tries = len(meta.requests("insert", "node"))
        assert 4 < tries < 20  # capped at 7 s between tries
        assert not meta.requests(kind="lease")

        meta.online = True
        await t.advance(7)
        assert edged.registered.is_set()
        assert edged.node_uid == "node-uid-1"
        assert meta.requests("insert", "lease")


async def test_re_registration_of_an_existing_node_learns_its_uid() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    meta.node = {"metadata": {"name": NODE, "uid": "existing-uid"}}
    edged = make_edged(t)

    async with running(edged, meta):
        assert edged.registered.is_set()
        assert edged.node_uid == "existing-uid"
        lease = meta.requests("insert", "lease")[0].content
    assert lease["metadata"]["ownerReferences"][0]["uid"] == "existing-uid"


async def test_an_existing_node_without_our_labels_gets_them_and_one_with_them_does_not(
) -> None:
    # Upstream's cloudcore creates a Node without its kubernetes.io labels, then patches them
    # on; a cloudcore stopped in between leaves {site: lab} only. MetaManager passes the
    # cloud's AlreadyExists on as an error message: that is registered all the same.
    t, meta = FakeTime(), FakeMetaManager()
    meta.node = {"metadata": {"name": NODE, "uid": "existing-uid", "labels": {"site": "lab"}}}
    edged = make_edged(t, node_labels={"site": "lab"})
    async with running(edged, meta):
        assert edged.registered.is_set() and edged.node_uid == "existing-uid"
        updates = meta.requests("update", "node")
        assert len(updates) == 1
        labels = meta.node["metadata"]["labels"]
        assert labels["node-role.kubernetes.io/edge"] == ""
        assert labels["node-role.kubernetes.io/agent"] == ""
        assert labels["site"] == "lab"
        assert meta.requests("insert", "lease")  # the lease follows registration

    again = make_edged(FakeTime(), node_labels={"site": "lab"})
    async with running(again, meta):  # edgecore restarted: the labels are there now
        assert again.registered.is_set()
        assert len(meta.requests("update", "node")) == 1


async def test_node_status_is_patched_only_on_change_and_every_report_period() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock)
    async with running(make_edged(t, runtime=runtime), meta):
        await t.advance(60)
        assert meta.node_patches() == []  # nothing changed, report period not reached

        runtime.healthy = False
        await t.advance(10)
        patches = meta.requests("patch", "nodepatch")
        assert len(patches) == 1
        assert patches[0].resource == f"null/nodepatch/{NODE}"
        assert isinstance(patches[0].content, str)  # a JSON string, as upstream
        patch = orjson.loads(patches[0].content)
        assert set(patch) == {"status"}
        ready = next(c for c in patch["status"]["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "KubeletNotReady")
        assert ready["lastHeartbeatTime"] == rfc3339(t.now)
        assert ready["lastTransitionTime"] == rfc3339(t.now)

        await t.advance(30)
        assert len(meta.node_patches()) == 1  # still down: unchanged

        runtime.healthy = True
        await t.advance(10)
        assert len(meta.node_patches()) == 2
        recovered_at = t.now
        ready = next(
            c for c in meta.node_patches()[-1]["status"]["conditions"] if c["type"] == "Ready"
        )
        assert ready["status"] == "True"

        await t.advance(290)
        assert len(meta.node_patches()) == 2
        await t.advance(10)
        assert len(meta.node_patches()) == 3  # nodeStatusReportFrequency: 5 min
        conditions = meta.node_patches()[-1]["status"]["conditions"]
        ready = next(c for c in conditions if c["type"] == "Ready")
        assert ready["lastHeartbeatTime"] == rfc3339(t.now)
        assert ready["lastTransitionTime"] == rfc3339(recovered_at)
        memory = next(c for c in conditions if c["type"] == "MemoryPressure")
        assert memory["lastHeartbeatTime"] == rfc3339(t.now)


async def test_a_new_host_ip_is_patched() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    host = {"info": host_info()}

    async def probe():  # type: ignore[no-untyped-def]
        return host["info"]

    async with running(make_edged(t, host_probe=probe), meta):
        await t.advance(10)
        assert meta.node_patches() == []
        host["info"] = host_info(internal_ip="192.168.1.77")
        await t.advance(10)
        addresses = meta.node_patches()[-1]["status"]["addresses"]
    assert {"type": "InternalIP", "address": "192.168.1.77"} in addresses


async def test_lease_is_inserted_then_updated_every_10_seconds() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    async with running(make_edged(t), meta):
        leases = meta.requests(kind="lease")
        assert [m.operation for m in leases] == ["insert"]
        first = leases[0]
        assert first.resource == f"kube-node-lease/lease/{NODE}"
        lease = first.content
        assert lease["apiVersion"] == "coordination.k8s.io/v1"
        assert lease["kind"] == "Lease"
        assert lease["metadata"]["name"] == NODE
        assert lease["metadata"]["namespace"] == "kube-node-lease"
        assert lease["metadata"]["ownerReferences"] == [
            {"apiVersion": "v1", "kind": "Node", "name": NODE, "uid": "node-uid-1"}
        ]
        assert lease["spec"]["holderIdentity"] == NODE
        assert lease["spec"]["leaseDurationSeconds"] == 40
        assert MICRO_TIME.match(lease["spec"]["renewTime"])

        await t.advance(10)
        await t.advance(10)
        await t.advance(10)
        leases = meta.requests(kind="lease")
        assert [m.operation for m in leases] == ["insert", "update", "update", "update"]
        renewed = leases[-1].content
        assert renewed["metadata"]["resourceVersion"]  # carried from the last reply
        assert renewed["spec"]["renewTime"] != lease["spec"]["renewTime"]
        assert renewed["metadata"]["ownerReferences"][0]["uid"] == "node-uid-1"


async def test_an_existing_lease_is_read_again_and_updated_with_its_resource_version() -> None:
    # Edgecore restarted: the Lease exists. Insert -> "already exists" -> query -> update
    # with the Lease's resourceVersion (without it the API server refuses the update).
    t, meta = FakeTime(), FakeMetaManager()
    meta.lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                  "metadata": {"name": NODE, "namespace": "kube-node-lease",
                               "resourceVersion": "7"}, "spec": {}}
    async with running(make_edged(t), meta):
        ops = [m.operation for m in meta.requests(kind="lease")]
        assert ops == ["insert", "query", "update"]
        assert meta.requests("update", "lease")[0].content["metadata"]["resourceVersion"] == "7"
        # Someone else moved it on: the conflict is answered by reading it again.
        meta.lease = {**meta.lease, "metadata": {**meta.lease["metadata"],
                                                 "resourceVersion": "50"}}
        await t.advance(10)
        ops = [m.operation for m in meta.requests(kind="lease")]
        assert ops == ["insert", "query", "update", "update", "query", "update"]
        assert meta.requests("update", "lease")[-1].content["metadata"][
            "resourceVersion"] == "50"


async def test_reconnect_after_lease_failures_forces_a_node_status_patch() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    async with running(make_edged(t), meta):
        await t.advance(20)
        assert meta.node_patches() == []

        meta.online = False
        await t.advance(60)  # leases fail; the status did not change, so no patch
        assert meta.node_patches() == []
        failed_updates = len(meta.requests("update", "lease"))

        meta.online = True
        await t.advance(10)
        assert len(meta.requests("update", "lease")) == failed_updates + 1
        # the API server may have marked us NotReady meanwhile: tell it we are Ready
        assert len(meta.node_patches()) == 1
        ready = next(
            c for c in meta.node_patches()[0]["status"]["conditions"] if c["type"] == "Ready"
        )
        assert ready["status"] == "True"
        assert ready["lastHeartbeatTime"] == rfc3339(t.now)


async def test_node_status_queued_offline_is_not_repeated_every_tick() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock)
    async with running(make_edged(t, runtime=runtime), meta):
        meta.online = False
        runtime.healthy = False
        await t.advance(10)
        assert len(meta.node_patches()) == 1  # answered "OK": queued by MetaManager
        await t.advance(50)
        assert len(meta.node_patches()) == 1
        await settle()
