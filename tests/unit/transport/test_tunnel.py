"""The stream tunnel over an in-memory WebSocket, in fake time: multiplexing, bounds, stalls,
bad frames, and that nothing outlives the tunnel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import WSMsgType

from pykubeedge.beehive.clock import FakeClock
from pykubeedge.core.errors import StreamError
from pykubeedge.core.stream import Frame, MessageType, encode_frame
from pykubeedge.transport.memory import MemoryWebSocket, pair
from pykubeedge.transport.tunnel import Role, Tunnel, TunnelStream


@dataclass
class Pair:
    cloud: Tunnel
    edge: Tunnel
    cloud_ws: MemoryWebSocket
    edge_ws: MemoryWebSocket
    clock: FakeClock
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def echo(stream: TunnelStream, frame: Frame) -> None:
    """The edge's handler in most tests: answers with the payload, then echoes data."""
    await stream.accept()
    await stream.write(b"hello " + frame.data)
    async for chunk in stream:
        await stream.write(chunk)


@pytest.fixture
async def tunnels(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    opts = getattr(request, "param", {})
    clock = FakeClock()
    edge_ws, cloud_ws = pair("edge", "cloud")
    cloud = Tunnel(cloud_ws, name="edge-1", role=Role.CLOUD, clock=clock,
                   **opts.get("cloud", {}))
    edge = Tunnel(edge_ws, name="edge-1", role=Role.EDGE, clock=clock,
                  on_connect=opts.get("handler", echo), **opts.get("edge", {}))
    p = Pair(cloud, edge, cloud_ws, edge_ws, clock)
    p.tasks = [asyncio.create_task(cloud.run()), asyncio.create_task(edge.run())]
    yield p
    await cloud.close("test over")
    await edge.close("test over")
    await asyncio.wait_for(asyncio.gather(*p.tasks, return_exceptions=True), 5)


async def read_all(stream: TunnelStream, want: int) -> bytes:
    out = b""
    async for chunk in stream:
        out += chunk
        if len(out) >= want:
            break
    return out


async def test_a_stream_carries_data_both_ways_and_ends_on_remove(tunnels: Pair) -> None:
    stream = await tunnels.cloud.open(1, MessageType.LOGS_CONNECT, b"payload")
    assert await stream.wait_accepted(1)
    assert await read_all(stream, 13) == b"hello payload"
    await stream.write(b"ping")
    assert await read_all(stream, 4) == b"ping"
    await stream.close()
    await tunnels.clock.settle()
    assert not tunnels.cloud.streams and not tunnels.edge.streams
    assert not tunnels.edge._handlers  # the handler saw the end and returned


async def test_fifty_streams_are_multiplexed_in_order(tunnels: Pair) -> None:
    streams = [await tunnels.cloud.open(i, MessageType.LOGS_CONNECT, b"%d" % i)
               for i in range(1, 51)]
    for s in streams:
        for n in range(5):
            await s.write(b"<%d:%d>" % (s.connect_id, n))
    for s in streams:
        want = b"hello %d" % s.connect_id + b"".join(b"<%d:%d>" % (s.connect_id, n)
                                                     for n in range(5))
        assert await read_all(s, len(want)) == want
    assert len(tunnels.edge.streams) == 50
    for s in streams:
        await s.close()
    await tunnels.clock.settle()
    assert tunnels.edge.stats.streams_opened == tunnels.edge.stats.streams_closed == 50


async def test_large_writes_are_split_into_frames(tunnels: Pair) -> None:
    stream = await tunnels.cloud.open(1, MessageType.LOGS_CONNECT, b"")
    await read_all(stream, 6)
    blob = bytes(range(256)) * 1024  # 256 KiB: four 64 KiB frames
    before = tunnels.cloud.stats.frames_out
    writer = asyncio.create_task(stream.write(blob))
    assert await read_all(stream, len(blob)) == blob
    await writer
    assert tunnels.cloud.stats.frames_out - before == 4


@pytest.mark.parametrize("tunnels", [{"edge": {"max_streams": 2}}], indirect=True)
async def test_the_edge_refuses_streams_beyond_its_bound(tunnels: Pair) -> None:
    a = await tunnels.cloud.open(1, MessageType.LOGS_CONNECT, b"a")
    b = await tunnels.cloud.open(2, MessageType.LOGS_CONNECT, b"b")
    c = await tunnels.cloud.open(3, MessageType.LOGS_CONNECT, b"c")
    assert await c.wait_accepted(1)
    with pytest.raises(StreamError, match="at most 2 streams") as err:
        await read_all(c, 1)
    assert err.value.code == 503
    assert await read_all(a, 7) == b"hello a" and await read_all(b, 7) == b"hello b"
    assert tunnels.edge.stats.refused == 1


@pytest.mark.parametrize("tunnels", [{"cloud": {"max_streams": 1}}], indirect=True)
async def test_the_cloud_refuses_to_open_beyond_its_bound(tunnels: Pair) -> None:
    await tunnels.cloud.open(1, MessageType.LOGS_CONNECT, b"")
    with pytest.raises(StreamError, match="1 streams open already"):
        await tunnels.cloud.open(2, MessageType.LOGS_CONNECT, b"")


async def flood(stream: TunnelStream, frame: Frame) -> None:
    await stream.accept()
    for _ in range(100):
        await stream.write(b"x" * 1000)
    await asyncio.Event().wait()  # stays open


@pytest.mark.parametrize("tunnels", [{
    "handler": flood, "cloud": {"stream_buffer": 4000, "stall_timeout": 10.0}}], indirect=True)
async def test_a_stalled_reader_is_reset_and_the_tunnel_goes_on(tunnels: Pair) -> None:
    stuck = await tunnels.cloud.open(1, MessageType.LOGS_CONNECT, b"")
    await tunnels.clock.settle()
    assert stuck.buffered <= 4000  # bounded: the rest waits in the socket
    await tunnels.clock.advance(9)
    assert tunnels.cloud.stats.stalls == 0
    await tunnels.clock.advance(2)
    assert tunnels.cloud.stats.stalls == 1
    with pytest.raises(StreamError, match="stalled"):
        await read_all(stuck, 10**6)
    fresh = await tunnels.cloud.open(2, MessageType.LOGS_CONNECT, b"")
    assert await read_all(fresh, 1000) == b"x" * 1000  # the tunnel serves the next one
    await tunnels.clock.settle()
    assert 1 not in tunnels.edge.streams  # the edge was told (RemoveConnect)


async def test_bad_frames_are_counted_and_refused_per_connection(tunnels: Pair) -> None:
    stream = await tunnels.cloud.open(5, MessageType.LOGS_CONNECT, b"x")
    await read_all(stream, 7)
    ws = tunnels.cloud_ws
    await ws.send_frame(b"\xff" * 11, WSMsgType.TEXT)  # varint overflow
    await ws.send_frame(b"", WSMsgType.BINARY)
    await ws.send_frame(bytes.fromhex("0907"), WSMsgType.TEXT)  # type 7, unknown connection
    await ws.send_frame(encode_frame(Frame(5, MessageType.DATA, b"y" * (2 << 20))),
                        WSMsgType.TEXT)
    await tunnels.clock.settle()
    assert tunnels.edge.stats.bad_frames == 4
    with pytest.raises(StreamError, match="limit is") as err:
        await read_all(stream, 10**6)
    assert err.value.code == 413
    other = await tunnels.cloud.open(6, MessageType.LOGS_CONNECT, b"ok")
    assert await read_all(other, 8) == b"hello ok"  # the tunnel keeps serving


async def test_a_connect_sent_to_the_cloud_is_refused(tunnels: Pair) -> None:
    await tunnels.edge_ws.send_frame(encode_frame(Frame(3, MessageType.EXEC_CONNECT, b"{}")),
                                     WSMsgType.TEXT)
    await tunnels.clock.settle()
    assert tunnels.cloud.stats.bad_frames == 1
    assert not tunnels.cloud.closed


async def test_close_connect_without_a_connection_ends_the_edges_session(tunnels: Pair) -> None:
    await tunnels.cloud.send(Frame(0, MessageType.CLOSE_CONNECT,
                                   b"failed to Update KubeletEndpoint Port"))
    await tunnels.clock.settle()
    assert tunnels.edge.closed
    assert "KubeletEndpoint" in tunnels.edge.close_reason


async def test_closing_the_tunnel_fails_every_stream_and_ends_every_handler(
        tunnels: Pair) -> None:
    streams = [await tunnels.cloud.open(i, MessageType.EXEC_CONNECT, b"") for i in (1, 2, 3)]
    await tunnels.clock.settle()
    assert len(tunnels.edge._handlers) == 3
    tunnels.edge_ws.break_link()
    await asyncio.wait_for(asyncio.gather(*tunnels.tasks, return_exceptions=True), 5)
    assert not tunnels.edge._handlers and not tunnels.edge.streams
    for s in streams:
        with pytest.raises(StreamError):
            await read_all(s, 10**6)


@pytest.mark.parametrize("tunnels", [{"cloud": {"idle_timeout": 30.0}}], indirect=True)
async def test_a_silent_tunnel_is_closed_after_the_idle_timeout(tunnels: Pair) -> None:
    await tunnels.clock.advance(25)
    assert not tunnels.cloud.closed
    await tunnels.clock.advance(15)
    assert tunnels.cloud.closed and "nothing heard" in tunnels.cloud.close_reason


@pytest.mark.parametrize("tunnels", [{"cloud": {"idle_timeout": 30.0},
                                      "edge": {"ping_interval": 5.0}}], indirect=True)
async def test_the_edges_pings_keep_the_tunnel_open(tunnels: Pair) -> None:
    await tunnels.clock.advance(120)
    assert not tunnels.cloud.closed and not tunnels.edge.closed


async def test_a_failing_handler_answers_500_and_the_tunnel_serves_on() -> None:
    async def broken(stream: TunnelStream, frame: Frame) -> None:
        raise RuntimeError("bug")

    edge_ws, cloud_ws = pair()
    clock = FakeClock()
    cloud = Tunnel(cloud_ws, name="n", role=Role.CLOUD, clock=clock)
    edge = Tunnel(edge_ws, name="n", role=Role.EDGE, on_connect=broken, clock=clock)
    tasks = [asyncio.create_task(cloud.run()), asyncio.create_task(edge.run())]
    stream = await cloud.open(1, MessageType.METRIC_CONNECT, b"")
    with pytest.raises(StreamError, match="internal error: bug") as err:
        await read_all(stream, 1)
    assert err.value.code == 500 and not edge.closed
    await cloud.close()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
