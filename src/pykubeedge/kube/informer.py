"""List-then-watch informers with a local store.

An informer lists a resource, then watches from the list's resourceVersion (with bookmarks),
and keeps a store keyed by ``namespace/name``. Every change reaches the handler exactly once
and in order:

- a watch that ends or breaks resumes from the last resourceVersion seen;
- a 410 Gone (the server no longer has that history) makes it list again, and the new list is
  *diffed* against the store, so the handler sees only what really changed while it was blind
  (ADDED / MODIFIED / DELETED), never a duplicate;
- errors back off exponentially with jitter, capped, and are logged.

    async def on_event(ev: InformerEvent) -> None:
        print(ev.type, ev.key)

    informer = Informer(kube, CONFIGMAPS, on_event, namespace="default")
    async with asyncio.TaskGroup() as tg:
        tg.create_task(informer.run())
        await informer.synced.wait()
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pykubeedge.core import errors
from pykubeedge.core.backoff import Backoff
from pykubeedge.core.objects import name_of, namespace_of, resource_version_of, uid_of
from pykubeedge.kube.client import KubeClient, Obj
from pykubeedge.kube.resources import Resource

log = logging.getLogger(__name__)

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


@dataclass(frozen=True, slots=True)
class InformerEvent:
    type: str  # ADDED | MODIFIED | DELETED
    obj: Obj  # the new object (for DELETED: the last known state)
    old: Obj | None = None  # the previous object, for MODIFIED

    @property
    def key(self) -> str:
        return object_key(self.obj)


Handler = Callable[[InformerEvent], Awaitable[None]]


def object_key(obj: Obj) -> str:
    """``namespace/name``, or ``name`` for a cluster-scoped object (the informer's key)."""
    ns = namespace_of(obj, default="")
    return f"{ns}/{name_of(obj)}" if ns else name_of(obj)



class Informer:
    def __init__(self, kube: KubeClient, resource: Resource, handler: Handler, *,
                 namespace: str | None = None, label_selector: str | None = None,
                 field_selector: str | None = None, watch_timeout: int = 300,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.kube = kube
        self.resource = resource
        self.handler = handler
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.watch_timeout = watch_timeout
        self.store: dict[str, Obj] = {}
        self.resource_version: str | None = None
        self.synced = asyncio.Event()
        self.relists = 0  # how many times the informer had to list again (metrics, tests)
        self._sleep = sleep
        self._backoff = Backoff()

    def get(self, key: str) -> Obj | None:
        return self.store.get(key)

    async def run(self) -> None:
        """List and watch until cancelled."""
        what = self.resource.plural
        while True:
            try:
                if self.resource_version is None:
                    await self._list()
                    self._backoff.reset()
                await self._watch()
            except errors.Gone:
                log.info("%s: resourceVersion %s is too old; listing again", what,
                         self.resource_version)
                self.resource_version = None
            except (errors.KubeConnectionError, errors.ServerError,
                    errors.TooManyRequests) as exc:
                delay = self._backoff.next_delay()
                log.warning("%s informer: %s; retrying in %.1fs", what, exc, delay)
                await self._sleep(delay)
            except errors.KubeError as exc:
                # 401/403/404 (CRD not installed yet...): not transient, but may heal.
                delay = self._backoff.next_delay()
                log.error("%s informer: %s (%s); retrying in %.1fs", what, exc.reason or exc.status,
                          exc, delay)
                self.resource_version = None
                await self._sleep(delay)

    async def _list(self) -> None:
        page = await self.kube.list(self.resource, namespace=self.namespace,
                                    label_selector=self.label_selector,
                                    field_selector=self.field_selector)
        fresh = {object_key(o): o for o in page.get("items") or []}
        if self.synced.is_set():
            self.relists += 1
        # Diff against what the handler has already seen.
        for key, gone in list(self.store.items()):
            if key not in fresh:
                del self.store[key]
                await self.handler(InformerEvent(DELETED, gone))
        for key, obj in fresh.items():
            old: Obj | None = self.store.get(key)
            if old is not None and uid_of(old) != uid_of(obj):
                # Deleted and created again while we were blind: two events, not a change.
                del self.store[key]
                await self.handler(InformerEvent(DELETED, old))
                old = None
            if old is None:
                self.store[key] = obj
                await self.handler(InformerEvent(ADDED, obj))
            elif resource_version_of(old) != resource_version_of(obj):
                self.store[key] = obj
                await self.handler(InformerEvent(MODIFIED, obj, old))
        self.resource_version = str((page.get("metadata") or {}).get("resourceVersion", ""))
        self.synced.set()

    async def _watch(self) -> None:
        async for event in self.kube.watch(
            self.resource, namespace=self.namespace, resource_version=self.resource_version,
            label_selector=self.label_selector, field_selector=self.field_selector,
            timeout_seconds=self.watch_timeout,
        ):
            self._backoff.reset()
            obj = event.get("object") or {}
            rv = resource_version_of(obj)
            if event["type"] != "BOOKMARK":
                await self._apply(event["type"], obj)
            if rv:
                self.resource_version = rv

    async def _apply(self, kind: str, obj: Obj) -> None:
        key = object_key(obj)
        old = self.store.get(key)
        if kind == DELETED:
            if old is None:
                return  # never seen: nothing to tell
            del self.store[key]
            await self.handler(InformerEvent(DELETED, obj))
        elif kind in (ADDED, MODIFIED):
            if old is not None and resource_version_of(old) == resource_version_of(obj):
                return  # a replay of what we already have
            self.store[key] = obj
            if old is None:
                await self.handler(InformerEvent(ADDED, obj))
            else:
                await self.handler(InformerEvent(MODIFIED, obj, old))
        else:
            log.warning("%s: ignoring watch event of unknown type %r", self.resource.plural, kind)
