"""The streaming and stats half of :class:`~.fake.FakeRuntime` (a mixin): enough of a
runtime that Edged's kubelet server, EdgeStream and CloudStream can be tested without
containerd, and that simulated nodes answer ``kubectl logs``/``exec``/``top``.

- ``exec``/``attach``/``port_forward`` hand out single-use URLs (valid a minute) of a small
  streaming server of its own (started on first use). It upgrades the connection
  (``101 Switching Protocols``, no SPDY) and then: ``echo a b`` writes ``a b\\n`` and ends;
  ``cat``, an attach and a port-forward echo what they receive until the client closes;
  ``sleep`` holds the connection until the client closes; anything else writes
  ``fake exec: <command>\\n`` and ends.
- Logs are CRI-format files under :attr:`pod_logs_dir` (kubelet's layout), created on first
  request with one line saying the container started; :meth:`write_log` adds lines.
- Stats grow with time: a running container uses 10 millicores and 4 MiB.

    runtime = FakeRuntime()
    runtime.pod_logs_dir = Path("/tmp/pod-logs")
    url = await runtime.exec(cid, ["echo", "hi"], tty=False, stdin=False, stdout=True,
                             stderr=True)
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pykubeedge.core.clock import TimeSource
from pykubeedge.core.httphead import RequestHead, render_response_head, simple_response
from pykubeedge.edge.edged.runtime import (
    CapacityError,
    ContainerRuntimeError,
    ContainerState,
    NotFoundError,
    SandboxState,
)
from pykubeedge.edge.edged.server.logs import format_cri_line
from pykubeedge.edge.edged.streaming import ContainerStats, PodSandboxStats, ResourceUsage
from pykubeedge.edge.edged.volumes import pod_log_dir
from pykubeedge.transport.rawhttp import Connection, RawHTTPServer, close_writer

MAX_TOKENS: Final = 1000
TOKEN_TTL: Final = 60.0
FAKE_CPU_CORES: Final = 0.01
FAKE_MEMORY_BYTES: Final = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Session:
    kind: str
    command: tuple[str, ...]
    issued: float


class FakeStreaming:
    """Mixed into :class:`~.fake.FakeRuntime` (which provides the containers and clock)."""

    _containers: dict[str, Any]
    _sandboxes: dict[str, Any]
    _clock: TimeSource
    pod_logs_dir: Path | None = None
    _stream_server: RawHTTPServer | None = None
    _tokens: OrderedDict[str, _Session] | None = None
    _stream_lock: asyncio.Lock | None = None

    # -- streaming ------------------------------------------------------------------------------

    async def exec(self, container_id: str, cmd: Sequence[str], *, tty: bool, stdin: bool,
                   stdout: bool, stderr: bool) -> str:
        self._running_container(container_id)
        if tty and stderr:
            raise ContainerRuntimeError("tty and stderr cannot both be true")
        return await self._issue("exec", tuple(cmd))

    async def attach(self, container_id: str, *, tty: bool, stdin: bool, stdout: bool,
                     stderr: bool) -> str:
        self._running_container(container_id)
        return await self._issue("attach", ())

    async def port_forward(self, sandbox_id: str, ports: Sequence[int]) -> str:
        sandbox = self._sandboxes.get(sandbox_id)
        if sandbox is None:
            raise NotFoundError(f"no sandbox {sandbox_id}")
        if sandbox.status.state is not SandboxState.READY:
            raise ContainerRuntimeError("sandbox container is not running")
        return await self._issue("portforward", ())

    def _running_container(self, container_id: str) -> Any:
        container = self._containers.get(container_id)
        if container is None:
            raise NotFoundError(f"no container {container_id}")
        if container.status.state is not ContainerState.RUNNING:
            raise ContainerRuntimeError(f"container {container_id[:12]} is not running")
        return container

    async def _issue(self, kind: str, command: tuple[str, ...]) -> str:
        if self._stream_lock is None:
            self._stream_lock = asyncio.Lock()
        async with self._stream_lock:
            if self._stream_server is None:
                server = RawHTTPServer(self._serve_stream, host="127.0.0.1", port=0,
                                       name="fake streaming server")
                await server.start()
                self._stream_server = server
                self._tokens = OrderedDict()
        assert self._tokens is not None
        now = time.monotonic()
        while self._tokens and now - next(iter(self._tokens.values())).issued > TOKEN_TTL:
            self._tokens.popitem(last=False)
        if len(self._tokens) >= MAX_TOKENS:
            raise CapacityError(f"{MAX_TOKENS} streaming sessions are waiting already")
        token = secrets.token_urlsafe(6)
        self._tokens[token] = _Session(kind, command, now)
        return f"http://127.0.0.1:{self._stream_server.port}/{kind}/{token}"

    async def _serve_stream(self, head: RequestHead, conn: Connection) -> bool:
        parts = head.path.strip("/").split("/")
        session = None
        if len(parts) == 2 and self._tokens is not None:
            session = self._tokens.pop(parts[1], None)
        if session is None or session.kind != parts[0] or (
                time.monotonic() - session.issued > TOKEN_TTL):
            await conn.send(simple_response(404, "unknown or expired stream token\n",
                                            close=True))
            return False
        await conn.send(render_response_head(101, [
            ("Connection", "Upgrade"), ("Upgrade", head.header("upgrade") or "fake")]))
        command = session.command
        if session.kind == "exec" and command[:1] == ("echo",):
            await conn.send((" ".join(command[1:]) + "\n").encode())
        elif session.kind == "exec" and command[:1] == ("sleep",):
            while await conn.reader.read(65536):
                pass
        elif session.kind != "exec" or command[:1] == ("cat",):
            while data := await conn.reader.read(65536):
                await conn.send(data)
        else:
            await conn.send(f"fake exec: {' '.join(command)}\n".encode())
        await close_writer(conn.writer)
        return False

    async def close(self) -> None:
        """Stop the streaming server (its sessions end)."""
        server, self._stream_server = self._stream_server, None
        if server is not None:
            await server.close()

    # -- logs -----------------------------------------------------------------------------------

    def _log_path(self, container_id: str) -> Path:
        container = self._containers.get(container_id)
        if container is None:
            raise NotFoundError(f"no container {container_id}")
        if self.pod_logs_dir is None:
            raise NotFoundError("the fake runtime keeps no log files (pod_logs_dir is unset)")
        sandbox = self._sandboxes[container.sandbox_id].status
        directory = pod_log_dir(self.pod_logs_dir, sandbox.namespace, sandbox.name, sandbox.uid)
        path: Path = directory / container.spec.name / f"{container.spec.attempt}.log"
        return path

    async def container_log_path(self, container_id: str) -> str:
        path = self._log_path(container_id)
        if not path.exists():
            status = self._containers[container_id].status
            line = format_cri_line(status.started_at or self._clock(), "stdout",
                                   f"fake container {status.name} started")
            await asyncio.to_thread(_append, path, line)
        return str(path)

    async def write_log(self, container_id: str, text: str, stream: str = "stdout") -> None:
        """Append ``text`` (one record per line) to the container's log, stamped now."""
        await self.container_log_path(container_id)
        data = b"".join(format_cri_line(self._clock(), stream, line)
                        for line in text.splitlines())
        await asyncio.to_thread(_append, self._log_path(container_id), data)

    # -- stats ----------------------------------------------------------------------------------

    def _usage(self, started_at: float, now: float) -> ResourceUsage:
        return ResourceUsage(timestamp=now,
                             cpu_core_nanoseconds=max(int((now - started_at) * FAKE_CPU_CORES
                                                          * 1e9), 1),
                             memory_working_set_bytes=FAKE_MEMORY_BYTES,
                             memory_usage_bytes=FAKE_MEMORY_BYTES,
                             memory_rss_bytes=FAKE_MEMORY_BYTES // 2)

    async def list_container_stats(self) -> list[ContainerStats]:
        now = self._clock()
        out = []
        for container_id, container in self._containers.items():
            status = container.status
            if status.state is not ContainerState.RUNNING:
                continue
            sandbox = self._sandboxes[container.sandbox_id].status
            out.append(ContainerStats(container_id, status.name, sandbox.name,
                                      sandbox.namespace, sandbox.uid,
                                      self._usage(status.started_at, now)))
        return out

    async def list_pod_sandbox_stats(self) -> list[PodSandboxStats]:
        now = self._clock()
        out = []
        for sandbox_id, sandbox in self._sandboxes.items():
            status = sandbox.status
            if status.state is not SandboxState.READY:
                continue
            running = [c.status for c in sandbox.containers.values()
                       if c.status.state is ContainerState.RUNNING]
            cpu = sum(self._usage(c.started_at, now).cpu_core_nanoseconds for c in running)
            usage = ResourceUsage(now, max(cpu, 1), FAKE_MEMORY_BYTES * max(len(running), 1))
            out.append(PodSandboxStats(sandbox_id, status.name, status.namespace, status.uid,
                                       usage, process_count=len(running)))
        return out


def _append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError), open(path, "ab") as f:
        f.write(data)
