"""CloudStream, EdgeStream and Edged's kubelet server in one process over real TLS sockets on
loopback, with the fake runtime and an in-memory API server: routing, authentication and
authorization, node isolation, bad input, and that an aborted stream frees everything.

The same paths with the real control plane, containerd and kubectl: tests/e2e/test_streams.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType

from pykubeedge.cloud.cloudstream import CloudStream, Fallback, tls_contexts
from pykubeedge.cloud.cloudstream.authz import Attributes, Identity
from pykubeedge.core.config import CloudStream as CloudStreamConfig
from pykubeedge.core.errors import StreamError
from pykubeedge.core.message import Message
from pykubeedge.core.stream import Frame, MessageType, encode_frame
from pykubeedge.devcluster.process import free_port
from pykubeedge.edge.edged import ContainerSpec, FakeRuntime, SandboxConfig
from pykubeedge.edge.edged.server import KubeletServer
from pykubeedge.edge.edgestream import EdgeStream, EdgeStreamSettings
from pykubeedge.kube.resources import NODES, PODS
from pykubeedge.transport import certs, tls
from tests.unit.cloud.fakekube import FakeKube

pytestmark = pytest.mark.timeout(120)
API_SERVER = "kube-apiserver-kubelet-client"


class Ctx:
    """What a module's ``start`` gets; nothing is ever sent to these modules."""

    async def receive(self, module: str) -> Message:
        await asyncio.Event().wait()
        raise AssertionError


class OnlyTheAPIServer:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str, str]] = []

    async def allowed(self, who: Identity, attrs: Attributes, node: str) -> tuple[bool, str]:
        self.asked.append((who.user, attrs.subresource, node))
        return who.user == API_SERVER, "" if who.user == API_SERVER else "no RBAC rule"


@dataclass
class PKI:
    dir: Path
    hub_ca: certs.KeyPair
    hub_server: certs.KeyPair
    stream_ca: certs.KeyPair

    def write(self, name: str, pair: certs.KeyPair) -> tuple[Path, Path]:
        cert, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        cert.write_bytes(pair.cert_pem())
        key.write_bytes(pair.key_pem())
        return cert, key

    def node(self, name: str) -> tuple[Path, Path, Path]:
        cert, key = self.write(name, certs.issue(self.hub_ca, f"system:node:{name}",
                                                 orgs=["system:nodes"], client=True))
        ca = self.dir / "hub-ca.crt"
        ca.write_bytes(self.hub_ca.cert_pem())
        return ca, cert, key

    def client(self, user: str, ca: certs.KeyPair | None = None) -> ssl.SSLContext:
        pair = certs.issue(ca or self.stream_ca, user, orgs=["system:masters"], client=True)
        ctx = tls.client_context(self.hub_ca.cert_pem(), pair.cert_pem(), pair.key_pem())
        ctx.check_hostname = False  # the API server does not check kubelets without a CA flag
        return ctx


@dataclass
class Edge:
    name: str
    ip: str
    runtime: FakeRuntime
    server: KubeletServer
    stream: EdgeStream
    containers: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    pki: PKI
    kube: FakeKube
    cloud: CloudStream
    authz: OnlyTheAPIServer
    edges: dict[str, Edge]
    tasks: list[asyncio.Task[Any]]
    start_edge: Callable[..., Any]

    @property
    def stream_port(self) -> int:
        return self.cloud.stream_server.port

    def url(self, path: str, address: str = "127.0.0.1") -> str:
        return f"https://{address}:{self.stream_port}{path}"


def node_obj(name: str, ip: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"node-role.kubernetes.io/edge": ""}},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": 10350}}}}


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    hub_ca = certs.new_ca("KubeEdge")
    pki = PKI(tmp_path, hub_ca, certs.issue(hub_ca, "cloudcore", ips=["127.0.0.1"], server=True),
              certs.new_ca("stream-ca"))
    kube = FakeKube()
    for name, ip in (("edge-a", "127.0.0.2"), ("edge-b", "127.0.0.3")):
        await kube.create(NODES, node_obj(name, ip))
    for pod, node in (("demo", "edge-a"), ("other", "edge-b")):
        await kube.create(PODS, {"metadata": {"name": pod, "namespace": "default"},
                                 "spec": {"nodeName": node}}, namespace="default")
    missing = str(tmp_path / "absent")
    cfg = CloudStreamConfig(enable=True, tunnelAddress="127.0.0.1", tunnelPort=free_port(),
                            streamAddress="127.0.0.1", streamPort=free_port(),
                            tlsTunnelCAFile=missing, tlsTunnelCertFile=missing,
                            tlsTunnelPrivateKeyFile=missing, tlsStreamCAFile=missing,
                            tlsStreamCertFile=missing, tlsStreamPrivateKeyFile=missing)
    fallback = Fallback(hub_ca.cert_pem(), pki.hub_server.cert_pem(), pki.hub_server.key_pem(),
                        pki.stream_ca.cert_pem())
    authz = OnlyTheAPIServer()
    cloud = CloudStream(kube, cfg, tls_contexts(cfg, fallback), authorizer=authz)  # type: ignore[arg-type]
    tasks = [asyncio.create_task(cloud.start(Ctx()))]  # type: ignore[arg-type]
    await asyncio.wait_for(cloud.ready.wait(), 10)
    edges: dict[str, Edge] = {}

    async def start_edge(name: str, ip: str, *, cert_of: str | None = None) -> Edge:
        runtime = FakeRuntime()
        runtime.pod_logs_dir = tmp_path / name / "logs"
        sandbox = await runtime.run_pod_sandbox(SandboxConfig(uid=f"u-{name}", name=(
            "demo" if name == "edge-a" else "other"), namespace="default"))
        web = await runtime.start_container(sandbox.id, ContainerSpec(name="web",
                                                                      image="busybox"))
        server = KubeletServer(runtime, node_name=name, port=0, follow_poll=0.02)
        await server.start()
        ca, cert, key = pki.node(cert_of or name)
        settings = EdgeStreamSettings(node_name=name, node_ip=ip,
                                      server=f"127.0.0.1:{cfg.tunnelPort}", ca_file=ca,
                                      cert_file=cert, key_file=key,
                                      local_server=f"127.0.0.1:{server.port}",
                                      reconnect_initial=0.05, reconnect_cap=0.2)
        stream = EdgeStream(settings)
        tasks.append(asyncio.create_task(stream.start(Ctx())))  # type: ignore[arg-type]
        edge = Edge(name, ip, runtime, server, stream, {"web": web})
        edges[name] = edge
        return edge

    a = await start_edge("edge-a", "127.0.0.2")
    await asyncio.wait_for(a.stream.connected.wait(), 10)
    for _ in range(200):  # the node directory has seen the nodes
        if cloud.directory.node_for("127.0.0.2"):
            break
        await asyncio.sleep(0.02)
    yield World(pki, kube, cloud, authz, edges, tasks, start_edge)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for edge in edges.values():
        await edge.server.close()
        await edge.runtime.close()


async def get(world: World, path: str, *, user: str = API_SERVER, address: str = "127.0.0.1",
              ctx: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    ssl_ctx = ctx or world.pki.client(user)
    async with aiohttp.ClientSession() as http, http.get(world.url(path, address),
                                                         ssl=ssl_ctx) as resp:
        return resp.status, await resp.read()


async def wait_for(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        await asyncio.sleep(0.02)


async def test_logs_go_through_the_pods_nodes_tunnel(world: World) -> None:
    edge = world.edges["edge-a"]
    await edge.runtime.write_log(edge.containers["web"], "first\nsecond")
    status, body = await get(world, "/containerLogs/default/demo/web?tailLines=1")
    assert (status, body) == (200, b"second\n")
    assert world.authz.asked[-1] == (API_SERVER, "proxy", "edge-a")
    # the edge's own error comes back with its status, not as log text
    status, body = await get(world, "/containerLogs/default/demo/nope")
    assert (status, body) == (404, b'container "nope" not found in pod "demo"\n')


async def test_the_node_is_pointed_at_the_stream_port(world: World) -> None:
    await wait_for(lambda: world.kube.objects["nodes"]["edge-a"]["status"]["daemonEndpoints"]
                   ["kubeletEndpoint"]["Port"] == world.stream_port, "the port patch")
    assert world.kube.objects["nodes"]["edge-b"]["status"]["daemonEndpoints"][
        "kubeletEndpoint"]["Port"] == 10350  # no tunnel: left alone


async def test_paths_without_a_pod_are_routed_by_the_address_dialled(world: World) -> None:
    await wait_for(lambda: "127.0.0.2" in world.cloud.stream_server._listeners, "a listener")
    status, body = await get(world, "/metrics/resource", address="127.0.0.2")
    assert status == 200 and b'container="web"' in body and b'pod="demo"' in body
    status, body = await get(world, "/healthz", address="127.0.0.2")
    assert (status, body) == (200, b"ok")
    summary = orjson.loads((await get(world, "/stats/summary", address="127.0.0.2"))[1])
    assert summary["node"]["nodeName"] == "edge-a"
    status, body = await get(world, "/metrics/resource", address="127.0.0.3")
    assert status == 503 and b"node edge-b has no stream tunnel" in body
    status, body = await get(world, "/metrics/resource")  # an address of no node
    assert status == 404 and b"no edge node has the address" in body


async def test_exec_is_an_upgrade_relayed_byte_for_byte(world: World) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", world.stream_port,
                                                   ssl=world.pki.client(API_SERVER))
    writer.write(b"POST /exec/default/demo/web?command=echo&command=hello&output=1 HTTP/1.1\r\n"
                 b"Host: 127.0.0.2\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols")
    assert await asyncio.wait_for(reader.read(), 10) == b"hello\n"
    writer.close()
    assert world.authz.asked[-1] == (API_SERVER, "proxy", "edge-a")


async def test_only_the_api_servers_identity_is_served(world: World) -> None:
    status, body = await get(world, "/containerLogs/default/demo/web", user="mallory")
    assert status == 403
    assert body == (b"Forbidden (user=mallory, verb=get, resource=nodes, "
                    b"subresource(s)=[proxy])\n")
    other_ca = certs.new_ca("not-the-stream-ca")
    with pytest.raises(aiohttp.ClientError):
        await get(world, "/healthz", ctx=world.pki.client(API_SERVER, other_ca))
    no_cert = tls.client_context(world.pki.hub_ca.cert_pem())
    no_cert.check_hostname = False
    with pytest.raises(aiohttp.ClientError):
        await get(world, "/healthz", ctx=no_cert)
    assert world.cloud.stream_server.counters["forbidden"] == 1


async def test_a_tunnel_carries_only_its_own_nodes_requests(world: World) -> None:
    # edge-b's name with edge-a's certificate: refused at the handshake
    impostor = await world.start_edge("edge-b", "127.0.0.3", cert_of="edge-a")
    await wait_for(lambda: world.cloud.tunnel_server.refused >= 1, "the refusal")
    assert not impostor.stream.connected.is_set()
    assert "edge-b" not in world.cloud.sessions.tunnels
    impostor.stream.s = EdgeStreamSettings(  # its own certificate now
        **{**impostor.stream.s.__dict__,
           **dict(zip(("ca_file", "cert_file", "key_file"), world.pki.node("edge-b"),
                      strict=True))})
    await asyncio.wait_for(impostor.stream.connected.wait(), 10)
    status, body = await get(world, "/containerLogs/default/other/web")
    assert status == 200 and b"fake container web started" in body
    served_b = impostor.stream.served
    await get(world, "/containerLogs/default/demo/web")  # edge-a's pod: edge-a's tunnel
    assert impostor.stream.served == served_b
    # a request naming edge-a's pod at edge-b's address is not edge-b's to answer
    await wait_for(lambda: "127.0.0.3" in world.cloud.stream_server._listeners, "a listener")
    status, _ = await get(world, "/containerLogs/default/demo/web", address="127.0.0.3")
    assert status == 404 and impostor.stream.served == served_b


async def test_bad_frames_from_an_edge_leave_the_tunnel_and_cloudcore_serving(
        world: World) -> None:
    tunnel = world.cloud.sessions.get("edge-a")
    assert tunnel is not None
    ws = world.edges["edge-a"].stream.tunnel.ws  # type: ignore[union-attr]
    for junk in (b"\xff" * 12, bytes.fromhex("0909"),
                 encode_frame(Frame(12345, MessageType.DATA, b"x" * (2 << 20))),
                 encode_frame(Frame(1, MessageType.LOGS_CONNECT, b"{}"))):
        await ws.send_frame(junk, WSMsgType.TEXT)
    await wait_for(lambda: tunnel.stats.bad_frames >= 3, "the bad frames counted")
    assert not tunnel.closed
    status, _ = await get(world, "/containerLogs/default/demo/web")
    assert status == 200


async def test_unknown_pods_and_paths_get_clear_errors(world: World) -> None:
    assert await get(world, "/containerLogs/default/ghost/web") == (
        404, b'pod "ghost" does not exist\n')
    assert (await get(world, "/nope"))[0] == 404
    status, body = await get(world, "/exec/default/demo/web?command=ls&output=1")
    assert (status, body) == (400, b"Upgrade request required\n")


async def test_a_client_that_hangs_up_frees_every_stream_on_both_sides(world: World) -> None:
    edge = world.edges["edge-a"]
    readers = []
    for _ in range(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", world.stream_port,
                                                       ssl=world.pki.client(API_SERVER))
        writer.write(b"GET /containerLogs/default/demo/web?follow=true HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        assert b"200 OK" in await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        readers.append((reader, writer))
    assert world.cloud.stream_server.open_streams == 5
    await wait_for(lambda: edge.server.open_logs == 5, "five followers on the edge")
    for _, writer in readers:
        writer.close()
    tunnel = edge.stream.tunnel
    assert tunnel is not None
    await wait_for(lambda: world.cloud.stream_server.open_streams == 0
                   and not tunnel.streams and not tunnel._handlers
                   and edge.server.open_logs == 0 and edge.server.http.connections == 0,
                   "everything freed")
    cloud_tunnel = world.cloud.sessions.get("edge-a")
    assert cloud_tunnel is not None and not cloud_tunnel.streams


async def test_a_node_whose_tunnel_reconnects_is_served_again(world: World) -> None:
    edge = world.edges["edge-a"]
    old = world.cloud.sessions.get("edge-a")
    assert old is not None
    await old.close("test: network cut")
    await wait_for(lambda: world.cloud.sessions.get("edge-a") not in (None, old),
                   "a new tunnel")
    with contextlib.suppress(AssertionError):
        await wait_for(lambda: edge.stream.connected.is_set(), "connected")
    status, _ = await get(world, "/containerLogs/default/demo/web")
    assert status == 200


async def test_the_edge_refuses_a_bad_connect_payload_on_its_connection(world: World) -> None:
    tunnel = world.cloud.sessions.get("edge-a")
    assert tunnel is not None
    stream = await tunnel.open(world.cloud.sessions.next_id(), MessageType.LOGS_CONNECT,
                               b'{"MessID": 1, "url": {"Path": "no-slash"}}')
    with pytest.raises(StreamError, match=r"bad connect payload.*absolute path") as err:
        async for _ in stream:
            pass
    assert err.value.code == 400
    await stream.close()
    assert (await get(world, "/containerLogs/default/demo/web"))[0] == 200


async def test_an_edge_whose_kubelet_server_is_down_answers_502(world: World) -> None:
    await world.edges["edge-a"].server.close()
    status, body = await get(world, "/containerLogs/default/demo/web")
    assert status == 502 and b"is not reachable" in body
