"""Test doubles for Edged: fake time, a fake MetaManager that answers as
``docs/edge-messages.md`` says, pod factories and a running hive."""

from __future__ import annotations

import asyncio
import copy
import heapq
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

from pykubeedge.beehive import NEVER, BeehiveContext, Hive
from pykubeedge.core.message import Message, error_message, new_message, response
from pykubeedge.edge.edged import Edged, FakeRuntime, HostInfo

NODE = "edge-1"
START = 1_700_000_000.0


async def settle(rounds: int = 200) -> None:
    """Let every task run until it waits on something (counted in loop turns, not seconds)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class FakeTime:
    """A wall clock that moves only when told, and a ``sleep`` that follows it."""

    def __init__(self, now: float = START) -> None:
        self.now = now
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        if delay <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + delay, next(self._seq), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking sleepers in deadline order and letting each settle."""
        target = self.now + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, deadline)
            if not future.done():
                future.set_result(None)
                await settle()
        self.now = target
        await settle()


def host_info(**changes: Any) -> HostInfo:
    base = {
        "hostname": "edge-host",
        "internal_ip": "192.168.1.10",
        "cpu": 4,
        "memory_bytes": 8 * 1024**3,
        "ephemeral_storage_bytes": 100 * 1024**3,
        "kernel_version": "6.1.0-test",
        "os_image": "Debian GNU/Linux 12 (bookworm)",
        "operating_system": "linux",
        "architecture": "arm64",
        "machine_id": "m-1",
        "boot_id": "b-1",
    }
    base.update(changes)
    return HostInfo(**base)


@dataclass
class FakeMetaManager:
    """Answers Edged's ``send_sync`` requests as MetaManager does; records everything."""

    name: str = "metamanager"
    group: str = "meta"
    restart_policy: Any = NEVER
    online: bool = True
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: list[Message] = field(default_factory=list)
    node: dict[str, Any] | None = None
    lease: dict[str, Any] | None = None
    refuse_podpatch: int = 0
    fail_pod_query: int = 0
    _rv: Any = field(default_factory=lambda: itertools.count(100))

    async def start(self, ctx: BeehiveContext) -> None:
        while True:
            msg = await ctx.receive(self.name)
            self.seen.append(msg)
            if msg.sync:
                ctx.respond(self.answer(msg))

    # -- answers ----------------------------------------------------------------------------

    def answer(self, msg: Message) -> Message:
        _namespace, kind, *rest = msg.resource.split("/")
        name = rest[0] if rest else ""
        op = msg.operation
        reply: Callable[[Any], Message] = lambda content: _reply(msg, content)  # noqa: E731
        if kind == "node" and op == "insert":
            if not self.online:
                return _error(msg, "not connected")
            if self.node is not None:  # as MetaManager passes the cloud's StatusError on
                return _error(msg, f'nodes "{name}" already exists')
            self.node = copy.deepcopy(msg.content)
            self.node["metadata"]["uid"] = "node-uid-1"
            self.node["metadata"]["resourceVersion"] = str(next(self._rv))
            return reply({"Object": self.node, "Err": ""})
        if kind == "node" and op == "query":
            return reply([self.node] if self.node else [])
        if kind == "node" and op == "update" and self.node is not None:
            labels = self.node["metadata"].setdefault("labels", {})
            labels.update(msg.content["metadata"].get("labels") or {})  # upstream updateNode
            return reply("OK")
        if kind == "nodepatch":
            return reply({"Object": self.node, "Err": ""} if self.online else "OK")
        if kind == "lease":
            if not self.online:
                return _error(msg, "not connected")
            if op == "insert" and self.lease is not None:
                return reply({"Object": None, "Err": {"ErrStatus": {
                    "message": 'leases "edge-1" already exists', "reason": "AlreadyExists",
                    "code": 409}}})
            if op == "query":  # MetaManager answers a query with a list
                return reply([self.lease] if self.lease else [])
            if op == "update" and self.lease is not None and (
                    msg.content["metadata"].get("resourceVersion")
                    != self.lease["metadata"]["resourceVersion"]):
                return reply({"Object": None, "Err": {"ErrStatus": {
                    "message": "Operation cannot be fulfilled on leases.coordination.k8s.io "
                               '"edge-1": the object has been modified', "reason": "Conflict",
                    "code": 409}}})
            self.lease = copy.deepcopy(msg.content)
            self.lease["metadata"]["resourceVersion"] = str(next(self._rv))
            return reply({"Object": self.lease, "Err": ""})
        if kind == "podpatch":
            if self.refuse_podpatch:
                self.refuse_podpatch -= 1
                return _error(msg, "store busy")
            return reply("OK")
        if kind == "pod" and op == "query" and not name:
            if self.fail_pod_query:
                self.fail_pod_query -= 1
                return _error(msg, "database locked")
            return reply(list(self.pods.values()))
        if kind == "pod" and op == "delete":
            return reply("OK")
        if kind in ("configmap", "secret") and op == "query":
            obj = self.objects.get(msg.resource)
            return reply([obj]) if obj is not None else _error(msg, f"{kind} {name} not found")
        return _error(msg, f"unsupported {op} {msg.resource}")

    # -- inspection -------------------------------------------------------------------------

    def requests(self, operation: str | None = None, kind: str | None = None) -> list[Message]:
        return [
            m
            for m in self.seen
            if (operation is None or m.operation == operation)
            and (kind is None or m.resource.split("/")[1] == kind)
        ]

    def pod_patches(self, name: str | None = None) -> list[dict[str, Any]]:
        """Parsed podpatch contents (the content is a JSON string, as upstream)."""
        patches = []
        for m in self.requests("patch", "podpatch"):
            assert isinstance(m.content, str)
            if name is None or m.resource.endswith(f"/{name}"):
                patches.append(orjson.loads(m.content))
        return patches

    def last_status(self, name: str) -> dict[str, Any]:
        patches = self.pod_patches(name)
        assert patches, f"no status reported for {name}"
        status: dict[str, Any] = patches[-1]["status"]
        return status

    def events(self) -> list[dict[str, Any]]:
        """Every Event sent (inserts and the event of each patch), oldest first."""
        found = []
        for m in self.seen:
            if m.resource.split("/")[1] != "event":
                continue
            content = m.content
            found.append(content["event"] if m.operation == "patch" else content)
        return found

    def node_patches(self) -> list[dict[str, Any]]:
        result = []
        for m in self.requests("patch", "nodepatch"):
            assert isinstance(m.content, str)
            result.append(orjson.loads(m.content))
        return result


def _reply(msg: Message, content: Any) -> Message:
    return response(msg, content)


def _error(msg: Message, text: str) -> Message:
    return error_message(msg, text, source="metamanager")


def make_pod(
    name: str = "web",
    *,
    uid: str | None = None,
    namespace: str = "default",
    node: str = NODE,
    containers: list[dict[str, Any]] | None = None,
    restart_policy: str | None = None,
    rv: str = "1",
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "nodeName": node,
        "containers": containers or [{"name": "app", "image": "nginx:1.27"}],
        **spec,
    }
    if restart_policy:
        body["restartPolicy"] = restart_policy
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid or f"uid-{name}",
            "resourceVersion": rv,
        },
        "spec": body,
        "status": {"phase": "Pending"},
    }


def pod_message(operation: str, pod: Any, resource: str | None = None) -> Message:
    if resource is None:
        meta = pod["metadata"]
        resource = f"{meta['namespace']}/pod/{meta['name']}"
    return new_message(
        source="metamanager", group="edged", resource=resource, operation=operation, content=pod
    )


def make_edged(t: FakeTime, runtime: FakeRuntime | None = None, **kwargs: Any) -> Edged:
    host = kwargs.pop("host", None) or host_info()

    async def probe() -> HostInfo:
        return host

    params: dict[str, Any] = {
        "node_name": NODE,
        "runtime": runtime if runtime is not None else FakeRuntime(clock=t.clock),
        "host_probe": kwargs.pop("host_probe", probe),
        "clock": t.clock,
        "sleep": t.sleep,
        "jitter": lambda: 1.0,
        "request_timeout": 5.0,
    }
    params.update(kwargs)
    return Edged(**params)


@asynccontextmanager
async def running(edged: Edged, meta: FakeMetaManager) -> AsyncIterator[Hive]:
    """A real hive with the fake MetaManager and Edged, settled after start."""
    async with Hive() as hive:
        hive.add_module(meta)
        hive.add_module(edged)
        await settle()
        yield hive
