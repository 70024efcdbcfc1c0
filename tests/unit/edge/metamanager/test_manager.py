"""MetaManager's rules in a real Hive, with recording stand-ins for Edged, EdgeHub and twin.

The test itself plays Edged's side of ``send_sync`` (source ``edged``) and the cloud's side of
EdgeHub (messages from ``edgecontroller``; answers to EdgeHub's sync requests).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from pykubeedge.beehive import NEVER, BeehiveContext, Hive, RestartPolicy
from pykubeedge.core.constants import Content
from pykubeedge.core.message import Message, error_message, new_message, response
from pykubeedge.edge.metamanager.dao import MetaStore
from pykubeedge.edge.metamanager.manager import MetaManager
from pykubeedge.edge.metamanager.metaserver import MetaServer
from tests.conftest import eventually
from tests.unit.edge.metamanager.objects import configmap, node, pod

WAIT = 5.0  # a safety net for a hung test, never reached when the code works

Answer = Callable[[Message], Message | None]


@dataclass
class Recorder:
    """A stand-in module that records what reaches it; answers sync requests with ``answer``."""

    name: str
    group: str
    journal: list[tuple[str, Message]]
    restart_policy: RestartPolicy = NEVER
    answer: Answer | None = None
    probe: Callable[[Message], Awaitable[None]] | None = None
    messages: list[Message] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self, ctx: BeehiveContext) -> None:
        while True:
            msg = await ctx.receive(self.name)
            self.journal.append((self.name, msg))
            if self.probe is not None:
                await self.probe(msg)
            self.messages.append(msg)
            self.changed.set()
            if msg.sync and self.answer is not None:
                reply = self.answer(msg)
                if reply is not None:
                    ctx.respond(reply)

    async def wait_for(self, count: int) -> list[Message]:
        async with asyncio.timeout(WAIT):
            while len(self.messages) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.messages


@dataclass
class Edge:
    hive: Hive
    manager: MetaManager
    store: MetaStore
    edged: Recorder
    hub: Recorder
    twin: Recorder
    journal: list[tuple[str, Message]]

    async def from_cloud(self, operation: str, resource: str, content: Any = None, *,
                         source: str = "edgecontroller") -> Message:
        msg = new_message(source=source, group="resource", resource=resource,
                          operation=operation, content=content, resourceversion="100")
        await self.hive.send("metamanager", msg)
        return msg

    async def from_edged(self, operation: str, resource: str, content: Any = None) -> Message:
        msg = new_message(source="edged", group="meta", resource=resource,
                          operation=operation, content=content)
        return await self.hive.send_sync("metamanager", msg, timeout=WAIT)

    async def connect(self, connected: bool = True) -> None:
        event = new_message(source="edgehub", group="meta", resource="node/connection",
                            operation="connect",
                            content=Content.CLOUD_CONNECTED if connected
                            else Content.CLOUD_DISCONNECTED)
        await self.hive.send_to_group("meta", event)
        await eventually(lambda: self.manager.connected == connected, timeout=WAIT,
                         interval=0.001, what="connection state")

    def acks(self) -> list[Message]:
        return [m for m in self.hub.messages if m.operation == "response"]

    def to_cloud(self) -> list[Message]:
        return [m for m in self.hub.messages if m.operation != "response"]


@pytest.fixture
async def edge(store: MetaStore) -> AsyncIterator[Edge]:
    journal: list[tuple[str, Message]] = []
    manager = MetaManager(store, remote_query_timeout=1.0)
    edged = Recorder("edged", "edged", journal)
    hub = Recorder("websocket", "hub", journal)
    twin = Recorder("twin", "twin", journal)
    async with Hive() as hive:
        for module in (manager, edged, hub, twin):
            hive.add_module(module)
        yield Edge(hive, manager, store, edged, hub, twin, journal)


def cloud_answers(content: Any) -> Answer:
    return lambda req: response(req, content)


# -- cloud -> edge -----------------------------------------------------------------------------


async def test_cloud_insert_is_stored_then_passed_to_edged_then_acked(edge: Edge) -> None:
    stored_when_forwarded: list[bool] = []

    async def probe(msg: Message) -> None:
        stored_when_forwarded.append(await edge.store.get(msg.resource) is not None)

    edge.edged.probe = probe
    msg = await edge.from_cloud("insert", "default/pod/web", pod("web"))
    await edge.hub.wait_for(1)
    forwarded = (await edge.edged.wait_for(1))[0]

    assert forwarded.operation == "insert" and forwarded.content == pod("web")
    ack = edge.acks()[0]
    assert (ack.parent_msg_id, ack.content, ack.source) == (msg.msg_id, "OK", "edgecontroller")
    assert [name for name, _ in edge.journal] == ["edged", "websocket"]  # Edged, then the ACK
    assert stored_when_forwarded == [True]


async def test_cloud_content_given_as_json_text_is_parsed(edge: Edge) -> None:
    await edge.from_cloud("update", "default/configmap/cfg", json.dumps(configmap("cfg", a="1")))
    forwarded = (await edge.edged.wait_for(1))[0]
    assert forwarded.content["data"] == {"a": "1"}
    assert (await edge.store.get("default/configmap/cfg"))["data"] == {"a": "1"}


async def test_cloud_node_update_is_stored_and_acked_but_not_given_to_edged(edge: Edge) -> None:
    await edge.from_cloud("update", "null/node/edge-1", node())
    await edge.hub.wait_for(1)
    assert await edge.store.get("null/node/edge-1") == node()
    assert edge.edged.messages == []


async def test_policy_and_device_controller_messages_are_routed_as_upstream(edge: Edge) -> None:
    await edge.from_cloud("insert", "default/configmap/p", configmap("p"),
                          source="policycontroller")
    await edge.from_cloud("insert", "default/device/d", {"metadata": {"name": "d"}},
                          source="devicecontroller")
    await edge.hub.wait_for(2)
    assert edge.edged.messages == []
    assert [m.resource for m in await edge.twin.wait_for(1)] == ["default/device/d"]
    assert await edge.store.get("default/configmap/p") is not None


async def test_cloud_pod_delete_with_matching_uid_removes_pod_and_its_patch(edge: Edge) -> None:
    await edge.store.upsert("default/pod/web", pod("web", uid="u1"))
    await edge.store.upsert("default/podpatch/web", '{"status":{}}')
    msg = await edge.from_cloud("delete", "default/pod/web", pod("web", uid="u1"))
    await edge.hub.wait_for(1)
    assert await edge.store.get("default/pod/web") is None
    assert await edge.store.get("default/podpatch/web") is None
    assert [m.operation for m in await edge.edged.wait_for(1)] == ["delete"]
    assert edge.acks()[0].parent_msg_id == msg.msg_id


async def test_stale_cloud_pod_delete_keeps_the_new_pod_and_is_still_acked(edge: Edge) -> None:
    await edge.store.upsert("default/pod/web", pod("web", uid="new"))
    msg = await edge.from_cloud("delete", "default/pod/web", pod("web", uid="old"))
    await edge.hub.wait_for(1)
    assert (await edge.store.get("default/pod/web"))["metadata"]["uid"] == "new"
    assert edge.edged.messages == []
    assert edge.acks()[0].parent_msg_id == msg.msg_id


async def test_cloud_delete_of_an_unknown_pod_still_reaches_edged(edge: Edge) -> None:
    await edge.from_cloud("delete", "default/pod/ghost", pod("ghost"))
    assert [m.resource for m in await edge.edged.wait_for(1)] == ["default/pod/ghost"]
    await edge.hub.wait_for(1)


async def test_messages_on_one_resource_keep_their_order(edge: Edge) -> None:
    for i in range(30):
        if i % 2:
            await edge.from_cloud("delete", "default/pod/web", pod("web", uid="u"))
        else:
            await edge.from_cloud("insert", "default/pod/web", pod("web", uid="u", rv=str(i)))
    await edge.hub.wait_for(30)
    assert [m.operation for m in edge.edged.messages] == ["insert", "delete"] * 15
    assert await edge.store.get("default/pod/web") is None


# -- Edged -> cloud: remote calls ---------------------------------------------------------------


async def test_node_insert_offline_is_refused_with_not_connected(edge: Edge) -> None:
    reply = await edge.from_edged("insert", "null/node/edge-1", node())
    assert (reply.operation, reply.content) == ("error", "not connected")
    assert reply.source == "metamanager"
    assert edge.hub.messages == []


async def test_node_insert_online_goes_to_the_cloud_and_the_node_is_stored(edge: Edge) -> None:
    created = {**node(), "metadata": {**node()["metadata"], "resourceVersion": "5"}}
    edge.hub.answer = cloud_answers({"Object": created, "Err": ""})
    await edge.connect()
    request = new_message(source="edged", group="meta", resource="null/node/edge-1",
                          operation="insert", content=node())
    reply = await edge.hive.send_sync("metamanager", request, timeout=WAIT)

    assert reply.operation == "response"
    assert reply.parent_msg_id == request.msg_id
    assert reply.content == {"Object": created, "Err": ""}
    sent = edge.hub.messages[0]
    assert sent.msg_id != request.msg_id and sent.group == "resource" and sent.sync
    assert await edge.store.get("null/node/edge-1") == created


async def test_lease_update_online_and_offline(edge: Edge) -> None:
    lease = {"metadata": {"name": "edge-1", "namespace": "kube-node-lease"},
             "spec": {"holderIdentity": "edge-1", "renewTime": "2024-01-01T00:00:00.000000Z"}}
    reply = await edge.from_edged("update", "kube-node-lease/lease/edge-1", lease)
    assert (reply.operation, reply.content) == ("error", "not connected")

    edge.hub.answer = cloud_answers(lease)
    await edge.connect()
    reply = await edge.from_edged("update", "kube-node-lease/lease/edge-1", lease)
    assert (reply.operation, reply.content) == ("response", lease)


async def test_cloud_error_and_timeout_become_error_replies(edge: Edge) -> None:
    await edge.connect()
    edge.hub.answer = lambda req: error_message(req, "forbidden: node edge-1")
    reply = await edge.from_edged("insert", "null/node/edge-1", node())
    assert (reply.operation, reply.content) == ("error", "forbidden: node edge-1")

    edge.hub.answer = lambda req: None  # the cloud never answers
    reply = await edge.from_edged("insert", "null/node/edge-1", node())
    assert reply.operation == "error" and "no answer from the cloud" in reply.content


async def test_disconnect_ends_a_pending_remote_call_at_once(edge: Edge) -> None:
    edge.manager.remote_query_timeout = 60.0
    await edge.connect()
    edge.hub.answer = lambda req: None
    pending = asyncio.create_task(edge.from_edged("insert", "null/node/edge-1", node()))
    await edge.hub.wait_for(1)
    await edge.connect(False)
    async with asyncio.timeout(WAIT):
        reply = await pending
    assert (reply.operation, reply.content) == ("error", "connection to the cloud lost")


async def test_requests_waiting_for_the_cloud_are_bounded(store: MetaStore) -> None:
    async with Hive() as hive:
        manager = MetaManager(store, max_remote=1, connected=True)
        hub = Recorder("websocket", "hub", [], answer=lambda req: None)
        for module in (manager, hub, Recorder("edged", "edged", [])):
            hive.add_module(module)
        first = asyncio.create_task(hive.send_sync(
            "metamanager", new_message(source="edged", group="meta", operation="insert",
                                       resource="null/node/edge-1", content=node()),
            timeout=WAIT))
        await hub.wait_for(1)
        second = await hive.send_sync(
            "metamanager", new_message(source="edged", group="meta", operation="update",
                                       resource="kube-node-lease/lease/edge-1", content={}),
            timeout=WAIT)
        assert second.operation == "error" and "too many" in second.content
        first.cancel()


async def test_a_disconnect_is_seen_while_the_cloud_is_slow_and_the_queue_busy(
        store: MetaStore) -> None:
    async with Hive() as hive:
        manager = MetaManager(store, max_in_flight=1, remote_query_timeout=60, connected=True)
        hub = Recorder("websocket", "hub", [], answer=lambda req: None)
        for module in (manager, hub, Recorder("edged", "edged", [])):
            hive.add_module(module)
        pending = asyncio.create_task(hive.send_sync(
            "metamanager", new_message(source="edged", group="meta", operation="insert",
                                       resource="null/node/edge-1", content=node()),
            timeout=WAIT))
        await hub.wait_for(1)
        query = await hive.send_sync(  # handled although the only slot's request still waits
            "metamanager", new_message(source="edged", group="meta", operation="query",
                                       resource="null/pod"), timeout=WAIT)
        assert query.content == []
        await hive.send_to_group("meta", new_message(
            source="edgehub", group="meta", resource="node/connection", operation="connect",
            content=Content.CLOUD_DISCONNECTED))
        async with asyncio.timeout(WAIT):
            reply = await pending
        assert reply.content == "connection to the cloud lost"


# -- Edged -> cloud: status ---------------------------------------------------------------------


async def test_pod_status_patch_is_stored_sent_and_answered_ok(edge: Edge) -> None:
    await edge.store.upsert("default/pod/web", pod("web", uid="u1"))
    patch = json.dumps({"metadata": {"uid": "u1"}, "status": {"phase": "Running"}})
    reply = await edge.from_edged("patch", "default/podpatch/web", patch)
    assert (reply.operation, reply.content) == ("response", "OK")

    sent = (await edge.hub.wait_for(1))[0]
    assert (sent.operation, sent.resource, sent.content) == ("patch", "default/podpatch/web",
                                                             patch)
    assert not sent.sync and sent.group == "resource"
    assert await edge.store.get("default/podpatch/web") == json.loads(patch)
    served, _ = await edge.store.get_object("pods", "default", "web")
    assert served["status"]["phase"] == "Running"


async def test_pod_status_patch_offline_is_still_sent_for_edgehub_to_keep(edge: Edge) -> None:
    await edge.connect(False)
    reply = await edge.from_edged("patch", "default/podpatch/web", '{"status":{}}')
    assert reply.content == "OK"
    assert [m.resource for m in await edge.hub.wait_for(1)] == ["default/podpatch/web"]


async def test_node_status_patch_offline_and_online(edge: Edge) -> None:
    patch = json.dumps({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    reply = await edge.from_edged("patch", "null/nodepatch/edge-1", patch)
    assert (reply.operation, reply.content) == ("response", "OK")
    assert not (await edge.hub.wait_for(1))[0].sync
    assert await edge.store.get("null/nodepatch/edge-1") == json.loads(patch)

    patched = node(ready="True")
    edge.hub.answer = cloud_answers({"Object": patched, "Err": ""})
    await edge.connect()
    reply = await edge.from_edged("patch", "null/nodepatch/edge-1", patch)
    assert reply.content == {"Object": patched, "Err": ""}
    assert edge.hub.messages[1].sync
    assert await edge.store.get("null/node/edge-1") == patched


async def test_edged_pod_delete_and_events_go_to_the_cloud(edge: Edge) -> None:
    reply = await edge.from_edged("delete", "default/pod/mirror", pod("mirror"))
    assert reply.content == "OK"
    reply = await edge.from_edged("insert", "default/event/web.1", {"reason": "Started"})
    assert reply.content == "OK"
    sent = await edge.hub.wait_for(2)
    assert [(m.operation, m.resource) for m in sent] == [
        ("delete", "default/pod/mirror"), ("insert", "default/event/web.1")]


# -- queries ------------------------------------------------------------------------------------


async def test_pod_list_query_returns_every_stored_pod(edge: Edge) -> None:
    for ns, name in (("default", "a"), ("prod", "b")):
        await edge.from_cloud("insert", f"{ns}/pod/{name}", pod(name, ns))
    await edge.hub.wait_for(2)
    await edge.connect(False)
    reply = await edge.from_edged("query", "null/pod")
    assert reply.operation == "response"
    assert sorted(p["metadata"]["name"] for p in reply.content) == ["a", "b"]
    reply = await edge.from_edged("query", "prod/pod")
    assert [p["metadata"]["name"] for p in reply.content] == ["b"]


async def test_configmap_query_offline_is_answered_locally(edge: Edge) -> None:
    await edge.store.upsert("default/configmap/cfg", configmap("cfg", a="1"))
    reply = await edge.from_edged("query", "default/configmap/cfg")
    assert reply.content == [configmap("cfg", a="1")]
    assert edge.hub.messages == []


async def test_configmap_query_online_prefers_the_cloud_and_stores_its_answer(
        edge: Edge) -> None:
    await edge.store.upsert("default/configmap/cfg", configmap("cfg", a="old"))
    edge.hub.answer = cloud_answers(configmap("cfg", a="new"))
    await edge.connect()
    reply = await edge.from_edged("query", "default/configmap/cfg")
    assert reply.content == [configmap("cfg", a="new")]
    assert (await edge.store.get("default/configmap/cfg"))["data"] == {"a": "new"}


async def test_every_cloud_answer_is_acked_as_upstreams_cloud_waits_for(edge: Edge) -> None:
    # Upstream's cloudcore sends its ConfigMap answer as an ACK-required message and holds
    # the node's queue until the ACK (25 s otherwise): issue 8.
    answers: list[Message] = []

    def answer(req: Message) -> Message:
        reply = dataclasses.replace(response(req, configmap("cfg", a="new")),
                                    source="edgecontroller", resourceversion="9")
        answers.append(reply)
        return reply

    edge.hub.answer = answer
    await edge.connect()
    await edge.from_edged("query", "default/configmap/cfg")
    sent = await edge.hub.wait_for(2)
    ack = sent[1]
    assert (ack.operation, ack.parent_msg_id, ack.content) == ("response", answers[0].msg_id,
                                                               "OK")
    assert ack.resource == "default/configmap/cfg"


async def test_a_cloud_update_never_waits_behind_an_edged_query_of_the_same_object(
        edge: Edge) -> None:
    # Upstream's cloudcore holds its answer to the query until the update it sent first is
    # ACKed (one ACK message at a time per node): the update must not queue behind the query.
    edge.manager.remote_query_timeout = 60.0
    pending: list[Message] = []
    edge.hub.answer = lambda req: pending.append(req) or None  # type: ignore[func-returns-value]
    await edge.connect()
    query = asyncio.ensure_future(edge.from_edged("query", "default/configmap/cfg"))
    await edge.hub.wait_for(1)
    update = await edge.from_cloud("update", "default/configmap/cfg",
                                   {**configmap("cfg", a="new"),
                                    "metadata": {"name": "cfg", "namespace": "default",
                                                 "resourceVersion": "12"}})
    acks = await edge.hub.wait_for(2)
    assert (acks[1].operation, acks[1].parent_msg_id) == ("response", update.msg_id)
    # Now the cloud answers the query, with the version it had before the update.
    older = {**configmap("cfg", a="old"), "metadata": {"name": "cfg", "namespace": "default",
                                                       "resourceVersion": "11"}}
    assert edge.hive.respond(dataclasses.replace(response(pending[0], older),
                                                 source="edgecontroller"))
    reply = await query
    assert reply.content[0]["data"] == {"a": "new"}  # the newer version wins
    assert (await edge.store.get("default/configmap/cfg"))["data"] == {"a": "new"}


async def test_secret_query_falls_back_to_the_local_row_when_the_cloud_fails(
        edge: Edge) -> None:
    secret = {"metadata": {"name": "s", "namespace": "default"}, "data": {"k": "dg=="}}
    await edge.store.upsert("default/secret/s", secret)
    edge.hub.answer = lambda req: error_message(req, "cloud is busy")
    await edge.connect()
    reply = await edge.from_edged("query", "default/secret/s")
    assert reply.content == [secret]


async def test_missing_row_is_asked_of_the_cloud_when_online_else_an_error(
        edge: Edge) -> None:
    reply = await edge.from_edged("query", "default/pod/nope")
    assert reply.operation == "error" and "not found" in reply.content

    edge.hub.answer = cloud_answers(pod("nope"))
    await edge.connect()
    reply = await edge.from_edged("query", "default/pod/nope")
    assert reply.content == [pod("nope")]


async def test_async_query_reply_goes_to_the_edged_module(edge: Edge) -> None:
    await edge.store.upsert("default/configmap/cfg", configmap("cfg"))
    msg = new_message(source="edged", group="meta", resource="default/configmap/cfg",
                      operation="query")
    await edge.hive.send("metamanager", msg)
    reply = (await edge.edged.wait_for(1))[0]
    assert (reply.operation, reply.parent_msg_id) == ("response", msg.msg_id)


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("operation", "resource"), [
    ("insert", "default/gadget/x"),
    ("frobnicate", "default/pod/x"),
])
async def test_a_cloud_message_this_edge_does_not_handle_is_acked_and_changes_nothing(
        edge: Edge, operation: str, resource: str) -> None:
    # Upstream's cloudcore waits for the ACK of each message before the node's next one: an
    # error instead would stall the node's queue (issue 8).
    msg = await edge.from_cloud(operation, resource, {"metadata": {"name": "x"}})
    ack = (await edge.hub.wait_for(1))[0]
    assert (ack.operation, ack.parent_msg_id, ack.content) == ("response", msg.msg_id, "OK")
    assert edge.store.revision == 0
    assert edge.edged.messages == []


@pytest.mark.parametrize(("operation", "resource", "content", "reason"), [
    ("insert", "default/pod", {}, "no name"),
    ("insert", "default//x", {}, "empty token"),
    ("insert", "a/b/c/d", {}, "is not"),
    ("insert", "default/pod/x", "{not json", "not JSON"),
    ("insert", "default/pod/x", ["a", "list"], "must be a JSON object"),
])
async def test_bad_cloud_input_gets_an_error_and_writes_nothing(
        edge: Edge, operation: str, resource: str, content: Any, reason: str) -> None:
    msg = await edge.from_cloud(operation, resource, content)
    error = (await edge.hub.wait_for(1))[0]
    assert (error.operation, error.parent_msg_id) == ("error", msg.msg_id)
    assert reason in error.content
    assert edge.store.revision == 0
    assert edge.edged.messages == []


@pytest.mark.parametrize(("operation", "resource", "content", "reason"), [
    ("patch", "default/podpatch/web", "{bad", "not JSON"),
    ("patch", "default/podpatch/web", '{"status": "Running"}', "must be a JSON object"),
    ("patch", "null/nodepatch/edge-1", 42, "must be a JSON object"),
    ("insert", "null/node/edge-1", "[1, 2]", "must be a JSON object"),
    ("insert", "default/configmap/x", {}, "edged cannot insert"),
    ("query", "default/unknowntype/x", None, "unknown resource type"),
    ("delete", "default/secret/x", None, "edged cannot delete"),
])
async def test_bad_edged_input_gets_an_error_and_writes_nothing(
        edge: Edge, operation: str, resource: str, content: Any, reason: str) -> None:
    reply = await edge.from_edged(operation, resource, content)
    assert reply.operation == "error" and reason in reply.content
    assert edge.store.revision == 0
    assert edge.hub.messages == []


async def test_a_failure_inside_is_answered_and_the_module_keeps_going(
        edge: Edge, monkeypatch: pytest.MonkeyPatch) -> None:
    original = edge.store.upsert
    calls = 0

    async def flaky(*args: Any, **kwargs: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("disk on fire")
        return await original(*args, **kwargs)

    monkeypatch.setattr(edge.store, "upsert", flaky)
    await edge.from_cloud("insert", "default/pod/a", pod("a"))
    error = (await edge.hub.wait_for(1))[0]
    assert error.operation == "error" and "disk on fire" in error.content

    await edge.from_cloud("insert", "default/pod/a", pod("a"))
    ack = (await edge.hub.wait_for(2))[1]
    assert ack.content == "OK"
    assert await edge.store.get("default/pod/a") is not None


async def test_late_cloud_replies_are_absorbed(edge: Edge) -> None:
    request = new_message(source="edged", group="resource", resource="null/nodepatch/edge-1",
                          operation="patch", content="{}")
    await edge.hive.send("metamanager", response(request, {"Object": node(), "Err": ""}))
    await edge.hive.send("metamanager", error_message(request, "gone"))
    await edge.hive.send("metamanager", response(request, "not an object"))
    await edge.from_cloud("insert", "default/pod/after", pod("after"))
    await edge.hub.wait_for(1)
    assert edge.acks()[0].content == "OK"  # nothing was answered to the replies
    assert await edge.store.get("null/node/edge-1") == node()


# -- autonomy and wiring ------------------------------------------------------------------------


async def test_after_a_restart_offline_edged_gets_its_pods_and_configmaps_back(
        tmp_path: Any) -> None:
    path = tmp_path / "edgecore.db"
    async with await MetaStore.open(path) as store, Hive() as hive:
        hub = Recorder("websocket", "hub", [])
        for module in (MetaManager(store), Recorder("edged", "edged", []), hub):
            hive.add_module(module)
        for resource, obj in (("default/pod/web", pod("web")),
                              ("default/configmap/cfg", configmap("cfg", a="1"))):
            await hive.send("metamanager", new_message(
                source="edgecontroller", group="resource", resource=resource,
                operation="insert", content=obj))
        await hub.wait_for(2)  # both ACKed, so both stored

    async with await MetaStore.open(path) as store, Hive() as hive:
        manager = MetaManager(store)  # starts offline: no cloud_connected event yet
        for module in (manager, Recorder("edged", "edged", [])):
            hive.add_module(module)
        query = new_message(source="edged", group="meta", resource="null/pod",
                            operation="query")
        pods = await hive.send_sync("metamanager", query, timeout=WAIT)
        assert [p["metadata"]["uid"] for p in pods.content] == ["uid-web"]
        query = new_message(source="edged", group="meta", resource="default/configmap/cfg",
                            operation="query")
        cfg = await hive.send_sync("metamanager", query, timeout=WAIT)
        assert cfg.content == [configmap("cfg", a="1")]


async def test_metaserver_runs_with_the_module(store: MetaStore) -> None:
    server = MetaServer(store, port=0)
    async with Hive() as hive:
        hive.add_module(MetaManager(store, metaserver=server))
        await eventually(lambda: server.port != 0, timeout=WAIT, what="MetaServer bound")
        async with aiohttp.ClientSession() as http, http.get(f"{server.url}/healthz") as resp:
            assert await resp.text() == "ok"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(f"{server.url}/healthz")


async def test_token_requests_of_one_serviceaccount_do_not_wait_for_each_other(
        edge: Edge) -> None:
    await edge.connect()
    edge.hub.answer = lambda msg: None  # the cloud holds its answers back
    asks = [asyncio.create_task(edge.hive.send_sync("metamanager", new_message(
        source="edged", group="meta", resource="default/serviceaccounttoken/default",
        operation="query", content={"spec": {"boundObjectRef": {"kind": "Pod",
                                                                 "name": f"p{i}"}}}),
        timeout=WAIT)) for i in range(3)]
    try:
        sent = await edge.hub.wait_for(3)  # all three asked at once, none answered yet
        assert {m.content["spec"]["boundObjectRef"]["name"] for m in sent[-3:]} == {
            "p0", "p1", "p2"}
    finally:
        for t in asks:
            t.cancel()
        await asyncio.gather(*asks, return_exceptions=True)
