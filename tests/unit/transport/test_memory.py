"""The in-memory WebSocket: frames both ways in order, close and failure as aiohttp shows
them, a bounded window, and a network that refuses as a server would."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import WSMsgType

from pykubeedge.transport.memory import MemoryNetwork, MemoryWebSocket, pair


async def drain(ws: MemoryWebSocket) -> list[tuple[WSMsgType, object]]:
    return [(frame.type, frame.data) async for frame in ws]


async def test_frames_flow_both_ways_and_close_ends_both_readers() -> None:
    a, b = pair()
    await a.send_frame(b"one", WSMsgType.TEXT)
    await b.send_frame(b"two", WSMsgType.TEXT)
    await a.close(code=1008, message=b"replaced")
    assert await drain(b) == [(WSMsgType.TEXT, b"one")]
    assert b.closed and b.close_code == 1008
    assert await drain(a) == [(WSMsgType.TEXT, b"two")]
    with pytest.raises(ConnectionResetError):
        await b.send_frame(b"late", WSMsgType.TEXT)
    assert not await a.close()  # already closed


async def test_a_broken_link_shows_an_error_frame_on_both_ends() -> None:
    a, b = pair()
    a.break_link()
    for end in (a, b):
        [(kind, error)] = await drain(end)
        assert kind == WSMsgType.ERROR and isinstance(error, ConnectionResetError)
        assert end.closed and end.close_code == 1006 and end.exception() is error


async def test_the_window_makes_a_fast_sender_wait() -> None:
    a, b = pair(window=2)
    await a.send_frame(b"1", WSMsgType.TEXT)
    await a.send_frame(b"2", WSMsgType.TEXT)
    third = asyncio.ensure_future(a.send_frame(b"3", WSMsgType.TEXT))
    await asyncio.sleep(0)
    assert not third.done()
    assert (await anext(b)).data == b"1"
    await third
    assert a.sent == 3


async def test_the_network_serves_what_it_accepts_and_refuses_what_it_does_not() -> None:
    served: list[str] = []

    async def accept(headers, ws):  # type: ignore[no-untyped-def]
        if headers.get("node_id") == "bad":
            raise ConnectionRefusedError("403 certificate mismatch")

        async def serve() -> None:
            async for frame in ws:
                served.append(frame.data.decode())

        return serve()

    async with MemoryNetwork(accept) as network:
        client = await network.dial("wss://x", {"node_id": "good"})
        await client.send_frame(b"hello", WSMsgType.TEXT)
        with pytest.raises(ConnectionRefusedError, match="403"):
            await network.dial("wss://x", {"node_id": "bad"})
        network.reachable = False
        with pytest.raises(ConnectionRefusedError, match="unreachable"):
            await network.dial("wss://x", {"node_id": "good"})
        await asyncio.sleep(0)
        assert network.live() == [client]
    assert served == ["hello"] and client.closed and (network.dials, network.refused) == (3, 2)
