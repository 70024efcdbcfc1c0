"""CRI's streaming calls for :class:`~.remote.CRIRuntime`: ``Exec``, ``Attach`` and
``PortForward`` answer with a URL of containerd's streaming server (single use, valid a
minute), and ``ContainerStatus`` names the container's log file::

    url = await runtime.exec(cid, ["ls", "/"], tty=False, stdin=False, stdout=True,
                             stderr=True)       # 'http://127.0.0.1:40611/exec/5b7QpUeV'
    path = await runtime.container_log_path(cid)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from pykubeedge.edge.edged.cri import api_pb2 as api
from pykubeedge.edge.edged.runtime import ContainerRuntimeError, NotFoundError


def stream_url(url: str, what: str) -> str:
    """``url`` if it is an absolute http(s) URL, else the runtime broke CRI's contract.

    >>> stream_url("http://127.0.0.1:1/exec/x", "Exec")
    'http://127.0.0.1:1/exec/x'
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ContainerRuntimeError(f"CRI {what} answered an unusable streaming URL {url!r}")
    return url


class CRIStreaming:
    """The streaming half of :class:`~.streaming.StreamingRuntime` over CRI (a mixin of
    :class:`~.remote.CRIRuntime`, which provides ``_call`` and the timeouts)."""

    query_timeout: float

    _call: Callable[[str, str, Any, float], Awaitable[Any]]  # CRIRuntime's gRPC call

    async def exec(self, container_id: str, cmd: Sequence[str], *, tty: bool, stdin: bool,
                   stdout: bool, stderr: bool) -> str:
        """CRI ``Exec``: the URL the exec session is served on."""
        reply = await self._call("runtime", "Exec", api.ExecRequest(
            container_id=container_id, cmd=list(cmd), tty=tty, stdin=stdin, stdout=stdout,
            stderr=stderr), self.query_timeout)
        return stream_url(reply.url, "Exec")

    async def attach(self, container_id: str, *, tty: bool, stdin: bool, stdout: bool,
                     stderr: bool) -> str:
        """CRI ``Attach``: the URL of a session on the container's main process."""
        reply = await self._call("runtime", "Attach", api.AttachRequest(
            container_id=container_id, stdin=stdin, tty=tty, stdout=stdout, stderr=stderr),
            self.query_timeout)
        return stream_url(reply.url, "Attach")

    async def port_forward(self, sandbox_id: str, ports: Sequence[int]) -> str:
        """CRI ``PortForward``: the URL of a session into the sandbox's network namespace."""
        reply = await self._call("runtime", "PortForward", api.PortForwardRequest(
            pod_sandbox_id=sandbox_id, port=list(ports)), self.query_timeout)
        return stream_url(reply.url, "PortForward")

    async def container_log_path(self, container_id: str) -> str:
        """The container's CRI log file, from ``ContainerStatus``."""
        reply = await self._call("runtime", "ContainerStatus",
                                 api.ContainerStatusRequest(container_id=container_id),
                                 self.query_timeout)
        path: str = reply.status.log_path
        if not path:
            raise NotFoundError(f"container {container_id[:12]} has no log file")
        return path
