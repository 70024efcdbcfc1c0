"""Exec, attach and port-forward as kubelet serves them: ask the runtime for a streaming URL
(CRI ``Exec``/``Attach``/``PortForward``), replay the caller's request there with the same
method and headers (kubelet's ``UpgradeAwareHandler``), and relay the connection both ways
byte for byte. The SPDY session (101 response, channels, exit status, resizes) is between
the API server and the runtime's streaming server; nothing here parses it::

    url = await runtime.exec(cid, ["sh"], tty=True, stdin=True, stdout=True, stderr=False)
    await relay_to_runtime(head, conn, url)

The request options are kubelet's: ``command`` (repeated), ``input``, ``output``, ``error``,
``tty``; with a tty there is no separate stderr.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from pykubeedge.core.errors import DecodeError
from pykubeedge.core.httphead import RequestHead, render_request_head
from pykubeedge.transport.rawhttp import Connection, splice

log = logging.getLogger(__name__)

CONNECT_TIMEOUT: Final = 10.0
_TRUE: Final = frozenset({"1", "true", "t", "yes"})


@dataclass(frozen=True, slots=True)
class StreamOptions:
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool
    command: tuple[str, ...] = ()


def _flag(params: Mapping[str, Sequence[str]], name: str) -> bool:
    values = params.get(name)
    return values is not None and len(values) > 0 and values[-1].lower() in _TRUE


def stream_options(params: Mapping[str, Sequence[str]], *, exec_: bool) -> StreamOptions:
    """Kubelet's ``remotecommand.NewOptions`` for an exec or attach query.

    >>> stream_options({"output": ["1"], "error": ["1"], "tty": ["1"]}, exec_=False)
    StreamOptions(stdin=False, stdout=True, stderr=False, tty=True, command=())
    """
    tty = _flag(params, "tty")
    stdin, stdout = _flag(params, "input"), _flag(params, "output")
    stderr = _flag(params, "error") and not tty
    if not (stdin or stdout or stderr):
        raise DecodeError("you must specify at least 1 of stdin, stdout, stderr")
    command = tuple(params.get("command", ()))
    if exec_ and not command:
        raise DecodeError("you must specify a command")
    return StreamOptions(stdin=stdin, stdout=stdout, stderr=stderr, tty=tty, command=command)


def forward_ports(params: Mapping[str, Sequence[str]]) -> list[int]:
    """The ``port`` query of a port-forward (comma-separated, possibly repeated).

    >>> forward_ports({"port": ["80,8080"]})
    [80, 8080]
    """
    ports: list[int] = []
    for value in params.get("port", ()):
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            if not item.isdigit() or not 0 < int(item) < 65536:
                raise DecodeError(f"invalid port {item[:10]!r}")
            ports.append(int(item))
    return ports


async def relay_to_runtime(head: RequestHead, conn: Connection, url: str, *,
                           connect_timeout: float = CONNECT_TIMEOUT) -> None:
    """Replay ``head`` against the runtime's streaming ``url`` and splice the connections
    until the session ends."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    async with asyncio.timeout(connect_timeout):
        reader, writer = await asyncio.open_connection(
            host, port, ssl=parts.scheme == "https" or None)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = [(k, v) for k, v in head.headers if k.lower() != "host"]
    headers.insert(0, ("Host", parts.netloc))
    writer.write(render_request_head(head.method, target, headers))
    await splice((conn.reader, conn.writer), (reader, writer))
