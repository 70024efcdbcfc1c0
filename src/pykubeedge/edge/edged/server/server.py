"""Edged's kubelet server: the read-only port (127.0.0.1:10350 in KubeEdge) that EdgeStream
relays the API server's kubelet requests to.

Plain HTTP on loopback, as upstream's edged serves its read-only port (EdgeStream, on the same
host, is the only intended client; the caller's identity was checked by CloudStream)::

    async with KubeletServer(runtime, node_name="edge-1", port=10350,
                             pods=lambda: [w.pod for w in edged.workers.values()]) as server:
        ...

Routes (kubelet's): ``/containerLogs/{ns}/{pod}/{container}``, ``/exec/...``, ``/attach/...``,
``/portForward/{ns}/{pod}``, ``/stats/summary``, ``/metrics/resource``, ``/metrics/cadvisor``,
``/metrics``, ``/healthz``, ``/pods``, and ``/debug/vars`` (counters of this process: tasks,
file descriptors, open streams). Error texts are kubelet's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final

import orjson

from pykubeedge.core import expvar
from pykubeedge.core.clock import Sleep, TimeSource
from pykubeedge.core.errors import DecodeError
from pykubeedge.core.httphead import RequestHead, chunk, render_response_head, simple_response
from pykubeedge.edge.edged.runtime import (
    ContainerRuntimeError,
    ContainerState,
    ContainerStatus,
    NotFoundError,
    PodSandboxStatus,
    Runtime,
    SandboxState,
)
from pykubeedge.edge.edged.server import logs, metrics
from pykubeedge.edge.edged.server.relay import (
    forward_ports,
    relay_to_runtime,
    stream_options,
)
from pykubeedge.edge.edged.server.stats import CPURates, NodeStats, read_node_stats
from pykubeedge.transport.rawhttp import (
    Connection,
    RawHTTPServer,
    hangup,
    process_vars,
    unless_gone,
)

log = logging.getLogger(__name__)

DEFAULT_ADDRESS: Final = "127.0.0.1"
DEFAULT_READ_ONLY_PORT: Final = 10350
PODS_TTL: Final = 1.0
"""Seconds a runtime listing is reused across requests (50 followed logs ask every second)."""
TEXT: Final = "text/plain; charset=utf-8"
PROMETHEUS: Final = "text/plain; version=0.0.4; charset=utf-8"

PodsSource = Callable[[], list[dict[str, Any]]]


class HTTPFailure(Exception):
    """An answer kubelet gives with this status and text."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class KubeletServer:
    """The server (see the module doc). ``pods`` lists the pods Edged runs (``/pods``);
    ``root_dir`` is the filesystem the node's ``fs`` stats describe."""

    def __init__(self, runtime: Runtime, *, node_name: str, host: str = DEFAULT_ADDRESS,
                 port: int = DEFAULT_READ_ONLY_PORT, pods: PodsSource | None = None,
                 root_dir: str = "/", node_stats: Callable[[], NodeStats] | None = None,
                 clock: TimeSource = time.time, sleep: Sleep = asyncio.sleep,
                 follow_poll: float = logs.FOLLOW_POLL) -> None:
        self.runtime = runtime
        self.node_name = node_name
        self.pods = pods or (lambda: [])
        self.root_dir = root_dir
        self._node_stats = node_stats or (lambda: read_node_stats(self.root_dir))
        self._clock = clock
        self._sleep = sleep
        self._follow_poll = follow_poll
        self.http = RawHTTPServer(self._handle, host=host, port=port, name="edged server")
        self.rates = CPURates()
        self.counters = {"logs": 0, "exec": 0, "attach": 0, "portforward": 0, "stats": 0,
                         "errors": 0}
        self.open_logs = 0
        self.open_relays = 0
        self._listing: tuple[float, list[PodSandboxStatus]] | None = None
        self._listing_lock = asyncio.Lock()
        self._expvar = f"edged-server:{node_name}"

    @property
    def port(self) -> int:
        return self.http.port

    def vars(self) -> dict[str, Any]:
        return {"connections": self.http.connections, "requests": self.http.requests,
                "open_logs": self.open_logs, "open_relays": self.open_relays,
                **self.counters}

    async def start(self) -> None:
        await self.http.start()
        expvar.publish(self._expvar, self.vars)
        log.info("edged: kubelet server on http://%s:%d", self.http.host, self.port)

    async def close(self) -> None:
        expvar.unpublish(self._expvar, self.vars)
        await self.http.close()

    async def __aenter__(self) -> KubeletServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- routing --------------------------------------------------------------------------------

    async def _handle(self, head: RequestHead, conn: Connection) -> bool:
        parts = [p for p in head.path.split("/") if p]
        route = parts[0] if parts else ""
        try:
            if route in ("exec", "attach", "portForward"):
                await self._stream(route, parts[1:], head, conn)
                return False
            if head.method not in ("GET", "HEAD"):
                raise HTTPFailure(405, "Method Not Allowed")
            if route == "containerLogs":
                return await self._logs(parts[1:], head, conn)
            body, content_type = await self._get(route, parts[1:], head)
        except HTTPFailure as exc:
            self.counters["errors"] += 1
            await conn.send(simple_response(exc.code, str(exc) + "\n", close=True))
            return False
        except DecodeError as exc:
            self.counters["errors"] += 1
            await conn.send(simple_response(400, str(exc) + "\n", close=True))
            return False
        except ContainerRuntimeError as exc:
            self.counters["errors"] += 1
            await conn.send(simple_response(500, f"container runtime: {exc}\n", close=True))
            return False
        if head.method == "HEAD":
            body = b""
        await conn.send(simple_response(200, body, content_type=content_type))
        return True

    async def _get(self, route: str, rest: list[str], head: RequestHead) -> tuple[bytes, str]:
        if route == "healthz" and not rest:
            return b"ok", TEXT
        if route == "pods" and not rest:
            doc = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": self.pods()}
            return orjson.dumps(doc), "application/json"
        if route == "stats" and rest in (["summary"], []):
            self.counters["stats"] += 1
            only = head.params().get("only_cpu_and_memory", ["false"])[-1] == "true"
            snap = await self.snapshot()
            return orjson.dumps(metrics.summary(snap, self.rates, only_cpu_and_memory=only)), \
                "application/json"
        if route == "metrics" and rest in (["resource"], ["cadvisor"]):
            self.counters["stats"] += 1
            snap = await self.snapshot()
            render = metrics.resource_metrics if rest == ["resource"] else \
                metrics.cadvisor_metrics
            return render(snap), PROMETHEUS
        if route == "metrics" and not rest:
            return await self._own_metrics(), PROMETHEUS
        if route == "debug" and rest == ["vars"]:
            return orjson.dumps(process_vars()), "application/json"
        raise HTTPFailure(404, "404 page not found")

    # -- pods and containers --------------------------------------------------------------------

    async def _listing_now(self) -> list[PodSandboxStatus]:
        """The runtime's pods, at most :data:`PODS_TTL` old (one call for many callers)."""
        async with self._listing_lock:
            now = time.monotonic()
            if self._listing is not None and now - self._listing[0] < PODS_TTL:
                return self._listing[1]
            pods = await self.runtime.list_pods()
            self._listing = (now, pods)
            return pods

    async def _sandboxes(self, namespace: str, name: str) -> list[PodSandboxStatus]:
        found = [s for s in await self._listing_now()
                 if s.namespace == namespace and s.name == name]
        if not found:
            raise HTTPFailure(404, f'pod "{name}" does not exist')
        return found

    async def _container(self, namespace: str, pod: str, name: str, *,
                         previous: bool = False) -> ContainerStatus:
        instances = sorted(
            (c for s in await self._sandboxes(namespace, pod) for c in s.containers
             if c.name == name),
            key=lambda c: (c.attempt, c.created_at))
        if not instances:
            declared = any(c.get("name") == name for p in self.pods()
                           if _meta(p, "namespace") == namespace and _meta(p, "name") == pod
                           for c in (p.get("spec") or {}).get("containers") or ())
            if declared:
                raise HTTPFailure(400, f'container "{name}" in pod "{pod}" is waiting to start: '
                                       "ContainerCreating")
            raise HTTPFailure(404, f'container "{name}" not found in pod "{pod}"')
        if previous:
            if len(instances) < 2 or instances[-2].state is not ContainerState.EXITED:
                raise HTTPFailure(400, f'previous terminated container "{name}" in pod "{pod}" '
                                       "not found")
            return instances[-2]
        return instances[-1]

    async def _is_running(self, namespace: str, pod: str, container_id: str) -> bool:
        try:
            sandboxes = await self._sandboxes(namespace, pod)
        except HTTPFailure:
            return False
        return any(c.id == container_id and c.state is ContainerState.RUNNING
                   for s in sandboxes for c in s.containers)

    # -- logs -----------------------------------------------------------------------------------

    async def _logs(self, args: list[str], head: RequestHead, conn: Connection) -> bool:
        if len(args) != 3:
            raise HTTPFailure(404, "404 page not found")
        namespace, pod, name = args
        try:
            opts = logs.parse_log_options(head.params(), now=self._clock())
        except logs.LogOptionsError as exc:
            raise HTTPFailure(exc.code, str(exc)) from None
        container = await self._container(namespace, pod, name, previous=opts.previous)
        try:
            path = await self.runtime.container_log_path(container.id)
        except NotFoundError as exc:
            raise HTTPFailure(404, f'container "{name}" in pod "{pod}": {exc}') from None
        if not await asyncio.to_thread(os.path.exists, path):
            raise HTTPFailure(404, f'container "{name}" in pod "{pod}" has no log file')
        if container.state is not ContainerState.RUNNING:
            opts = replace(opts, follow=False)
        self.counters["logs"] += 1
        self.open_logs += 1
        answered = False
        try:
            async def answer() -> None:
                nonlocal answered
                await conn.send(render_response_head(200, [("Content-Type", TEXT),
                                                           ("Transfer-Encoding", "chunked")]))
                answered = True

            async def write(data: bytes) -> None:
                await conn.send(chunk(data))

            follower = logs.stream_log(
                path, opts, write=write, sleep=self._sleep, poll=self._follow_poll,
                running=lambda: self._is_running(namespace, pod, container.id),
                on_open=answer)
            try:
                async with hangup(conn) as gone:
                    finished, _ = await unless_gone(gone, follower)
                if not finished:
                    return False
            except OSError as exc:
                if answered:  # the body just ends, as kubelet's would
                    return False
                raise HTTPFailure(500, f'container "{name}" in pod "{pod}": cannot read its '
                                       f"log: {exc.strerror or exc}") from None
            await conn.send(chunk(b""))
        finally:
            self.open_logs -= 1
        return True

    # -- exec, attach, port-forward -------------------------------------------------------------

    async def _stream(self, route: str, args: list[str], head: RequestHead,
                      conn: Connection) -> None:
        if head.method not in ("GET", "POST"):
            raise HTTPFailure(405, "Method Not Allowed")
        params = head.params()
        url = await self._stream_url(route, args, params)
        self.counters["portforward" if route == "portForward" else route] += 1
        self.open_relays += 1
        try:
            await relay_to_runtime(head, conn, url)
        except (OSError, TimeoutError) as exc:
            log.warning("edged: %s: the runtime's streaming server failed: %s", route, exc)
            await conn.send(simple_response(502, f"container runtime streaming: {exc}\n",
                                            close=True))
        finally:
            self.open_relays -= 1

    async def _stream_url(self, route: str, args: list[str],
                          params: dict[str, list[str]]) -> str:
        if route == "portForward":
            if len(args) not in (2, 3):
                raise HTTPFailure(404, "404 page not found")
            namespace, pod = args[0], args[1]
            ready = [s for s in await self._sandboxes(namespace, pod)
                     if s.state is SandboxState.READY]
            if not ready:
                raise HTTPFailure(400, f'pod "{pod}" is not running')
            sandbox = max(ready, key=lambda s: (s.attempt, s.created_at))
            return await self.runtime.port_forward(sandbox.id, forward_ports(params))
        if len(args) not in (3, 4):  # {ns}/{pod}[/{uid}]/{container}
            raise HTTPFailure(404, "404 page not found")
        namespace, pod, name = args[0], args[1], args[-1]
        opts = stream_options(params, exec_=route == "exec")
        container = await self._container(namespace, pod, name)
        if container.state is not ContainerState.RUNNING:
            raise HTTPFailure(400, f'container "{name}" in pod "{pod}" is not running')
        if route == "exec":
            return await self.runtime.exec(container.id, opts.command, tty=opts.tty,
                                           stdin=opts.stdin, stdout=opts.stdout,
                                           stderr=opts.stderr)
        return await self.runtime.attach(container.id, tty=opts.tty, stdin=opts.stdin,
                                         stdout=opts.stdout, stderr=opts.stderr)

    # -- stats ----------------------------------------------------------------------------------

    async def snapshot(self) -> metrics.Snapshot:
        """The node's and its pods' usage now (runtime failures: node only, scrape error)."""
        node = asyncio.ensure_future(asyncio.to_thread(self._node_stats))
        pod_stats_call = asyncio.ensure_future(self.runtime.list_pod_sandbox_stats())
        try:
            pods, containers = await asyncio.gather(self.runtime.list_pods(),
                                                    self.runtime.list_container_stats())
        except ContainerRuntimeError as exc:
            log.warning("edged: stats: %s", exc)
            pod_stats_call.cancel()
            return metrics.Snapshot(self.node_name, await node, (), scrape_error=True)
        try:
            sandboxes = await pod_stats_call
        except ContainerRuntimeError as exc:
            # containerd 1.6 fails this for sandboxes without a cgroup parent: pod totals
            # are then the sum of their containers, as kubelet's CRI stats provider does
            log.debug("edged: pod sandbox stats: %s", exc)
            sandboxes = []
        by_container = {c.container_id: c for c in containers}
        by_sandbox = {s.sandbox_id: s for s in sandboxes}
        views = []
        for sandbox in pods:
            if sandbox.state is not SandboxState.READY:
                continue
            running = []
            for c in sandbox.containers:
                stats = by_container.get(c.id)
                if c.state is not ContainerState.RUNNING or stats is None:
                    continue
                running.append(metrics.ContainerView(
                    c.name, c.id, c.started_at or c.created_at, stats.usage, c.image,
                    stats.writable_layer_bytes))
            pod_stats = by_sandbox.get(sandbox.id)
            views.append(metrics.PodView(
                sandbox.name, sandbox.namespace, sandbox.uid, sandbox.created_at,
                tuple(running),
                usage=pod_stats.usage if pod_stats else metrics.sum_usage(
                    c.usage for c in running),
                interfaces=pod_stats.interfaces if pod_stats else (),
                default_interface=pod_stats.default_interface if pod_stats else "",
                process_count=pod_stats.process_count if pod_stats else None))
        return metrics.Snapshot(self.node_name, await node, tuple(views))

    async def _own_metrics(self) -> bytes:
        listing = await self._listing_now()
        running = sum(1 for s in listing if s.state is SandboxState.READY)
        states: dict[str, int] = {}
        for s in listing:
            for c in s.containers:
                states[c.state.value] = states.get(c.state.value, 0) + 1
        lines = ["# HELP kubelet_running_pods [ALPHA] Number of pods that have a running pod "
                 "sandbox", "# TYPE kubelet_running_pods gauge",
                 f"kubelet_running_pods {running}",
                 "# HELP kubelet_running_containers [ALPHA] Number of containers currently "
                 "running", "# TYPE kubelet_running_containers gauge"]
        lines += [f'kubelet_running_containers{{container_state="{state}"}} {count}'
                  for state, count in sorted(states.items())]
        return ("\n".join(lines) + "\n").encode()


def _meta(obj: dict[str, Any], key: str) -> Any:
    meta = obj.get("metadata")
    return meta.get(key) if isinstance(meta, dict) else None
