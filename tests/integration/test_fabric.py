"""The message fabric on loopback with real TLS: a real CloudHub, real EdgeHubs.

Covered: ACK stops resends; un-ACKed messages are resent then requeued; a newer
resourceVersion supersedes a pending one; keepalive timeout ends the session; identity checks;
EdgeHub reconnects after a cloudcore restart; messages produced while disconnected arrive in
order; bad frames close only the offending connection.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp
import pytest

from pykubeedge.core import codec
from pykubeedge.core.message import new_message
from pykubeedge.transport.tls import client_context
from tests.conftest import eventually
from tests.integration.hubharness import PKI, CloudSide, EdgeSide, pod_message

pytestmark = pytest.mark.integration

HEADERS = {"project_id": "e632aba927ea4ac2b575ec1603d56f10", "ConnectionUse": "msg"}


@pytest.fixture(scope="module")
def pki() -> PKI:
    return PKI()


async def raw_connect(pki: PKI, port: int, node: str, *, cert_node: str | None = None,
                      ctx: ssl.SSLContext | None = None):
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(
        f"wss://127.0.0.1:{port}/e632aba927ea4ac2b575ec1603d56f10/{node}/events",
        headers={**HEADERS, "node_id": node}, ssl=ctx or pki.client_ssl(cert_node or node))
    return session, ws


async def test_message_is_acked_and_not_resent(pki: PKI, tmp_path: Path) -> None:
    async with CloudSide(pki, resend_interval=0.2) as cloud, \
            EdgeSide(pki, "edge-ack", cloud.port, tmp_path) as edge:
        await eventually(lambda: "edge-ack" in cloud.hub.sessions, what="edge connected")
        msg = pod_message("edge-ack", "nginx", "10", op="insert")
        await cloud.send_down("edge-ack", msg)
        await eventually(lambda: len(cloud.acks) == 1, what="ACK")
        assert cloud.acks[0][1].msg_id == msg.msg_id
        got = edge.meta.of("insert")
        assert [m.resource for m in got] == ["default/pod/nginx"]  # trimmed for the edge
        await asyncio.sleep(0.7)  # > 3 resend intervals: an ACKed message stays ACKed
        assert len(edge.meta.of("insert")) == 1
        assert cloud.hub.queues["edge-ack"].inflight == 0
        # The connection event reached the controllers.
        assert [m.operation for m in cloud.controller.messages][:1] == ["connected"]


async def test_unacked_message_is_resent_then_requeued(pki: PKI, tmp_path: Path) -> None:
    async with CloudSide(pki, resend_interval=0.1) as cloud, \
            EdgeSide(pki, "edge-slow", cloud.port, tmp_path) as edge:
        edge.meta.ack = False
        await eventually(lambda: "edge-slow" in cloud.hub.sessions, what="edge connected")
        await cloud.send_down("edge-slow", pod_message("edge-slow", "p", "1"))
        # First send + 4 resends, then a requeue with a 1 s backoff and a fresh round.
        await eventually(lambda: len(edge.meta.of("update")) >= 5, what="4 resends")
        q = cloud.hub.queues["edge-slow"]
        await eventually(lambda: q.inflight == 0, what="requeue after the resends")
        assert len(q) == 1  # kept, not dropped
        await eventually(lambda: len(edge.meta.of("update")) >= 6, what="send after the backoff")
        assert len({m.msg_id for m in edge.meta.of("update")}) == 1  # the same message again
        edge.meta.ack = True
        await eventually(lambda: len(cloud.acks) == 1 or len(edge.meta.of("update")) > 20,
                         what="ACK once the edge answers")
        assert len(cloud.acks) == 1


async def test_newer_version_supersedes_pending_one(pki: PKI, tmp_path: Path) -> None:
    async with CloudSide(pki) as cloud:
        # The node is not connected yet: both versions wait in its queue.
        await cloud.send_down("edge-sup", pod_message("edge-sup", "p", "5"))
        await cloud.send_down("edge-sup", pod_message("edge-sup", "p", "7"))
        await cloud.send_down("edge-sup", pod_message("edge-sup", "p", "6"))  # stale
        async with EdgeSide(pki, "edge-sup", cloud.port, tmp_path) as edge:
            await eventually(lambda: len(cloud.acks) == 1, what="ACK")
            await asyncio.sleep(0.2)
            assert [m.resourceversion for m in edge.meta.of("update")] == ["7"]


async def test_keepalive_timeout_ends_the_session(pki: PKI) -> None:
    async with CloudSide(pki, keepalive=0.5) as cloud:
        session, ws = await raw_connect(pki, cloud.port, "edge-quiet")
        try:
            frame = await asyncio.wait_for(ws.receive(), 10)
            assert frame.type == aiohttp.WSMsgType.CLOSE
            assert frame.extra == "keepalive timeout"
            await eventually(lambda: "edge-quiet" not in cloud.hub.sessions, what="session end")
            assert [m.operation for m in cloud.controller.messages] == ["connected",
                                                                        "disconnected"]
        finally:
            await session.close()


async def test_keepalives_keep_the_session(pki: PKI, tmp_path: Path) -> None:
    async with CloudSide(pki, keepalive=0.6) as cloud, \
            EdgeSide(pki, "edge-alive", cloud.port, tmp_path, heartbeat=0.2) as edge:
        await eventually(lambda: "edge-alive" in cloud.hub.sessions, what="connected")
        await asyncio.sleep(1.5)
        assert "edge-alive" in cloud.hub.sessions
        assert edge.hub is not None and edge.hub.connects == 1


async def test_identity_mismatch_and_foreign_ca_are_refused(pki: PKI) -> None:
    async with CloudSide(pki) as cloud:
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await raw_connect(pki, cloud.port, "edge-b", cert_node="edge-a")
        assert exc.value.status == 403
        other = PKI()  # a different CA: the TLS handshake itself fails
        pair = other.node_pair("edge-a")
        ctx = client_context(pki.ca.cert_pem(), pair.cert_pem(), pair.key_pem())
        with pytest.raises(aiohttp.ClientError):
            await raw_connect(pki, cloud.port, "edge-a", ctx=ctx)
        ctx = client_context(pki.ca.cert_pem())  # no client certificate at all
        with pytest.raises(aiohttp.ClientError):
            await raw_connect(pki, cloud.port, "edge-a", ctx=ctx)
        assert cloud.hub.sessions == {}
        assert cloud.controller.messages == []


async def test_edgehub_reconnects_and_delivers_what_was_kept(pki: PKI, tmp_path: Path) -> None:
    cloud = CloudSide(pki)
    await cloud.__aenter__()
    port = cloud.port
    async with EdgeSide(pki, "edge-re", port, tmp_path) as edge:
        assert edge.hub is not None
        await eventually(lambda: "edge-re" in cloud.hub.sessions, what="connected")
        await cloud.__aexit__(None, None, None)  # cloudcore goes down
        await eventually(lambda: not edge.hub.connected.is_set(), what="edge sees the loss")
        for i in range(50):  # and the edge keeps producing status
            await edge.send_up(new_message(source="edged", group="meta", operation="update",
                                           resource=f"default/podstatus/p{i}",
                                           content={"seq": i}))
        await eventually(lambda: len(edge.hub.outbox) == 50, what="50 kept in the outbox")
        async with CloudSide(pki, port=port) as cloud2:  # cloudcore is back
            await eventually(lambda: len(cloud2.controller.of("update")) == 50, timeout=30,
                             what="all 50 delivered after the reconnect")
            updates = cloud2.controller.of("update")
            assert [m.content["seq"] for m in updates] == list(range(50))  # none lost, in order
            assert updates[0].resource == "node/edge-re/default/podstatus/p0"
            assert len(edge.hub.outbox) == 0
            assert edge.hub.connects == 2


async def test_second_connection_replaces_the_first(pki: PKI) -> None:
    async with CloudSide(pki) as cloud:
        s1, ws1 = await raw_connect(pki, cloud.port, "edge-dup")
        s2, ws2 = await raw_connect(pki, cloud.port, "edge-dup")
        try:
            frame = await asyncio.wait_for(ws1.receive(), 10)
            assert frame.type == aiohttp.WSMsgType.CLOSE
            assert frame.extra == "replaced by a new connection"
            await eventually(lambda: len(cloud.hub.sessions) == 1, what="one session")
            assert not ws2.closed
        finally:
            await s1.close()
            await s2.close()


async def test_node_limit_refuses_the_extra_node(pki: PKI) -> None:
    async with CloudSide(pki, node_limit=1) as cloud:
        s1, _ws1 = await raw_connect(pki, cloud.port, "edge-one")
        try:
            with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
                await raw_connect(pki, cloud.port, "edge-two")
            assert exc.value.status == 503
            assert list(cloud.hub.sessions) == ["edge-one"]
            s3, _ws3 = await raw_connect(pki, cloud.port, "edge-one")  # a reconnect is fine
            await s3.close()
        finally:
            await s1.close()


@pytest.mark.parametrize(("frame", "code", "reason"), [
    ("not json at all", {1007}, "malformed message"),
    ('{"header": {"msg_id": "x", "timestamp": "soon"}, "route": {}}', {1007}, "timestamp"),
    ('[1, 2, 3]', {1007}, "malformed message"),
    (b"\x00\x01binary", {1003}, "binary frames are not supported"),
    # The server sends 1009 at once; closing with the rest of the frame unread may reset the
    # TCP connection first, and the client then sees 1006.
    ("x" * (1024 * 1024 + 10), {1009, 1006}, ""),
])
async def test_bad_frames_close_only_the_offender(pki: PKI, tmp_path: Path, frame: str | bytes,
                                                  code: set[int], reason: str) -> None:
    async with CloudSide(pki) as cloud, \
            EdgeSide(pki, "edge-good", cloud.port, tmp_path) as good:
        await eventually(lambda: "edge-good" in cloud.hub.sessions, what="good edge connected")
        session, ws = await raw_connect(pki, cloud.port, "edge-bad")
        try:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
            closed = await asyncio.wait_for(ws.receive(), 10)
            assert closed.type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code in code
            assert reason in (closed.extra or "")
        finally:
            await session.close()
        await eventually(lambda: "edge-bad" not in cloud.hub.sessions, what="offender gone")
        # Nothing from the bad frames reached a controller.
        assert [m for m in cloud.controller.messages if m.operation not in
                ("connected", "disconnected")] == []
        # Everyone else is still served.
        await cloud.send_down("edge-good", pod_message("edge-good", "p", "1"))
        await eventually(lambda: len(cloud.acks) == 1, what="the good edge still ACKs")
        assert "edge-good" in cloud.hub.sessions and good.hub is not None


async def test_half_written_frame_then_hangup(pki: PKI, tmp_path: Path) -> None:
    """A peer that dies mid-frame (TCP closed after half a frame) ends only its own session."""
    async with CloudSide(pki) as cloud, \
            EdgeSide(pki, "edge-ok", cloud.port, tmp_path):
        await eventually(lambda: "edge-ok" in cloud.hub.sessions, what="connected")
        session, ws = await raw_connect(pki, cloud.port, "edge-cut")
        await eventually(lambda: "edge-cut" in cloud.hub.sessions, what="cut connected")
        transport = ws._response.connection.transport  # type: ignore[union-attr]
        # A text frame header announcing 100 masked bytes, then only 3 of them.
        transport.write(bytes([0x81, 0x80 | 100]) + b"\x01\x02\x03\x04" + b"abc")
        transport.close()
        await session.close()
        await eventually(lambda: "edge-cut" not in cloud.hub.sessions, what="half frame ends it")
        await cloud.send_down("edge-ok", pod_message("edge-ok", "p", "1"))
        await eventually(lambda: len(cloud.acks) == 1, what="others still served")


async def test_unknown_certificate_authority_at_edge_is_refused(pki: PKI, tmp_path: Path) -> None:
    """The edge verifies the server too: a CloudHub with a certificate from another CA fails."""
    rogue = PKI()
    async with CloudSide(rogue) as cloud, \
            EdgeSide(pki, "edge-trust", cloud.port, tmp_path) as edge:
        await asyncio.sleep(0.5)
        assert edge.hub is not None and edge.hub.connects == 0
        assert cloud.hub.sessions == {}


async def test_a_taken_port_stops_the_hub_with_the_reason(pki: PKI) -> None:
    """CloudHub does not restart forever on a port it cannot bind: the hive is told."""
    import socket

    from pykubeedge.beehive import Hive
    from pykubeedge.cloud.cloudhub.hub import CloudHub

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stopped: list[tuple[str, BaseException | None]] = []
        hub = CloudHub(pki.server_ssl(), host="127.0.0.1", port=port)
        async with Hive(on_module_stopped=lambda n, e: stopped.append((n, e))) as hive:
            hive.add_module(hub)
            await eventually(lambda: stopped, what="the hub reported as stopped")
        assert stopped[0][0] == "cloudhub" and isinstance(stopped[0][1], OSError)
        assert not hub.ready.is_set()


async def test_node_delete_reaches_the_edge_then_ends_its_session(pki: PKI,
                                                                  tmp_path: Path) -> None:
    async with CloudSide(pki) as cloud, EdgeSide(pki, "edge-del", cloud.port, tmp_path) as edge:
        await eventually(lambda: "edge-del" in cloud.hub.sessions, what="connected")
        await cloud.send_down("edge-del", new_message(
            source="edgecontroller", group="resource", operation="delete",
            resource="node/edge-del/null/node/edge-del",
            content={"metadata": {"name": "edge-del", "uid": "u-node"}}))
        await eventually(lambda: edge.meta.of("delete"), what="the edge told")
        assert edge.hub is not None
        # The session was ended (the edge, whose certificate is still valid, dials again).
        await eventually(lambda: edge.hub.connects >= 2, what="session ended by the delete")


async def test_edges_get_the_cluster_ca_from_cloudhub(pki: PKI) -> None:
    async with CloudSide(pki) as cloud:
        cloud.hub.cluster_ca = b"-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n"
        session, ws = await raw_connect(pki, cloud.port, "edge-ca")
        try:
            query = new_message(source="metamanager", group="resource", operation="query",
                                resource="k8s/ca.crt")
            await ws.send_str(codec.encode(query).decode())
            frame = await asyncio.wait_for(ws.receive(), 10)
            reply = codec.decode(frame.data)
            assert reply.parent_msg_id == query.msg_id and reply.operation == "response"
            assert reply.content.startswith("-----BEGIN CERTIFICATE-----")
        finally:
            await session.close()
