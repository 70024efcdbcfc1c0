"""A loopback HTTP proxy in front of kube-apiserver that can break, hold and fail watches.

Tests point a client at ``proxy.url`` (plain http); the proxy adds the admin token and talks TLS
to the real API server. It injects the faults real networks and servers produce, on demand:

- ``break_watches()``: cut every open watch stream (a flaky network);
- ``hold_watches()`` / ``release_watches()``: new watch requests wait (a client that is blind);
- ``gone_next_watches = n``: answer the next n watch requests with 410 Gone (history compacted).
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
from aiohttp import web

from pykubeedge.kube.config import KubeConfig

GONE = {
    "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired",
    "code": 410, "message": "too old resource version (injected by the test proxy)",
}


class FaultProxy:
    def __init__(self, upstream: KubeConfig) -> None:
        self.upstream = upstream
        self.gone_next_watches = 0
        self.watch_requests = 0
        self._released = asyncio.Event()
        self._released.set()
        self._streams: set[asyncio.Task[object]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def __aenter__(self) -> FaultProxy:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.upstream.ssl_context()),
            headers={"Authorization": f"Bearer {self.upstream.token}"})
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release_watches()
        self.break_watches()
        if self._runner:
            await self._runner.cleanup()
        if self._session:
            await self._session.close()

    def client_config(self) -> KubeConfig:
        return KubeConfig(server=self.url)

    def hold_watches(self) -> None:
        self._released.clear()

    def release_watches(self) -> None:
        self._released.set()

    def break_watches(self) -> None:
        for task in list(self._streams):
            task.cancel()
        self._streams.clear()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        is_watch = request.query.get("watch") in ("true", "1")
        if is_watch:
            self.watch_requests += 1
            await asyncio.wait_for(self._released.wait(), 60)
            if self.gone_next_watches > 0:
                self.gone_next_watches -= 1
                return web.json_response(GONE, status=410)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("content-type", "accept")}
        async with self._session.request(
            request.method, self.upstream.server + request.path_qs, data=body or None,
            headers=headers, timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
        ) as up:
            resp = web.StreamResponse(status=up.status)
            resp.content_type = up.content_type
            await resp.prepare(request)
            task = asyncio.current_task()
            if is_watch and task is not None:
                self._streams.add(task)
            try:
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
            finally:
                self._streams.discard(task)  # type: ignore[arg-type]
            with contextlib.suppress(ConnectionError):
                await resp.write_eof()
            return resp
