"""An in-memory API server for the cloud controllers' unit tests: objects by resource,
resourceVersions from one counter, list + watch with the selectors EdgeController uses, and a
record of every write. Integration tests use the real one."""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import AsyncIterator
from typing import Any

from pykubeedge.core.errors import Conflict, NotFound
from pykubeedge.core.objects import name_of, namespace_of
from pykubeedge.kube.resources import Resource

Obj = dict[str, Any]


def _merge(base: Obj, patch: Obj) -> Obj:
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _matches(obj: Obj, label_selector: str | None, field_selector: str | None) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, (label_selector or "").split(",")):
        if term not in labels:
            return False
    if field_selector == "spec.nodeName!=":
        return bool((obj.get("spec") or {}).get("nodeName"))
    if field_selector and field_selector.startswith("spec.nodeName="):
        return (obj.get("spec") or {}).get("nodeName") == field_selector.split("=", 1)[1]
    return True


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Obj]] = {}
        self.writes: list[tuple[str, str, str]] = []  # (verb, plural, key)
        self.reads: list[tuple[str, str]] = []  # (plural, key) of every get
        self._rv = itertools.count(100)
        self._uid = itertools.count(1)
        self._watchers: dict[str, list[asyncio.Queue[Obj]]] = {}

    def _key(self, res: Resource, name: str, namespace: str | None) -> str:
        return f"{namespace}/{name}" if res.namespaced else name

    def _store(self, res: Resource) -> dict[str, Obj]:
        return self.objects.setdefault(res.plural, {})

    def _emit(self, res: Resource, kind: str, obj: Obj) -> None:
        for queue in self._watchers.get(res.plural, []):
            queue.put_nowait({"type": kind, "object": copy.deepcopy(obj)})

    def _bump(self, obj: Obj) -> Obj:
        obj.setdefault("metadata", {})["resourceVersion"] = str(next(self._rv))
        return obj

    async def get(self, res: Resource, name: str, *, namespace: str | None = None,
                  subresource: str | None = None) -> Obj:
        key = self._key(res, name, namespace)
        self.reads.append((res.plural, key))
        obj = self._store(res).get(key)
        if obj is None:
            raise NotFound(f'{res.plural} "{name}" not found', status=404, reason="NotFound")
        return copy.deepcopy(obj)

    async def list(self, res: Resource, *, namespace: str | None = None,
                   label_selector: str | None = None, field_selector: str | None = None,
                   page_size: int = 500) -> Obj:
        items = [copy.deepcopy(o) for o in self._store(res).values()
                 if (namespace is None or namespace_of(o) == namespace)
                 and _matches(o, label_selector, field_selector)]
        return {"items": items, "metadata": {"resourceVersion": str(next(self._rv))}}

    async def watch(self, res: Resource, *, namespace: str | None = None,
                    resource_version: str | None = None, label_selector: str | None = None,
                    field_selector: str | None = None, timeout_seconds: int = 300,
                    bookmarks: bool = True) -> AsyncIterator[Obj]:
        queue: asyncio.Queue[Obj] = asyncio.Queue()
        self._watchers.setdefault(res.plural, []).append(queue)
        try:
            while True:
                event = await queue.get()
                if _matches(event["object"], label_selector, field_selector):
                    yield event
        finally:
            self._watchers[res.plural].remove(queue)

    async def create(self, res: Resource, obj: Obj, *, namespace: str | None = None) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        ns = namespace or meta.get("namespace")
        if res.namespaced:
            meta["namespace"] = ns or "default"
        key = self._key(res, name_of(obj), meta.get("namespace"))
        if key in self._store(res):
            raise Conflict(f'{res.plural} "{name_of(obj)}" already exists', status=409,
                           reason="AlreadyExists")
        meta.setdefault("uid", f"uid-{next(self._uid)}")
        self._store(res)[key] = self._bump(obj)
        self.writes.append(("create", res.plural, key))
        self._emit(res, "ADDED", obj)
        return copy.deepcopy(obj)

    async def patch(self, res: Resource, name: str, patch: Any, *,
                    namespace: str | None = None, patch_type: str = "merge",
                    subresource: str | None = None, field_manager: str | None = None) -> Obj:
        key = self._key(res, name, namespace)
        current = self._store(res).get(key)
        if current is None:
            raise NotFound(f'{res.plural} "{name}" not found', status=404, reason="NotFound")
        want = (patch.get("metadata") or {}).get("uid") if isinstance(patch, dict) else None
        if want and want != current["metadata"]["uid"]:
            message = (f"Precondition failed: UID in precondition: {want}, UID in object "
                       f"meta: {current['metadata']['uid']}")
            raise Conflict(message, status=409, reason="Conflict", body={
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": "Conflict",
                "details": {"name": name, "kind": res.plural}, "code": 409})
        obj = self._bump(_merge(current, patch))
        self._store(res)[key] = obj
        self.writes.append((f"patch{'/' + subresource if subresource else ''}", res.plural,
                            key))
        self._emit(res, "MODIFIED", obj)
        return copy.deepcopy(obj)

    async def patch_status(self, res: Resource, name: str, patch: Any, *,
                           namespace: str | None = None, patch_type: str = "strategic") -> Obj:
        return await self.patch(res, name, patch, namespace=namespace, subresource="status")

    async def delete(self, res: Resource, name: str, *, namespace: str | None = None,
                     uid: str | None = None, grace_period_seconds: int | None = None) -> Obj:
        key = self._key(res, name, namespace)
        obj = self._store(res).pop(key, None)
        if obj is None:
            raise NotFound(f'{res.plural} "{name}" not found', status=404, reason="NotFound")
        self.writes.append(("delete", res.plural, key))
        self._emit(res, "DELETED", self._bump(obj))
        return copy.deepcopy(obj)

    async def request(self, method: str, path: str, **kw: Any) -> Obj:
        raise NotImplementedError(f"FakeKube: {method} {path}")
