"""The mapper's REST API (upstream mapper-framework ``httpserver``; port ``http_port``, 7777):

- ``GET /api/v1/ping``: ``{"apiVersion", "statusCode", "timeStamp", "Message"}``;
- ``GET /api/v1/device/{ns}/{name}/{property}``: the property's last value read, as
  ``{..., "Data": {"DeviceName", "PropertyName", "Namespace", "Value", "Type", "TimeStamp"}}``;
  404 for an unknown device or property; 503 with the reason (``Message``) when the property
  has no value (its error, or the device offline).

It listens on ``common.address`` (127.0.0.1 in the template; upstream binds every address).

    rest = RestServer(mapper, "127.0.0.1", 7777); await rest.start(); await rest.stop()
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pykubeedge.mapper.push import data_model

if TYPE_CHECKING:
    from pykubeedge.mapper.app import Mapper

API_VERSION = "v1"


def _base(status: int) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "statusCode": status,
            "timeStamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _answer(status: int, **body: Any) -> web.Response:
    return web.json_response({**_base(status), **body}, status=status)


class RestServer:
    def __init__(self, mapper: Mapper, host: str, port: int) -> None:
        self.mapper = mapper
        self.host, self.port = host, port
        app = web.Application()
        app.router.add_get("/api/v1/ping", self.ping)
        app.router.add_get("/api/v1/device/{ns}/{name}/{prop}", self.read)
        self._runner = web.AppRunner(app, access_log=None)
        self._started = False

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self._started = True

    async def stop(self) -> None:
        if self._started:
            await self._runner.cleanup()

    async def ping(self, _request: web.Request) -> web.Response:
        return _answer(200, Message=f"This is {API_VERSION} API, the server is running "
                                    f"normally.")

    async def read(self, request: web.Request) -> web.Response:
        ns, name, prop = (request.match_info[k] for k in ("ns", "name", "prop"))
        runner = self.mapper.runners.get(f"{ns}/{name}")
        if runner is None:
            return _answer(404, Message=f"device {ns}/{name} is not served by this mapper")
        ps = runner.props.get(prop)
        if ps is None:
            return _answer(404, Message=f"device {ns}/{name} has no property {prop}")
        if ps.value is None or ps.error or not runner.connected:
            why = ps.error or runner.device_error or (
                "the device is offline" if not runner.connected else "not read yet")
            return _answer(503, Message=f"{ns}/{name} {prop}: {why}")
        return _answer(200, Data=data_model(runner.device, ps))
