"""Router: the cloudcore module ``router`` (upstream ``cloud/pkg/router``).

Informers on RuleEndpoints and Rules (``rules.kubeedge.io/v1``) keep a table of routes:

- **rest -> eventbus**: a POST to ``http://<address>:<port>/<node>/<namespace>/<path>`` (9443)
  is published on the edge: ``publish`` to ``node/<node>/<topic>[/<param>]``, source
  ``router_eventbus``, group ``user``; the caller gets 200 ``message delivered``.
- **rest -> servicebus**: the call goes to the node's ServiceBus (resource
  ``node/<node>/<service_port>:<path>[/<param>]``, the HTTP method as the operation, a
  ``{header, body, method, url}`` request) and the local service's answer comes back to the
  caller (504 after ``restTimeout``).
- **eventbus -> rest**: the edge is told to ``subscribe`` to ``<namespace>/<topic>``; what is
  published there comes up (source ``bus``, resource ``node/<node>/<namespace>/<topic>``) and is
  POSTed to the rule's URL, through a bounded per-rule queue, in order, with retries
  (:mod:`.delivery`).
- **servicebus -> rest**: the edge is told to allow ``target_url`` (``start``); a local call to
  it comes up (source ``servicebus``) and is POSTed to the rule's URL; the answer's body goes
  back to the edge as the ``response``.

Every message counts in its Rule's status (:mod:`.status`), written back rate-limited.
Messages from the edge wait until both informers have synced, so after a cloudcore restart
what the edge kept while disconnected is routed by the rules, not dropped as unknown.

    router = Router(kube, address="0.0.0.0", port=9443, rest_timeout=60)
    hive.add_module(router)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import web

from pykubeedge.beehive import BeehiveContext, RestartPolicy, RestartType, serve
from pykubeedge.cloud.router.delivery import DEFAULT_LIMIT, DeliveryError, Item, RuleQueue
from pykubeedge.cloud.router.rules import (
    EVENTBUS,
    REST,
    SERVICEBUS,
    RestCall,
    Route,
    RuleError,
    match_rest,
    param_of,
    parse_rule,
    publish_resource,
    service_resource,
    split_rest_path,
    start_resource,
    subscribe_resource,
)
from pykubeedge.cloud.router.status import RuleStats, StatusWriter
from pykubeedge.core.constants import (
    CloudGroup,
    CloudModule,
    EdgeModule,
    MessageGroup,
    Operation,
    Source,
)
from pykubeedge.core.errors import DecodeError
from pykubeedge.core.httpmsg import HTTPRequest, HTTPResponse, headers_from
from pykubeedge.core.message import Message, error_message, new_message, response
from pykubeedge.core.ruletraffic import DROPPED_SUFFIX, parse_drop_report
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.informer import DELETED, MODIFIED, Informer, InformerEvent, object_key
from pykubeedge.kube.resources import RULEENDPOINTS, RULES
from pykubeedge.transport.rawhttp import read_at_most

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES: Final = 12 * (1 << 20)
"""A REST call's body (upstream ``MaxMessageBytes``)."""
MAX_RESP_BODY: Final = 1 << 20
"""What the Router reads of a REST endpoint's answer (upstream ``MaxRespBodyLength``)."""
MAX_PENDING: Final = 4096
"""rest -> servicebus calls waiting for the edge's answer at once (more get 503), and
servicebus -> rest calls in flight (more get an error)."""
_HOP: Final = frozenset({"host", "content-length", "transfer-encoding", "connection",
                         "keep-alive", "upgrade", "te", "trailer", "content-encoding"})


@dataclass
class _Live:
    """A route that is in the table, and what it runs."""

    route: Route
    queue: RuleQueue | None = None
    task: asyncio.Task[None] | None = None


class Router:
    name = CloudModule.ROUTER
    group = CloudGroup.ROUTER
    restart_policy = RestartPolicy(RestartType.ON_FAILURE, retries=0)

    def __init__(self, kube: KubeClient, *, address: str = "0.0.0.0", port: int = 9443,
                 rest_timeout: float = 60.0, queue_limit: int = DEFAULT_LIMIT,
                 status_interval: float = 1.0) -> None:
        self.kube = kube
        self.address = address
        self.port = port
        self.rest_timeout = rest_timeout
        self.queue_limit = queue_limit
        self.endpoints = Informer(kube, RULEENDPOINTS, self._on_endpoint)
        self.rules = Informer(kube, RULES, self._on_rule)
        self.stats = RuleStats()
        self.writer = StatusWriter(self.stats, self._patch_status, interval=status_interval)
        self.live: dict[str, _Live] = {}  # rule key -> route
        self._rest: dict[str, list[str]] = {}  # namespace -> rule keys with a rest source
        self._listen: dict[str, list[str]] = {}  # "bus/..." | "servicebus/..." -> rule keys
        self._pending: dict[str, asyncio.Future[Message]] = {}
        self._calls = 0  # servicebus -> rest calls in flight
        self._ctx: BeehiveContext | None = None
        self._http: aiohttp.ClientSession | None = None
        self._tg: asyncio.TaskGroup | None = None
        self.synced = asyncio.Event()
        self.ready = asyncio.Event()

    # -- the module ------------------------------------------------------------------------

    async def start(self, ctx: BeehiveContext) -> None:
        self._ctx = ctx
        app = web.Application(client_max_size=MAX_MESSAGE_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._on_rest)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        timeout = aiohttp.ClientTimeout(total=self.rest_timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http, \
                    asyncio.TaskGroup() as tg:
                self._http, self._tg = http, tg
                tg.create_task(self.writer.run(), name="router-status")
                tg.create_task(self.endpoints.run(), name="informer-ruleendpoints")
                await self.endpoints.synced.wait()
                tg.create_task(self.rules.run(), name="informer-rules")
                await self.rules.synced.wait()
                for key in sorted(self.rules.store):
                    await self._apply(key)
                self.synced.set()
                await web.TCPSite(runner, self.address, self.port).start()
                self.ready.set()
                log.info("Router listening on %s:%d: %d rule(s), %d endpoint(s)", self.address,
                         self.port, len(self.live), len(self.endpoints.store))
                await serve(ctx, self.name, self.handle)
        finally:
            self.ready.clear()
            self.synced.clear()
            self._http = self._tg = None
            await runner.cleanup()
            with contextlib.suppress(Exception):  # what changed since the last write
                async with asyncio.timeout(5):
                    await self.writer.flush()

    async def _patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        await self.kube.patch(RULES, name, {"status": status}, namespace=namespace,
                              patch_type="merge")

    async def _to_hub(self, msg: Message) -> None:
        assert self._ctx is not None
        await self._ctx.send(CloudModule.CLOUDHUB, msg)

    # -- the route table -------------------------------------------------------------------

    async def _on_endpoint(self, ev: InformerEvent) -> None:
        if not self.rules.synced.is_set():
            return  # the first pass over the rules comes after both lists
        ns = object_key(ev.obj).partition("/")[0]
        for key in sorted(self.rules.store):
            if key.partition("/")[0] == ns:
                await self._apply(key)

    async def _on_rule(self, ev: InformerEvent) -> None:
        key = ev.key
        if ev.type == DELETED:
            await self._remove(key)
            self.stats.forget(key)
            return
        if not self.rules.synced.is_set():
            return
        if ev.type == MODIFIED and ev.old is not None and \
                ev.old.get("spec") == ev.obj.get("spec") and key in self.live:
            return  # our own status writes, labels...
        await self._apply(key)

    async def _apply(self, key: str) -> None:
        """Bring ``key``'s route in line with its Rule and endpoints."""
        rule = self.rules.get(key)
        if rule is None:
            await self._remove(key)
            return
        self.stats.load(key, rule.get("status"))
        try:
            route = parse_rule(rule, self.endpoints.store)
        except RuleError as exc:
            await self._remove(key)
            log.warning("rule %s is not routed: %s", key, exc)
            self.stats.error(key, str(exc))
            return
        current = self.live.get(key)
        if current is not None and current.route == route:
            return
        await self._remove(key)
        await self._add(route)

    async def _add(self, route: Route) -> None:
        key, src = route.key, route.source
        live = _Live(route)
        if src.kind == REST:
            self._rest.setdefault(src.namespace, []).append(key)
        else:
            self._listen.setdefault(src.key, []).append(key)
            if src.kind == EVENTBUS:
                await self._to_hub(new_message(
                    source=Source.ROUTER_EVENTBUS, group=MessageGroup.USER,
                    operation=Operation.SUBSCRIBE,
                    resource=subscribe_resource(src.node, src.namespace, src.topic)))
                deliver = functools.partial(self._post, url=route.target.resource)
                live.queue = RuleQueue(key, deliver, self.stats, limit=self.queue_limit)
                assert self._tg is not None
                live.task = self._tg.create_task(live.queue.run(), name=f"rule-{key}")
            else:
                await self._to_hub(new_message(
                    source=Source.ROUTER_SERVICEBUS, group=MessageGroup.USER,
                    operation=Operation.START, resource=start_resource(src.node,
                                                                       src.target_url)))
        self.live[key] = live
        log.info("rule %s: %s -> %s routed", key, src.kind, route.target.kind)

    async def _remove(self, key: str) -> None:
        live = self.live.pop(key, None)
        if live is None:
            return
        src = live.route.source
        if src.kind == REST:
            keys = self._rest.get(src.namespace, [])
            if key in keys:
                keys.remove(key)
            return
        keys = self._listen.get(src.key, [])
        if key in keys:
            keys.remove(key)
        if not keys:
            self._listen.pop(src.key, None)
        if live.task is not None:
            live.task.cancel()
        if keys:
            return  # another rule still listens there
        if src.kind == EVENTBUS:
            await self._to_hub(new_message(
                source=Source.ROUTER_EVENTBUS, group=MessageGroup.USER,
                operation=Operation.UNSUBSCRIBE,
                resource=subscribe_resource(src.node, src.namespace, src.topic)))
        else:
            await self._to_hub(new_message(
                source=Source.ROUTER_SERVICEBUS, group=MessageGroup.USER,
                operation=Operation.STOP, resource=start_resource(src.node, src.target_url)))

    # -- edge -> cloud ---------------------------------------------------------------------

    async def handle(self, msg: Message) -> None:
        if msg.parent_msg_id:
            waiter = self._pending.get(msg.parent_msg_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(msg)
            else:
                log.debug("router: answer to unknown or expired %s", msg.parent_msg_id)
            return
        if not self.synced.is_set():
            await self.synced.wait()
        if msg.source == EdgeModule.SERVICEBUS:
            keys = self._listen.get(f"servicebus/{msg.resource}", [])
        elif msg.resource.endswith(DROPPED_SUFFIX):
            self._edge_dropped(msg)
            return
        else:
            keys = self._listen.get(f"{msg.source}/{msg.resource}", [])
        if not keys:
            log.info("router: no rule for %s from %s; dropped", msg.resource, msg.source)
            if msg.source == EdgeModule.SERVICEBUS:
                await self._to_hub(error_message(msg, f"no rule routes {msg.resource}"))
            return
        body = _bytes(msg.content)
        if msg.source == EdgeModule.SERVICEBUS:
            body = _payload(body)
        node = msg.resource.split("/", 2)[1] if msg.resource.startswith("node/") else ""
        for key in list(keys):
            live = self.live.get(key)
            if live is None:
                continue
            if live.queue is not None:
                live.queue.put(body, node=node)
            elif self._calls >= MAX_PENDING:
                self.stats.fail(key, "too many local calls waiting for the cloud endpoint")
                await self._to_hub(error_message(msg, "the router is busy; try again"))
            elif self._tg is not None:
                self._calls += 1
                self._tg.create_task(self._service_call(live.route, msg, body, node))

    def _edge_dropped(self, msg: Message) -> None:
        """What the edge dropped of a rule topic while disconnected (``core/ruletraffic``)."""
        report = parse_drop_report(msg.content)
        resource = msg.resource[:-len(DROPPED_SUFFIX)]
        if report is None:
            log.warning("router: malformed drop report for %s: %.200r", resource, msg.content)
            return
        dropped, limit = report
        for key in self._listen.get(f"{msg.source}/{resource}", []):
            self.stats.dropped(key, f"the edge kept only {limit} message(s) of this rule "
                                    "while the cloud was unreachable", dropped)

    async def _post(self, item: Item, url: str) -> bytes:
        """POST ``item`` to a REST target; the answer's body. Raises :class:`DeliveryError`."""
        assert self._http is not None
        try:
            async with self._http.post(url, data=item.body,
                                       headers={"NodeName": item.node}) as resp:
                body = await read_at_most(resp.content, MAX_RESP_BODY)
                if resp.status >= 500:
                    raise DeliveryError(f"{url} answered {resp.status}", retry=True)
                if resp.status >= 400:
                    raise DeliveryError(f"{url} answered {resp.status}", retry=False)
                return body
        except TimeoutError:
            raise DeliveryError(f"{url} did not answer within {self.rest_timeout:g}s",
                                retry=True) from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise DeliveryError(f"cannot reach {url}: {str(exc) or type(exc).__name__}",
                                retry=True) from None

    async def _service_call(self, route: Route, msg: Message, body: bytes, node: str) -> None:
        """servicebus -> rest: POST, and answer the edge's local caller."""
        try:
            answer = await self._post(Item(body, node), route.target.resource)
        except DeliveryError as exc:
            self.stats.fail(route.key, str(exc))
            await self._to_hub(error_message(msg, str(exc)))
            return
        finally:
            self._calls -= 1
        self.stats.success(route.key)
        await self._to_hub(response(msg, answer.decode("utf-8", "replace")))

    # -- REST -> edge ----------------------------------------------------------------------

    def _match(self, call: RestCall) -> tuple[_Live, int] | None:
        best: tuple[_Live, int] | None = None
        for key in self._rest.get(call.namespace, ()):
            live = self.live.get(key)
            if live is None:
                continue
            n = match_rest(live.route.source.path, call.rest)
            if n and (best is None or n > best[1]):
                best = (live, n)
        return best

    async def _on_rest(self, request: web.Request) -> web.Response:
        call = split_rest_path(request.path, request.query_string)
        if call is None:
            return web.Response(status=404, text=f"url format incorrect: {request.path} "
                                "(/<node>/<namespace>/<path> expected)")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text=f"body over {MAX_MESSAGE_BYTES} bytes")
        found = self._match(call)
        if found is None:
            return web.Response(status=404, text=f"no rule matches {request.path}")
        live, matched = found
        route, param = live.route, param_of(call, matched)
        if route.target.kind == EVENTBUS:
            return await self._publish(route, call, param, body)
        if route.target.kind == SERVICEBUS:
            return await self._call_edge(route, call, param, request, body)
        return web.Response(status=500, text=f"rule {route.key}: a rest source cannot feed "
                                             f"{route.target.kind}")

    async def _publish(self, route: Route, call: RestCall, param: str,
                       body: bytes) -> web.Response:
        if not body:
            self.stats.fail(route.key, "empty body: nothing to publish")
            return web.Response(status=400, text="empty body: nothing to publish")
        await self._to_hub(new_message(
            source=Source.ROUTER_EVENTBUS, group=MessageGroup.USER,
            operation=Operation.PUBLISH, content=body.decode("utf-8", "replace"),
            resource=publish_resource(call.node, route.target.topic, param.partition("?")[0])))
        self.stats.success(route.key)
        return web.Response(text="message delivered")

    async def _call_edge(self, route: Route, call: RestCall, param: str,
                         request: web.Request, body: bytes) -> web.Response:
        if len(self._pending) >= MAX_PENDING:
            self.stats.fail(route.key, "too many calls waiting for edges")
            return web.Response(status=503, text="too many calls waiting for edges")
        header = headers_from((k, v) for k, v in request.headers.items()
                              if k.lower() not in _HOP)
        req = HTTPRequest(request.method, header, body)
        msg = new_message(source=Source.ROUTER_SERVICEBUS, group=MessageGroup.USER,
                          operation=request.method, content=req.to_content(),
                          resource=service_resource(call.node, route.target.service_port,
                                                    route.target.path, param))
        waiter: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[msg.msg_id] = waiter
        try:
            await self._to_hub(msg)
            async with asyncio.timeout(self.rest_timeout):
                reply = await waiter
        except TimeoutError:
            self.stats.fail(route.key, f"node {call.node}: no answer within "
                                       f"{self.rest_timeout:g}s")
            return web.Response(status=504, text="wait to get response time out")
        finally:
            self._pending.pop(msg.msg_id, None)
        try:
            answer = HTTPResponse.from_content(reply.content)
        except DecodeError as exc:
            self.stats.fail(route.key, f"node {call.node}: invalid answer: {exc}")
            return web.Response(status=502, text=f"invalid response from the edge: {exc}")
        if answer.from_edge:
            self.stats.fail(route.key, f"node {call.node}: {answer.status_code} "
                                       f"{answer.body[:200].decode('utf-8', 'replace')}")
        else:
            self.stats.success(route.key)
        resp = web.Response(status=answer.status_code, body=answer.body)
        for name, values in answer.header.items():
            if name.lower() in _HOP:
                continue
            for value in values:
                resp.headers.add(name, value)
        return resp


def _bytes(content: Any) -> bytes:
    if isinstance(content, bytes):
        return content
    if isinstance(content, str):
        return content.encode()
    return orjson.dumps(content)


def _payload(request: bytes) -> bytes:
    """What a local caller's ``{"method", "targetURL", "payload"}`` asks to POST: the payload
    (text as it is, anything else as JSON); the whole request when it has none."""
    try:
        obj = orjson.loads(request)
    except orjson.JSONDecodeError:
        return request
    if not isinstance(obj, dict) or "payload" not in obj:
        return request
    payload = obj["payload"]
    return payload.encode() if isinstance(payload, str) else orjson.dumps(payload)
