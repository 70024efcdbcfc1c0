"""EdgeController and SyncController against the real API server, with a recording stand-in
for CloudHub: what goes down to which node, ACK bookkeeping in ObjectSyncs, reconcile after a
restart, and the identity checks on what edges ask for."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from pykubeedge.beehive import Hive
from pykubeedge.cloud.edgecontroller.controller import EdgeController
from pykubeedge.cloud.synccontroller.controller import SyncController
from pykubeedge.core.message import Message, new_message
from pykubeedge.core.resource import trim_for_edge
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.resources import CONFIGMAPS, NODES, OBJECTSYNCS, PODS, SECRETS
from tests.conftest import eventually
from tests.integration.hubharness import Recorder

pytestmark = pytest.mark.integration


class FakeHub(Recorder):
    """Stands in for CloudHub: records what EdgeController sends, ACKs it if asked."""

    def __init__(self, sync: SyncController) -> None:
        super().__init__("cloudhub", "cloudhub")
        self.sync = sync
        self.auto_ack = True

    async def start(self, ctx: object) -> None:
        while True:
            msg = await ctx.receive(self.name)  # type: ignore[attr-defined]
            self.messages.append(msg)
            if self.auto_ack and msg.operation in ("insert", "update", "delete"):
                node = msg.resource.split("/")[1]
                acked = Message(**{f: getattr(msg, f) for f in msg.__dataclass_fields__})
                acked.resource = trim_for_edge(msg.resource)
                self.sync.on_ack(node, acked)

    def to(self, node: str, rtype: str | None = None) -> list[Message]:
        return [m for m in self.messages if m.resource.startswith(f"node/{node}/")
                and (rtype is None or m.resource.split("/")[3] == rtype)]

    def replies(self) -> list[Message]:
        return [m for m in self.messages if m.operation in ("response", "error")]


@contextlib.asynccontextmanager
async def cloud(kube: KubeClient) -> AsyncIterator[tuple[EdgeController, FakeHub]]:
    sync = SyncController(kube)
    ec = EdgeController(kube, sync)
    hub = FakeHub(sync)
    async with Hive() as hive:
        for m in (sync, ec, hub):
            hive.add_module(m)
        await asyncio.wait_for(ec.synced.wait(), 60)
        ec.hive = hive  # type: ignore[attr-defined]
        yield ec, hub


def edge_node(name: str) -> dict:
    return {"metadata": {"name": name, "labels": {"node-role.kubernetes.io/edge": ""}}}


def pod_on(node: str, name: str, ns: str, cm: str | None = None) -> dict:
    spec: dict = {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
    if cm:
        spec["volumes"] = [{"name": "cfg", "configMap": {"name": cm}}]
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


async def ask(ec: EdgeController, hub: FakeHub, msg: Message) -> Message:
    before = len(hub.replies())
    await ec.hive.send("edgecontroller", msg)  # type: ignore[attr-defined]
    await eventually(lambda: len(hub.replies()) > before, what="a reply")
    reply = hub.replies()[-1]
    assert reply.parent_msg_id == msg.msg_id
    return reply


def edge_msg(node: str, op: str, resource: str, content: object = None) -> Message:
    return new_message(source="edged", group="meta", operation=op,
                       resource=f"node/{node}/{resource}", content=content)


async def test_pods_and_their_configmaps_go_to_their_node_only(kube: KubeClient, ns: str) -> None:
    a, b = f"{ns}-a", f"{ns}-b"
    for n in (a, b):
        await kube.create(NODES, edge_node(n))
    await kube.create(CONFIGMAPS, {"metadata": {"name": "cfg", "namespace": ns},
                                   "data": {"k": "1"}})
    async with cloud(kube) as (_ec, hub):
        await kube.create(PODS, pod_on(a, "web", ns, cm="cfg"))
        await eventually(lambda: hub.to(a, "pod"), what="pod sent to its node")
        cms = hub.to(a, "configmap")
        assert [m.content["data"] for m in cms] == [{"k": "1"}]
        assert hub.to(b, "pod") == [] and hub.to(b, "configmap") == []
        await kube.patch(CONFIGMAPS, "cfg", {"data": {"k": "2"}}, namespace=ns)
        await eventually(lambda: len(hub.to(a, "configmap")) == 2, what="configmap update")
        assert hub.to(a, "configmap")[-1].content["data"] == {"k": "2"}
        assert hub.to(a, "configmap")[-1].resourceversion
        # The ACKs became ObjectSync records named <node>.<uid>.
        pod = await kube.get(PODS, "web", namespace=ns)
        rec = f"{a}.{pod['metadata']['uid']}"

        async def recorded() -> bool:
            try:
                obj = await kube.get(OBJECTSYNCS, rec, namespace=ns)
            except Exception:
                return False
            return (obj.get("status") or {}).get("objectResourceVersion") == \
                pod["metadata"]["resourceVersion"]

        await eventually(recorded, what="ObjectSync with the ACKed resourceVersion")
        await kube.delete(PODS, "web", namespace=ns, grace_period_seconds=0)
        await eventually(lambda: hub.to(a, "pod")[-1].operation == "delete", what="pod delete")
        # No pod of node a uses cfg any more: the edge is told to drop it.
        await eventually(lambda: hub.to(a, "configmap")[-1].operation == "delete",
                         what="configmap delete")


async def test_restart_converges_without_resending_the_world(kube: KubeClient, ns: str) -> None:
    node = f"{ns}-r"
    await kube.create(NODES, edge_node(node))
    await kube.create(CONFIGMAPS, {"metadata": {"name": "cfg", "namespace": ns}, "data": {}})
    for name in ("keep", "change", "remove"):
        await kube.create(PODS, pod_on(node, name, ns, cm="cfg"))
    async with cloud(kube) as (ec, hub):
        await eventually(lambda: len(hub.to(node, "pod")) == 3, what="3 pods")
        await eventually(lambda: ec.sync._dirty == {} and not ec.sync._busy, what="records out")
    # cloudcore is down: the cluster changes.
    await kube.patch(PODS, "change", {"metadata": {"labels": {"v": "2"}}}, namespace=ns)
    await kube.delete(PODS, "remove", namespace=ns, grace_period_seconds=0)
    await kube.create(PODS, pod_on(node, "new", ns))
    async with cloud(kube) as (ec, hub):
        pods = hub.to(node, "pod")
        names = sorted((m.operation, m.resource.rsplit("/", 1)[1]) for m in pods)
        # The first list after a start reports every pod as added: an upsert on the edge.
        assert names == [("delete", "remove"), ("insert", "change"), ("insert", "new")]
        assert hub.to(node, "configmap") == []  # unchanged and already ACKed: not resent
        assert ec.skipped >= 2


async def test_a_node_gets_only_what_is_its_own(kube: KubeClient, ns: str) -> None:
    a, b = f"{ns}-a", f"{ns}-b"
    for n in (a, b):
        await kube.create(NODES, edge_node(n))
    await kube.create(SECRETS, {"metadata": {"name": "a-secret", "namespace": ns},
                                "stringData": {"password": "x"}})
    await kube.create(PODS, {**pod_on(a, "pa", ns), "spec": {
        "nodeName": a, "containers": [{"name": "c", "image": "i", "envFrom": [
            {"secretRef": {"name": "a-secret"}}]}]}})
    async with cloud(kube) as (ec, hub):
        ok = await ask(ec, hub, edge_msg(a, "query", f"{ns}/secret/a-secret"))
        assert ok.operation == "response" and ok.content["metadata"]["name"] == "a-secret"
        assert ok.group == "resource" and ok.source == "edgecontroller"
        refused = await ask(ec, hub, edge_msg(b, "query", f"{ns}/secret/a-secret"))
        assert refused.operation == "error" and "no pod on node" in refused.content
        # Node b may not patch node a's status, nor a's pod.
        patch = json.dumps({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
        refused = await ask(ec, hub, edge_msg(b, "patch", f"null/nodepatch/{a}", patch))
        assert refused.operation == "error" and "may not act on node" in refused.content
        refused = await ask(ec, hub, edge_msg(b, "patch", f"{ns}/podpatch/pa",
                                              json.dumps({"status": {"phase": "Failed"}})))
        assert refused.operation == "error" and "bound to" in refused.content
        assert (await kube.get(PODS, "pa", namespace=ns)).get("status", {}).get("phase") \
            != "Failed"
        # Bad input: malformed JSON, unknown resource types, a pod that does not exist.
        bad = await ask(ec, hub, edge_msg(a, "patch", f"{ns}/podpatch/pa", "{not json"))
        assert bad.operation == "error" and "not JSON" in bad.content
        bad = await ask(ec, hub, edge_msg(a, "insert", f"{ns}/spaceship/x", {}))
        assert bad.operation == "error" and "unsupported" in bad.content
        bad = await ask(ec, hub, edge_msg(a, "patch", f"{ns}/podpatch/ghost",
                                          json.dumps({"status": {}})))
        assert bad.operation == "error" and "does not exist" in bad.content
        # Its own pod's status: allowed.
        ok = await ask(ec, hub, edge_msg(a, "patch", f"{ns}/podpatch/pa",
                                         json.dumps({"status": {"phase": "Running"}})))
        assert ok.operation == "response"
        assert (await kube.get(PODS, "pa", namespace=ns))["status"]["phase"] == "Running"


async def test_registration_strips_then_patches_restricted_labels(kube: KubeClient,
                                                                   ns: str) -> None:
    node = f"{ns}-reg"
    async with cloud(kube) as (ec, hub):
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "labels": {
            "node-role.kubernetes.io/edge": "", "node-role.kubernetes.io/agent": "",
            "kubernetes.io/hostname": node, "disktype": "test"}},
            "status": {"conditions": [{"type": "Ready", "status": "True",
                                       "reason": "KubeletReady", "message": "ok"}]}}
        reply = await ask(ec, hub, edge_msg(node, "insert", f"null/node/{node}", body))
        assert reply.operation == "response" and reply.content["Err"] is None
        got = await kube.get(NODES, node)
        assert got["metadata"]["labels"]["node-role.kubernetes.io/edge"] == ""
        assert got["metadata"]["annotations"]["cloudcore"] == "127.0.0.1"
        other = await ask(ec, hub, edge_msg(f"{node}-x", "insert", f"null/node/{node}", body))
        assert other.operation == "error"


async def test_tokens_and_status_patches_stay_within_the_node(kube: KubeClient, ns: str) -> None:
    from pykubeedge.kube.resources import SERVICEACCOUNTS

    a, b = f"{ns}-a", f"{ns}-b"
    for n in (a, b):
        await kube.create(NODES, edge_node(n))
    await kube.create(SERVICEACCOUNTS, {"metadata": {"name": "app", "namespace": ns}})
    await kube.create(PODS, {"metadata": {"name": "pa", "namespace": ns},
                             "spec": {"nodeName": a, "serviceAccountName": "app",
                                      "containers": [{"name": "c", "image": "i"}]}})
    async with cloud(kube) as (ec, hub):
        request = {"spec": {"audiences": [], "expirationSeconds": 3600,
                            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "pa"}}}
        ok = await ask(ec, hub, edge_msg(a, "query", f"{ns}/serviceaccounttoken/app", request))
        assert ok.operation == "response" and ok.content["status"]["token"]
        refused = await ask(ec, hub, edge_msg(b, "query", f"{ns}/serviceaccounttoken/app",
                                              request))
        assert refused.operation == "error" and "runs as serviceaccount" in refused.content
        # A status patch cannot smuggle labels in with cloudcore's credentials.
        sneaky = json.dumps({"metadata": {"labels": {"role": "db"}},
                             "status": {"phase": "Running"}})
        ok = await ask(ec, hub, edge_msg(a, "patch", f"{ns}/podpatch/pa", sneaky))
        assert ok.operation == "response"
        pod = await kube.get(PODS, "pa", namespace=ns)
        assert pod["status"]["phase"] == "Running"
        assert "role" not in (pod["metadata"].get("labels") or {})
