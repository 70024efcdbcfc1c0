"""The async Kubernetes API client: plain JSON dicts in and out, typed errors.

This is the only code in pykubeedge that speaks HTTP to the API server (kopf's rule).

    async with KubeClient(load_kubeconfig(path)) as kube:
        pod = await kube.get(PODS, "nginx", namespace="default")
        await kube.patch(NODES, "edge-1", {"metadata": {"labels": {"a": "b"}}})
        async for event in kube.watch(CONFIGMAPS, namespace="default", resource_version=rv):
            ...
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

import aiohttp
import orjson

from pykubeedge.core import errors
from pykubeedge.kube.config import KubeConfig
from pykubeedge.kube.resources import Resource

log = logging.getLogger(__name__)

Obj = dict[str, Any]
PatchType = Literal["merge", "strategic", "json", "apply"]
PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}
_ERRORS_BY_STATUS: dict[int, type[errors.KubeError]] = {
    400: errors.BadRequest,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    410: errors.Gone,
    422: errors.Invalid,
    429: errors.TooManyRequests,
}
# One watch event line can hold a large object; beyond this the stream is broken or hostile.
MAX_WATCH_LINE = 32 * 1024 * 1024
LIST_PAGE_SIZE = 500


def error_from_status(status: int, body: Any) -> errors.KubeError:
    """Map an HTTP status and a (possibly missing) Status object to the typed error."""
    if not isinstance(body, dict):
        body = {}
    reason = str(body.get("reason", ""))
    message = str(body.get("message", "")) or f"HTTP {status}"
    if status >= 500:
        cls: type[errors.KubeError] = errors.ServerError
    else:
        cls = _ERRORS_BY_STATUS.get(status, errors.KubeError)
    return cls(message, status=status, reason=reason, body=body)


class KubeClient:
    """An aiohttp session bound to one API server and one identity."""

    def __init__(self, config: KubeConfig, *, timeout: float = 30.0,
                 user_agent: str = "pykubeedge") -> None:
        self.config = config
        self._timeout = timeout
        self._headers = {"Accept": "application/json", "User-Agent": user_agent}
        if config.token:
            self._headers["Authorization"] = f"Bearer {config.token}"
        self._ssl = config.ssl_context()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl else False, limit=100)
            self._session = aiohttp.ClientSession(
                base_url=self.config.server, headers=self._headers, connector=connector,
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      body: Any = None, content_type: str = "application/json",
                      timeout: float | None = None) -> Any:
        """One API call; returns the decoded JSON body, raises a KubeError subclass."""
        data: bytes | None = None
        headers = {}
        if body is not None:
            data = body if isinstance(body, bytes) else orjson.dumps(body)
            headers["Content-Type"] = content_type
        try:
            async with self._http().request(
                method, path, params=params, data=data, headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout or self._timeout),
            ) as resp:
                raw = await resp.read()
                decoded = _loads(raw)
                if resp.status >= 300:
                    raise error_from_status(resp.status, decoded)
                return decoded
        except aiohttp.ClientError as exc:
            raise errors.KubeConnectionError(
                f"cannot reach the API server at {self.config.server}: {exc}") from exc
        except TimeoutError as exc:
            raise errors.KubeConnectionError(
                f"{method} {path} timed out after {timeout or self._timeout}s") from exc

    # -- verbs ---------------------------------------------------------------------------

    async def get(self, res: Resource, name: str, *, namespace: str | None = None,
                  subresource: str | None = None) -> Obj:
        result: Obj = await self.request("GET", res.path(namespace, name, subresource))
        return result

    async def list(self, res: Resource, *, namespace: str | None = None,
                   label_selector: str | None = None, field_selector: str | None = None,
                   page_size: int = LIST_PAGE_SIZE) -> Obj:
        """All items (following ``continue`` pages) and the list's resourceVersion."""
        params = _selectors(label_selector, field_selector)
        params["limit"] = str(page_size)
        items: list[Obj] = []
        while True:
            page: Obj = await self.request("GET", res.path(namespace), params=params)
            items.extend(page.get("items") or [])
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                page["items"] = items
                return page
            params["continue"] = cont

    async def create(self, res: Resource, obj: Obj, *, namespace: str | None = None) -> Obj:
        ns = namespace or (obj.get("metadata") or {}).get("namespace")
        body = {"apiVersion": res.api_version, "kind": res.kind, **obj}
        result: Obj = await self.request("POST", res.path(ns), body=body)
        return result

    async def replace(self, res: Resource, obj: Obj, *, subresource: str | None = None) -> Obj:
        """PUT the whole object (``update``); a stale resourceVersion raises Conflict."""
        meta = obj.get("metadata") or {}
        body = {"apiVersion": res.api_version, "kind": res.kind, **obj}
        path = res.path(meta.get("namespace"), meta.get("name"), subresource)
        result: Obj = await self.request("PUT", path, body=body)
        return result

    async def patch(self, res: Resource, name: str, patch: Any, *,
                    namespace: str | None = None, patch_type: PatchType = "merge",
                    subresource: str | None = None, field_manager: str | None = None) -> Obj:
        params = {"fieldManager": field_manager} if field_manager else None
        if patch_type == "apply":
            params = {"fieldManager": field_manager or "pykubeedge", "force": "true"}
        result: Obj = await self.request(
            "PATCH", res.path(namespace, name, subresource), params=params, body=patch,
            content_type=PATCH_CONTENT_TYPES[patch_type],
        )
        return result

    async def patch_status(self, res: Resource, name: str, patch: Any, *,
                           namespace: str | None = None,
                           patch_type: PatchType = "strategic") -> Obj:
        return await self.patch(res, name, patch, namespace=namespace, patch_type=patch_type,
                                subresource="status")

    async def delete(self, res: Resource, name: str, *, namespace: str | None = None,
                     uid: str | None = None, grace_period_seconds: int | None = None) -> Obj:
        """Delete; ``uid`` makes it a precondition (only that incarnation is deleted)."""
        body: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if uid:
            body["preconditions"] = {"uid": uid}
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        result: Obj = await self.request("DELETE", res.path(namespace, name), body=body)
        return result

    async def watch(self, res: Resource, *, namespace: str | None = None,
                    resource_version: str | None = None, label_selector: str | None = None,
                    field_selector: str | None = None, timeout_seconds: int = 300,
                    bookmarks: bool = True) -> AsyncIterator[Obj]:
        """Yield watch events ``{"type": ADDED|MODIFIED|DELETED|BOOKMARK, "object": {...}}``.

        An ERROR event is raised as the matching KubeError (410 -> Gone). The stream ends
        normally when the server closes it (``timeout_seconds``).
        """
        params = _selectors(label_selector, field_selector)
        params["watch"] = "true"
        params["timeoutSeconds"] = str(timeout_seconds)
        if bookmarks:
            params["allowWatchBookmarks"] = "true"
        if resource_version:
            params["resourceVersion"] = resource_version
        # The server ends the watch after timeout_seconds; allow a margin before we call it dead.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout,
                                        sock_read=timeout_seconds + 30)
        try:
            async with self._http().get(res.path(namespace), params=params,
                                        timeout=timeout) as resp:
                if resp.status >= 300:
                    raise error_from_status(resp.status, _loads(await resp.read()))
                async for line in _lines(resp.content):
                    event = _loads(line)
                    if not isinstance(event, dict) or "type" not in event:
                        log.warning("ignoring a malformed watch event from %s", res.plural)
                        continue
                    if event["type"] == "ERROR":
                        status = event.get("object") or {}
                        raise error_from_status(int(status.get("code") or 500), status)
                    yield event
        except aiohttp.ClientError as exc:
            raise errors.KubeConnectionError(f"watch of {res.plural} broke: {exc}") from exc
        except TimeoutError as exc:
            raise errors.KubeConnectionError(f"watch of {res.plural} went silent") from exc


def _selectors(label_selector: str | None, field_selector: str | None) -> dict[str, str]:
    params: dict[str, str] = {}
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    return params


def _loads(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"message": raw[:200].decode(errors="replace")}


async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Split a byte stream on newlines with a bounded buffer."""
    buf = bytearray()
    async for chunk in stream.iter_any():
        buf.extend(chunk)
        while True:
            i = buf.find(b"\n")
            if i < 0:
                break
            line = bytes(buf[:i])
            del buf[: i + 1]
            if line.strip():
                yield line
        if len(buf) > MAX_WATCH_LINE:
            raise errors.KubeConnectionError("watch event exceeds the size bound")
    if buf.strip():
        yield bytes(buf)
