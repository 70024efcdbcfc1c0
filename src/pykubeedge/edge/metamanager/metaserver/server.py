"""MetaServer: a read-only, Kubernetes-compatible API on the edge (upstream
``edge/pkg/metamanager/metaserver``), served from the local store online and offline.

Plain HTTP on ``127.0.0.1:10550`` by default. It answers discovery (``/version``, ``/api``,
``/api/v1``, ``/apis``), health (``/healthz``, ``/readyz``, ``/livez``), and get / list / watch
of pods, configmaps, secrets, services, endpoints and nodes, with ``labelSelector``,
``fieldSelector`` and ``resourceVersion``; lists and watches as JSON or as the
``meta.k8s.io/v1`` Tables kubectl asks for. Resource versions are the store's revisions (see
:mod:`..dao`), so list-then-watch and watch resumption work; a watch from a revision the
store no longer remembers gets a 410 ``Expired`` ERROR event, and the client lists again::

    async with MetaServer(store, port=10550) as server:
        ...   # kubectl --server http://127.0.0.1:10550 get pods -A

Upstream also forwards requests to the cloud while online (the ``Application`` protocol);
this one answers everything locally (contract 4.4's offline path), which is what the
pods on the edge need for list/watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import time
from collections.abc import Mapping
from typing import Any, Final

import orjson
from aiohttp import web

from pykubeedge import __version__
from pykubeedge.core.errors import StoreError
from pykubeedge.edge.metamanager.dao import MetaStore
from pykubeedge.edge.metamanager.feed import Change, ChangeType, RevisionExpired
from pykubeedge.edge.metamanager.metaserver.selectors import (
    Matcher,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from pykubeedge.edge.metamanager.metaserver.tables import INCLUDE_OBJECT, to_table
from pykubeedge.edge.metamanager.metaserver.unhold import Unhold, handle_unhold, unhold_target
from pykubeedge.edge.metamanager.resources import BY_PLURAL, SERVED, V2Resource

log = logging.getLogger(__name__)

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 10550
DEFAULT_MAX_WATCHES: Final = 256
DEFAULT_MAX_WATCH_SECONDS: Final = 1800.0
"""Longest watch; clients reconnect from their last resourceVersion (the API server's
``minRequestTimeout``)."""
DEFAULT_BOOKMARK_INTERVAL: Final = 60.0
KUBE_VERSION: Final = (1, 32, 10)
"""The Kubernetes version whose API this imitates (contract: the v1.32 line)."""

_JSON: Final = "application/json"
_VERBS: Final = ["get", "list", "watch"]


class MetaServer:
    """The HTTP server. ``port`` 0 picks a free port (read it from :attr:`port` once started).

    >>> server = MetaServer(store, host="127.0.0.1", port=0)    # doctest: +SKIP
    >>> await server.start(); server.port    # doctest: +SKIP
    40123
    """

    def __init__(
        self,
        store: MetaStore,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        max_watches: int = DEFAULT_MAX_WATCHES,
        max_watch_seconds: float = DEFAULT_MAX_WATCH_SECONDS,
        bookmark_interval: float = DEFAULT_BOOKMARK_INTERVAL,
    ) -> None:
        self.store = store
        self.host = host
        self._port = port
        self.max_watches = max_watches
        self.max_watch_seconds = max_watch_seconds
        self.bookmark_interval = bookmark_interval
        self._runner: web.AppRunner | None = None
        self._watches: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()
        self.unhold: Unhold | None = None
        """Set by MetaManager: releases a held pod (``pods/unhold-upgrade``)."""

    @property
    def port(self) -> int:
        """The bound port (the one asked for, until :meth:`start` has bound it)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://<host>:<port>``."""
        return f"http://{self.host}:{self._port}"

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and serve in the background (raises OSError if the port is taken)."""
        if self._runner is not None:
            return
        self._stopping.clear()
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                               shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        for address in runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                self._port = int(address[1])
                break
        log.info("MetaServer serving on %s", self.url)

    async def close(self) -> None:
        """End the watches (each stream is finished properly) and stop serving."""
        runner, self._runner = self._runner, None
        self._stopping.set()
        self.store.feed.interrupt()
        if runner is not None:
            await runner.cleanup()  # waits briefly for the handlers, then cancels them

    async def serve(self) -> None:
        """Serve until cancelled (for running inside a module's task group)."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(self.close())

    async def __aenter__(self) -> MetaServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- routing -----------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        target = unhold_target(request.path) if request.method == "POST" else ""
        if target:
            return await handle_unhold(request, target, self.store, self.unhold)
        if request.method not in ("GET", "HEAD"):
            return status_response(405, "MethodNotAllowed",
                                   f"the MetaServer is read-only; {request.method} not allowed")
        path = request.path.rstrip("/") or "/"
        try:
            if path in ("/healthz", "/readyz", "/livez") or path.startswith(
                    ("/healthz/", "/readyz/", "/livez/")):
                return web.Response(text="ok", content_type="text/plain")
            if path == "/version":
                return json_response(version_info())
            if path == "/api":
                return json_response(self._api_versions(request))
            if path == "/apis":
                return json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
            if path == "/api/v1":
                return json_response(api_resource_list())
            if path.startswith("/api/v1/"):
                return await self._resource(request, path[len("/api/v1/"):])
            return status_response(404, "NotFound", "the server could not find the requested "
                                   "resource")
        except SelectorError as exc:
            return status_response(400, "BadRequest", str(exc))
        except StoreError as exc:
            log.error("MetaServer: store failed: %s", exc)
            return status_response(500, "InternalError", f"store: {exc}")

    def _api_versions(self, request: web.Request) -> dict[str, Any]:
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                "serverAddress": request.host}]}

    async def _resource(self, request: web.Request, tail: str) -> web.StreamResponse:
        segments = [s for s in tail.split("/") if s]
        watch = request.query.get("watch", "") in ("true", "1")
        if segments and segments[0] == "watch":
            watch, segments = True, segments[1:]
        namespace: str | None = None
        if len(segments) >= 3 and segments[0] == "namespaces":
            namespace, segments = segments[1], segments[2:]
        if not segments or len(segments) > 2 or segments[0] not in BY_PLURAL:
            return status_response(404, "NotFound",
                                   "the server could not find the requested resource")
        resource = BY_PLURAL[segments[0]]
        name = segments[1] if len(segments) == 2 else None
        if namespace is not None and not resource.namespaced:
            return status_response(404, "NotFound", f"{resource.plural} are not namespaced")
        if resource.namespaced and name is not None and namespace is None:
            return status_response(404, "NotFound",
                                   "the server could not find the requested resource")
        if name is not None and watch:
            fields = f"metadata.name={name}"
            if request.query.get("fieldSelector"):
                fields += "," + request.query["fieldSelector"]
            return await self._watch(request, resource, namespace, fields)
        if name is not None:
            return await self._get(request, resource, namespace or "", name)
        if watch:
            return await self._watch(request, resource, namespace,
                                     request.query.get("fieldSelector", ""))
        return await self._list(request, resource, namespace)

    # -- get / list --------------------------------------------------------------------------

    async def _get(self, request: web.Request, resource: V2Resource, namespace: str,
                   name: str) -> web.Response:
        obj, revision = await self.store.get_object(resource.plural, namespace, name)
        if obj is None:
            return status_response(404, "NotFound", f'{resource.plural} "{name}" not found',
                                   details={"name": name, "kind": resource.plural})
        table = wants_table(request.headers.get("Accept", ""))
        if table:
            return json_response(to_table(resource, [obj], revision=_rv(obj, revision),
                                          include_object=_include_object(request)))
        return json_response(obj)

    async def _list(self, request: web.Request, resource: V2Resource,
                    namespace: str | None) -> web.Response:
        match = _matcher(request.query.get("labelSelector", ""),
                         request.query.get("fieldSelector", ""))
        objects, revision = await self.store.list_objects(resource.plural, namespace)
        items = [obj for obj in objects if isinstance(obj, dict) and match(obj)]
        if wants_table(request.headers.get("Accept", "")):
            return json_response(to_table(resource, items, revision=revision,
                                          include_object=_include_object(request)))
        return json_response({"kind": f"{resource.kind}List", "apiVersion": resource.api_version,
                              "metadata": {"resourceVersion": str(revision)}, "items": items})

    # -- watch -------------------------------------------------------------------------------

    async def _watch(self, request: web.Request, resource: V2Resource, namespace: str | None,
                     field_selector: str) -> web.StreamResponse:
        match = _matcher(request.query.get("labelSelector", ""), field_selector)
        query = request.query
        rv_text = query.get("resourceVersion", "")
        initial = rv_text in ("", "0") or query.get("sendInitialEvents") == "true"
        start_revision = 0
        if rv_text not in ("", "0"):
            try:
                start_revision = int(rv_text)
            except ValueError:
                return status_response(400, "BadRequest", f"invalid resourceVersion {rv_text!r}")
        try:
            timeout = float(query.get("timeoutSeconds") or self.max_watch_seconds)
        except ValueError:
            return status_response(400, "BadRequest", "invalid timeoutSeconds")
        timeout = max(0.0, min(timeout, self.max_watch_seconds))
        if len(self._watches) >= self.max_watches:
            return status_response(429, "TooManyRequests", "too many watches; retry later")
        task = asyncio.current_task()
        assert task is not None
        self._watches.add(task)
        try:
            stream = _WatchStream(request, resource, namespace, match,
                                  wants_table(request.headers.get("Accept", "")),
                                  _include_object(request),
                                  query.get("allowWatchBookmarks") == "true")
            await stream.prepare()
            await self._follow(stream, initial, start_revision,
                               query.get("sendInitialEvents") == "true", timeout)
            return stream.response
        finally:
            self._watches.discard(task)

    async def _follow(self, stream: _WatchStream, initial: bool, revision: int,
                      initial_end_bookmark: bool, timeout: float) -> None:
        feed = self.store.feed
        deadline = time.monotonic() + timeout
        with contextlib.suppress(ConnectionError):
            if initial:
                objects, revision = await self.store.list_objects(stream.resource.plural,
                                                                  stream.namespace)
                for obj in objects:
                    if isinstance(obj, dict) and stream.match(obj):
                        await stream.send(ChangeType.ADDED, obj, _rv(obj, revision))
                if initial_end_bookmark and stream.bookmarks:
                    await stream.bookmark(revision, initial_end=True)
            while not self._stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    changes = feed.since(revision)
                except RevisionExpired as exc:
                    await stream.expired(str(exc))
                    return
                if changes:
                    for change in changes:
                        await stream.offer(change)
                    revision = changes[-1].revision
                    continue
                wait = min(remaining, self.bookmark_interval)
                moved = await feed.wait(revision, timeout=wait)
                if not moved and stream.bookmarks and not self._stopping.is_set():
                    await stream.bookmark(max(revision, feed.revision))


class _WatchStream:
    """One watch response: filters changes and writes ``{"type", "object"}`` lines."""

    def __init__(self, request: web.Request, resource: V2Resource, namespace: str | None,
                 match: Matcher, table: bool, include_object: str, bookmarks: bool) -> None:
        self.request = request
        self.resource = resource
        self.namespace = namespace
        self.match = match
        self.table = table
        self.include_object = include_object
        self.bookmarks = bookmarks
        self.response = web.StreamResponse(
            headers={"Content-Type": _JSON, "Cache-Control": "no-cache, private"})
        self._columns_sent = False

    async def prepare(self) -> None:
        self.response.enable_chunked_encoding()
        await self.response.prepare(self.request)

    async def offer(self, change: Change) -> None:
        """Send ``change`` as the event this watch should see, if any (selectors make a
        modification look like an addition or a deletion to a watch, as in Kubernetes)."""
        if change.served is not self.resource or not isinstance(change.object, dict):
            return
        if self.namespace is not None and change.namespace != self.namespace:
            return
        previous = change.previous
        was = isinstance(previous, dict) and self.match(previous)
        if change.type is ChangeType.DELETED:
            if was or self.match(change.object):
                await self.send(ChangeType.DELETED, change.object, change.revision)
            return
        now = self.match(change.object)
        if now:
            kind = ChangeType.MODIFIED if was else ChangeType.ADDED
        elif was:
            kind = ChangeType.DELETED
        else:
            return
        await self.send(kind, change.object, change.revision)

    async def send(self, kind: ChangeType, obj: Mapping[str, Any], revision: int) -> None:
        shown: Any = obj
        if self.table:
            shown = to_table(self.resource, [obj], revision=revision,
                             include_object=self.include_object,
                             with_columns=not self._columns_sent)
            self._columns_sent = True
        await self._write({"type": str(kind), "object": shown})

    async def bookmark(self, revision: int, *, initial_end: bool = False) -> None:
        metadata: dict[str, Any] = {"resourceVersion": str(revision)}
        if initial_end:
            metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
        await self._write({"type": "BOOKMARK", "object": {
            "kind": self.resource.kind, "apiVersion": self.resource.api_version,
            "metadata": metadata}})

    async def expired(self, message: str) -> None:
        await self._write({"type": "ERROR", "object": status_body(410, "Expired", message)})

    async def _write(self, event: dict[str, Any]) -> None:
        await self.response.write(orjson.dumps(event) + b"\n")


# -- documents -----------------------------------------------------------------------------


def version_info() -> dict[str, str]:
    """``/version``: the Kubernetes version imitated, tagged with pykubeedge's."""
    major, minor, patch = KUBE_VERSION
    return {
        "major": str(major), "minor": str(minor),
        "gitVersion": f"v{major}.{minor}.{patch}-pykubeedge-{__version__}",
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "",
        "goVersion": f"python{platform.python_version()}",
        "compiler": platform.python_implementation().lower(),
        "platform": f"{platform.system().lower()}/{platform.machine()}",
    }


def api_resource_list() -> dict[str, Any]:
    """``/api/v1``: the served core resources (read-only verbs)."""
    resources = []
    for r in SERVED:
        entry: dict[str, Any] = {"name": r.plural, "singularName": r.singular,
                                 "namespaced": r.namespaced, "kind": r.kind, "verbs": _VERBS}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        resources.append(entry)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1",
            "resources": resources}


def status_body(code: int, reason: str, message: str,
                details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``v1 Status`` failure object."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "message": message, "reason": reason,
                            "code": code}
    if details:
        body["details"] = details
    return body


def status_response(code: int, reason: str, message: str,
                    details: dict[str, Any] | None = None) -> web.Response:
    """An error answered the way the API server does (a Status body)."""
    return json_response(status_body(code, reason, message, details), status=code)


def json_response(body: Any, status: int = 200) -> web.Response:
    """``body`` as compact JSON."""
    return web.Response(body=orjson.dumps(body), status=status, content_type=_JSON)


def wants_table(accept: str) -> bool:
    """Whether the first acceptable type in ``accept`` is a ``meta.k8s.io`` Table.

    >>> wants_table("application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
    True
    >>> wants_table("application/json")
    False
    """
    for alternative in accept.split(","):
        media, *raw_params = (p.strip() for p in alternative.split(";"))
        params = dict(p.partition("=")[::2] for p in raw_params)
        if params.get("as") == "Table":
            if params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
                return True
            continue
        if params.get("as"):
            continue  # another representation (PartialObjectMetadata...) we do not offer
        if media in (_JSON, "*/*", "application/*", ""):
            return False
    return False


def _include_object(request: web.Request) -> str:
    value = request.query.get("includeObject", "Metadata")
    return value if value in INCLUDE_OBJECT else "Metadata"


def _matcher(label_selector: str, field_selector: str) -> Matcher:
    labels = parse_label_selector(label_selector)
    fields = parse_field_selector(field_selector)
    return lambda obj: labels(obj) and fields(obj)


def _rv(obj: Mapping[str, Any], default: int) -> int:
    metadata = obj.get("metadata")
    value = metadata.get("resourceVersion") if isinstance(metadata, Mapping) else None
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default
