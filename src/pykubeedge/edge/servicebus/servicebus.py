"""ServiceBus: the beehive module ``servicebus`` (upstream ``edge/pkg/servicebus``).

- **Cloud -> local services.** The cloud Router's rest -> servicebus rules send requests with
  source ``router_servicebus``, resource ``<servicePort>:<path>`` and the HTTP method as the
  operation, content a ``{header, body, method, url}`` request. ServiceBus calls
  ``http://127.0.0.1:<servicePort><path>`` and answers with an ``upload`` whose parent is the
  request, content ``{header, status_code, body}``. An answer ServiceBus makes itself (bad
  request, the service unreachable or too slow, an answer too large) carries
  ``Server: kubeedge-edgecore``.
- **Local callers -> the cloud.** An HTTP server on ``server:port`` (127.0.0.1:9060) takes
  ``{"method", "targetURL", "payload"}`` and answers ``{"code", "msg", "body"}``. Only URLs a
  servicebus-source rule allows (the cloud's ``start``/``stop``, kept in ``target_urls``) go up.

Differences from upstream (PROJECT): the HTTP status of the local server's answer is its
``code`` (upstream always says 200); errors say what went wrong with their own status (403 a
URL no rule allows, 413 too large, 502 a service unreachable, 504 too slow) where upstream
answers 400 or 404; the server runs whether or not a rule exists yet.

    bus = ServiceBus(ServiceBusSettings.from_config(cfg), await TargetURLsDAO.open(db))
    hive.add_module(bus)
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import web

from pykubeedge.beehive import BeehiveContext, RestartPolicy, RestartType
from pykubeedge.core.config import EdgeCoreConfig
from pykubeedge.core.constants import EdgeGroup, EdgeModule, MessageGroup, Operation, Source
from pykubeedge.core.errors import DecodeError
from pykubeedge.core.httpmsg import HTTPRequest, HTTPResponse, headers_from
from pykubeedge.core.message import Message, new_message
from pykubeedge.edge.servicebus.dao import TargetURLsDAO
from pykubeedge.transport.rawhttp import read_at_most

log = logging.getLogger(__name__)

MAX_BODY: Final = 5_000_000
"""Bytes of a request or an answer ServiceBus carries (upstream ``maxBodySize``)."""
MAX_CONCURRENT: Final = 64
"""Cloud requests served at once; more wait in the module's queue."""
_HOP: Final = frozenset({"host", "content-length", "transfer-encoding", "connection",
                         "keep-alive", "content-encoding", "upgrade", "te", "trailer"})


@dataclass(frozen=True)
class ServiceBusSettings:
    server: str = "127.0.0.1"
    port: int = 9060
    timeout: float = 60.0

    @classmethod
    def from_config(cls, cfg: EdgeCoreConfig) -> ServiceBusSettings:
        sb = cfg.modules.serviceBus
        return cls(server=sb.server, port=sb.port, timeout=float(sb.timeout))


def split_target(resource: str) -> tuple[int, str]:
    """``<servicePort>:<path>`` -> (port, path).

    >>> split_target("8080:/hello?x=1")
    (8080, '/hello?x=1')
    """
    port_text, sep, path = resource.partition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise DecodeError(f"the format of resource {resource!r} is incorrect: "
                          "<servicePort>:<path> expected")
    if not path.startswith("/"):
        path = "/" + path
    return int(port_text), path


class ServiceBus:
    name = EdgeModule.SERVICEBUS
    # EdgeHub hands router_servicebus messages to group "user" (upstream: to this module).
    group = EdgeGroup.USER
    restart_policy = RestartPolicy(RestartType.ON_FAILURE)

    def __init__(self, settings: ServiceBusSettings, urls: TargetURLsDAO) -> None:
        self.s = settings
        self.urls = urls
        self._ctx: BeehiveContext | None = None
        self._http: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)
        self.ready = asyncio.Event()
        self.served = 0
        self.refused = 0

    # -- the module ------------------------------------------------------------------------

    async def start(self, ctx: BeehiveContext) -> None:
        self._ctx = ctx
        timeout = aiohttp.ClientTimeout(total=self.s.timeout)
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._local)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            try:
                await web.TCPSite(runner, self.s.server, self.s.port).start()
                log.info("ServiceBus listening on %s:%d (%d allowed target URL(s))",
                         self.s.server, self.s.port, len(self.urls.all()))
            except OSError as exc:  # as upstream: cloud requests are still served
                log.error("ServiceBus: cannot listen on %s:%d (%s); local callers cannot "
                          "reach the cloud, cloud requests are still served", self.s.server,
                          self.s.port, exc.strerror or exc)
            async with aiohttp.ClientSession(timeout=timeout, auto_decompress=True) as http, \
                    asyncio.TaskGroup() as tg:
                self._http = http
                self.ready.set()
                while True:
                    msg = await ctx.receive(self.name)
                    await self._slots.acquire()
                    tg.create_task(self._serve(ctx, msg))
        finally:
            self.ready.clear()
            self._http = None
            await runner.cleanup()

    async def _serve(self, ctx: BeehiveContext, msg: Message) -> None:
        try:
            await self.handle(ctx, msg)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("ServiceBus failed to handle %s", msg)
        finally:
            self._slots.release()

    # -- cloud -> local services -------------------------------------------------------------

    async def handle(self, ctx: BeehiveContext, msg: Message) -> None:
        if msg.source != Source.ROUTER_SERVICEBUS:
            log.debug("ServiceBus: ignored %s (not from the router)", msg)
            return
        op = msg.operation
        if op == Operation.START:
            await self.urls.add(msg.resource)
            log.info("ServiceBus: target URL %s allowed", msg.resource)
            return
        if op == Operation.STOP:
            await self.urls.remove(msg.resource)
            log.info("ServiceBus: target URL %s no longer allowed", msg.resource)
            return
        answer = await self.call(msg)
        self.served += 1
        await ctx.send_to_group(EdgeGroup.HUB, new_message(
            source=EdgeModule.SERVICEBUS, group=MessageGroup.USER, operation=Operation.UPLOAD,
            resource=msg.resource or "servicebus", content=answer.to_content(),
            parent_msg_id=msg.msg_id))

    async def call(self, msg: Message) -> HTTPResponse:
        """Call the local service ``msg`` is for; every failure becomes an answer."""
        try:
            port, path = split_target(msg.resource)
            request = HTTPRequest.from_content(msg.content)
        except DecodeError as exc:
            return HTTPResponse.edge_error(400, f"bad request from the cloud: {exc}")
        if len(request.body) > MAX_BODY:
            return HTTPResponse.edge_error(413, f"request body over {MAX_BODY} bytes")
        url = f"http://127.0.0.1:{port}{path}"
        headers = [(k, v) for k, vs in request.header.items() if k.lower() not in _HOP
                   for v in vs]
        assert self._http is not None
        try:
            async with self._http.request(request.method, url, headers=headers,
                                          data=request.body or None,
                                          allow_redirects=False) as resp:
                body = await read_at_most(resp.content, MAX_BODY + 1)
                if len(body) > MAX_BODY:
                    return HTTPResponse.edge_error(
                        502, f"the answer of {url} is over {MAX_BODY} bytes")
                return HTTPResponse(resp.status, headers_from(
                    (k, v) for k, v in resp.headers.items() if k.lower() not in _HOP), body)
        except TimeoutError:
            return HTTPResponse.edge_error(504, f"{url} did not answer within "
                                                f"{self.s.timeout:g}s")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return HTTPResponse.edge_error(502, f"error to call service {url}: "
                                                f"{str(exc) or type(exc).__name__}")

    # -- local callers -> the cloud ----------------------------------------------------------

    async def _local(self, request: web.Request) -> web.Response:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _answer(413, f"request body over {MAX_BODY} bytes")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return _answer(400, f"invalid params: the body is not JSON ({exc})")
        if not isinstance(body, dict):
            return _answer(400, "invalid params: expected {\"method\", \"targetURL\", "
                                "\"payload\"}")
        method, target = body.get("method"), body.get("targetURL")
        if not isinstance(method, str) or not method or not isinstance(target, str) \
                or not target:
            return _answer(400, "invalid params: method and targetURL must be non-empty "
                                "strings")
        if not self.urls.allowed(target):
            self.refused += 1
            return _answer(403, f"url {target} is not allowed: no servicebus rule in the "
                                "cloud has it as its target_url")
        ctx = self._ctx
        assert ctx is not None
        msg = new_message(source=EdgeModule.SERVICEBUS, group=MessageGroup.USER,
                          resource=target, operation=Operation.UPLOAD,
                          content=raw.decode("utf-8", "replace"))
        try:
            reply = await ctx.send_sync(EdgeModule.EDGEHUB, msg, timeout=self.s.timeout)
        except TimeoutError:
            return _answer(504, f"no answer from the cloud within {self.s.timeout:g}s")
        if reply.operation == Operation.ERROR:
            return _answer(502, f"the cloud could not deliver: {_text(reply.content)}")
        return _answer(200, "receive response from cloud successfully", _text(reply.content))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, bytes):
        return content.decode("utf-8", "replace")
    return orjson.dumps(content).decode()


def _answer(code: int, msg: str, body: str = "") -> web.Response:
    return web.Response(status=code, body=orjson.dumps({"code": code, "msg": msg, "body": body}),
                        content_type="application/json")
