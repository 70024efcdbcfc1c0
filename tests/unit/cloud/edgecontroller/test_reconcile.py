"""EdgeController, SyncController and CloudHub together over the in-memory transport and an
in-memory API server, in fake time: what a node has ACKed is recorded, and a node is
reconciled when it connects (only what is newer than its records goes down again)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pykubeedge.beehive import Hive
from pykubeedge.beehive.clock import FakeClock
from pykubeedge.cloud.cloudhub.hub import CloudHub
from pykubeedge.cloud.edgecontroller.controller import EdgeController
from pykubeedge.cloud.synccontroller.controller import SyncController
from pykubeedge.core.message import new_message
from pykubeedge.kube.resources import CONFIGMAPS, NODES, OBJECTSYNCS, PODS
from pykubeedge.transport.memory import MemoryNetwork
from tests.unit.cloud.fakekube import FakeKube
from tests.unit.hubtools import NODE, RawEnd, hub_headers, until

NS = "apps"


async def seed(kube: FakeKube) -> None:
    await kube.create(NODES, {"metadata": {"name": NODE, "labels": {
        "node-role.kubernetes.io/edge": ""}}})
    await kube.create(CONFIGMAPS, {"metadata": {"name": "cfg", "namespace": NS},
                                   "data": {"k": "v"}})
    await kube.create(PODS, {"metadata": {"name": "web", "namespace": NS}, "spec": {
        "nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}],
        "volumes": [{"name": "v", "configMap": {"name": "cfg"}}]}})


@dataclass
class Cloudcore:
    clock: FakeClock
    kube: FakeKube
    hub: CloudHub
    controller: EdgeController
    sync: SyncController
    network: MemoryNetwork
    tasks: asyncio.TaskGroup

    async def connect(self) -> RawEnd:
        ws = await self.network.dial("wss://cloudhub", hub_headers(NODE))
        return RawEnd(ws, auto_ack=True).start(self.tasks)


@asynccontextmanager
async def cloudcore(kube: FakeKube) -> AsyncIterator[Cloudcore]:
    clock = FakeClock()
    sync = SyncController(kube, clock=clock)  # type: ignore[arg-type]
    controller = EdgeController(kube, sync, clock=clock)  # type: ignore[arg-type]
    hub = CloudHub(None, listen=False, clock=clock, ack_listener=sync.on_ack)
    async with Hive(clock=clock.monotonic, sleep=clock.sleep) as hive:
        for module in (sync, controller, hub):
            hive.add_module(module)
        await until(controller.synced.is_set, "EdgeController synced")
        async with asyncio.TaskGroup() as tasks, MemoryNetwork(hub.accept) as network:
            yield Cloudcore(clock, kube, hub, controller, sync, network, tasks)
            for ws in network.live():
                await ws.close()


def kinds(edge: RawEnd) -> list[tuple[str, str]]:
    return [(m.operation, m.resource) for m in edge.received]


async def test_a_node_gets_what_it_needs_and_its_acks_become_sync_records() -> None:
    kube = FakeKube()
    await seed(kube)
    async with cloudcore(kube) as cc:
        edge = await cc.connect()
        await until(lambda: len(edge.received) == 3, "node, configmap and pod sent")
        # What the pod needs goes first, so the edge can start it at once.
        assert kinds(edge) == [("update", f"null/node/{NODE}"),
                               ("update", f"{NS}/configmap/cfg"),
                               ("insert", f"{NS}/pod/web")]
        await until(lambda: all(r.rv != "0" for r in cc.sync.records_of(NODE))
                    and len(cc.sync.records_of(NODE)) == 3, "ACKs recorded")
        await until(lambda: len(kube.objects.get(OBJECTSYNCS.plural, {})) == 2,
                    "ObjectSyncs written")
        pod = await kube.get(PODS, "web", namespace=NS)
        key = f"{NS}/{NODE}.{pod['metadata']['uid']}"

        def recorded() -> str:
            return kube.objects[OBJECTSYNCS.plural][key].get("status", {}).get(
                "objectResourceVersion", "")

        await until(lambda: recorded() == pod["metadata"]["resourceVersion"],
                    "the pod's ACKed version")


async def test_a_reconnecting_node_is_sent_only_what_changed_since_its_acks() -> None:
    kube = FakeKube()
    await seed(kube)
    async with cloudcore(kube) as cc:
        edge = await cc.connect()
        # (The reconcile on connect may send a version again before its ACK is in: the edge
        # ACKs it again; wait until nothing is left in flight.)
        await until(lambda: len(cc.sync.records_of(NODE)) == 3
                    and all(r.rv != "0" for r in cc.sync.records_of(NODE))
                    and len(cc.hub.queues[NODE]) == 0, "ACKs recorded")
        edge.ws.break_link()
        await cc.clock.settle()
        await kube.patch(PODS, "web", {"metadata": {"labels": {"gen": "2"}}}, namespace=NS)
        await until(lambda: len(cc.hub.queues[NODE]) == 1, "the change queued for the node")
        cc.hub.queues.pop(NODE)  # as if the queue were lost (a cloudcore without it)
        back = await cc.connect()
        await until(lambda: len(back.received) == 1, "the reconcile on connect")
        await cc.clock.advance(60)
        assert kinds(back) == [("update", f"{NS}/pod/web")]
        assert back.received[0].content["metadata"]["labels"] == {"gen": "2"}
        assert cc.controller.skipped >= 2  # node and configmap: already ACKed


async def test_a_restarted_cloudcore_does_not_resend_what_was_acked() -> None:
    kube = FakeKube()
    await seed(kube)
    async with cloudcore(kube) as cc:
        edge = await cc.connect()
        await until(lambda: len(kube.objects.get(OBJECTSYNCS.plural, {})) == 2
                    and all(o.get("status") for o in kube.objects[OBJECTSYNCS.plural].values()),
                    "records written with their ACKed versions")
        await until(lambda: cc.sync.writes >= 3 and not cc.sync._dirty, "writer idle")
        assert len(edge.received) == 3
    await kube.delete(CONFIGMAPS, "cfg", namespace=NS)  # while cloudcore is down
    async with cloudcore(kube) as cc:
        edge = await cc.connect()
        await until(lambda: len(edge.received) >= 1, "the reconcile after the restart")
        await cc.clock.advance(30)
        # Nothing the node had ACKed is sent again; the delete may come twice (the reconcile
        # on connect can read the record before the first delete's ACK is in).
        assert set(kinds(edge)) == {("delete", f"{NS}/configmap/cfg")}
        assert not cc.sync.records_of(NODE) or all(
            r.kind != "ConfigMap" for r in cc.sync.records_of(NODE))


async def test_registering_again_on_one_connection_re_sends_everything_only_once() -> None:
    # Upstream's edge registers its node again every few seconds while it is unsure of the
    # answer: one full re-send per connection, not one per registration (issue 8).
    from pykubeedge.core.message import new_message
    kube = FakeKube()
    await seed(kube)
    async with cloudcore(kube) as cc:
        edge = await cc.connect()
        await until(lambda: len(edge.received) == 3, "node, configmap and pod sent")
        await until(lambda: len(cc.sync.records_of(NODE)) == 3, "ACKs recorded")

        def register() -> object:
            return edge.send(new_message(
                source="edged", group="meta", operation="insert",
                resource=f"null/node/{NODE}",
                content={"metadata": {"name": NODE}, "status": {}}))

        await register()
        await until(lambda: sum(1 for m in edge.received
                                if m.resource == f"{NS}/pod/web") == 2,
                    "the full re-send after the first registration")
        await cc.clock.advance(7)  # settled: resends of the re-send's versions, if any, done
        pod_sends = sum(1 for m in edge.received if m.resource == f"{NS}/pod/web")
        for _ in range(3):
            await register()
            await cc.clock.advance(7)
        assert sum(1 for m in edge.received if m.resource == f"{NS}/pod/web") == pod_sends


class TokenKube(FakeKube):
    """Answers TokenRequests only when told to, counting how many wait at once."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.waiting = 0
        self.most_waiting = 0

    async def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        assert method == "POST" and path.endswith("/serviceaccounts/default/token"), path
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        await self.release.wait()
        self.waiting -= 1
        return {"status": {"token": "t"}}


async def test_token_requests_of_a_node_are_served_side_by_side() -> None:
    kube = TokenKube()
    await seed(kube)
    await kube.patch(PODS, "web", {"spec": {"serviceAccountName": "default"}}, namespace=NS)
    async with cloudcore(kube) as cc:
        edge = await cc.connect()
        await until(lambda: len(edge.received) == 3, "node, configmap and pod sent")
        asks = [new_message(source="edged", group="meta", operation="query",
                            resource=f"{NS}/serviceaccounttoken/default",
                            content={"spec": {"boundObjectRef": {"kind": "Pod",
                                                                 "name": "web"}}})
                for _ in range(3)]
        for ask in asks:
            await edge.send(ask)
        await until(lambda: kube.waiting == 3, "three TokenRequests at the API server at once")
        kube.release.set()
        ids = {a.msg_id for a in asks}
        await until(lambda: len([m for m in edge.received if m.parent_msg_id in ids]) == 3,
                    "three answers")


class HeldStatusKube(FakeKube):
    """Holds pod status patches until told to go; ``waiting``: the pods held now."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.waiting: set[str] = set()

    async def patch_status(self, res: Any, name: str, patch: Any, **kw: Any) -> dict[str, Any]:
        if res is not PODS:  # (ObjectSync statuses go through)
            return await super().patch_status(res, name, patch, **kw)
        self.waiting.add(name)
        await self.release.wait()
        self.waiting.discard(name)
        return await super().patch_status(res, name, patch, **kw)


async def test_status_patches_of_two_pods_go_side_by_side_and_one_pods_requests_in_order(
) -> None:
    kube = HeldStatusKube()
    await seed(kube)
    await kube.create(PODS, {"metadata": {"name": "db", "namespace": NS}, "spec": {
        "nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}]}})
    async with cloudcore(kube) as cc:
        edge = await cc.connect()
        await until(lambda: len(edge.received) == 4, "node, configmap and two pods sent")
        for name in ("web", "db"):
            await edge.send(new_message(source="edged", group="resource", operation="patch",
                                        resource=f"{NS}/podpatch/{name}",
                                        content={"status": {"phase": "Running"}}))
        delete = new_message(source="edged", group="resource", operation="delete",
                             resource=f"{NS}/pod/web", content={})
        await edge.send(delete)
        await until(lambda: kube.waiting == {"web", "db"}, "both patches at the API server")
        for _ in range(20):
            await asyncio.sleep(0)
        # web's delete waits behind web's patch; it does not overtake it.
        assert ("delete", "pods", f"{NS}/web") not in kube.writes
        kube.release.set()
        await until(lambda: ("delete", "pods", f"{NS}/web") in kube.writes, "web deleted")
        assert kube.writes.index(("patch/status", "pods", f"{NS}/web")) < \
            kube.writes.index(("delete", "pods", f"{NS}/web"))
        await until(lambda: any(m.parent_msg_id == delete.msg_id for m in edge.received),
                    "the delete answered")
