"""HTTP/1.1 message heads, sans-IO: what the stream relays parse and write themselves.

The kubelet paths are relayed as raw connections (an exec is an HTTP upgrade whose bytes
after the head belong to SPDY), so CloudStream, EdgeStream and Edged's server read a head,
decide, and then either answer or relay the rest byte for byte::

    >>> head = parse_request_head(b"GET /healthz?x=1 HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n")
    >>> head.method, head.path, head.query, head.header("host")
    ('GET', '/healthz', 'x=1', 'a')
    >>> render_response_head(200, [("Content-Length", "2")])
    b'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\n'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final
from urllib.parse import parse_qs, unquote

from pykubeedge.core.errors import DecodeError

MAX_HEAD_BYTES: Final = 64 * 1024
MAX_HEADER_LINES: Final = 128
HOP_BY_HOP: Final = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
    "upgrade", "proxy-authorization", "proxy-authenticate",
})
_TOKEN_CHARS: Final = frozenset("!#$%&'*+-.^_`|~0123456789"
                                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

Headers = Sequence[tuple[str, str]]


def first_header(headers: Headers, name: str, default: str = "") -> str:
    """The first value of header ``name`` in ``headers`` (case-insensitive)."""
    lowered = name.lower()
    return next((v for k, v in headers if k.lower() == lowered), default)


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]

    @property
    def path(self) -> str:
        """The unescaped path of the target."""
        return unquote(self.target.partition("?")[0])

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    def params(self) -> dict[str, list[str]]:
        """The query parameters (repeated ones keep every value, in order)."""
        return parse_qs(self.query, keep_blank_values=True)

    def header(self, name: str, default: str = "") -> str:
        """The first value of header ``name`` (case-insensitive)."""
        return first_header(self.headers, name, default)

    def header_values(self, name: str) -> list[str]:
        lowered = name.lower()
        return [v for k, v in self.headers if k.lower() == lowered]

    @property
    def is_upgrade(self) -> bool:
        """``Connection: upgrade`` and an ``Upgrade`` header (apimachinery's
        ``IsUpgradeRequest``)."""
        connection = ",".join(self.header_values("connection")).lower()
        return "upgrade" in (t.strip() for t in connection.split(",")) and bool(
            self.header("upgrade"))

    @property
    def keep_alive(self) -> bool:
        connection = ",".join(self.header_values("connection")).lower()
        tokens = {t.strip() for t in connection.split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


@dataclass(frozen=True, slots=True)
class ResponseHead:
    status: int
    reason: str
    version: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str, default: str = "") -> str:
        return first_header(self.headers, name, default)


def _lines(data: bytes) -> list[str]:
    if len(data) > MAX_HEAD_BYTES:
        raise DecodeError(f"HTTP head larger than {MAX_HEAD_BYTES} bytes")
    try:
        text = data.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise DecodeError("HTTP head is not text") from None
    lines = text.split("\r\n")
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise DecodeError("empty HTTP head")
    if len(lines) > MAX_HEADER_LINES + 1:
        raise DecodeError(f"more than {MAX_HEADER_LINES} header lines")
    return lines


def _parse_headers(lines: Iterable[str]) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, str]] = []
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name or any(c not in _TOKEN_CHARS for c in name):
            raise DecodeError(f"bad HTTP header line {line[:60]!r}")
        value = value.strip(" \t")
        if any(ord(c) < 0x20 and c != "\t" for c in value):
            raise DecodeError(f"control characters in HTTP header {name}")
        headers.append((name, value))
    return tuple(headers)


def parse_request_head(data: bytes) -> RequestHead:
    """Parse a request head (request line and headers, with or without the blank line)."""
    lines = _lines(data)
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise DecodeError(f"bad HTTP request line {lines[0][:80]!r}")
    method, target, version = parts
    if not method or any(c not in _TOKEN_CHARS for c in method):
        raise DecodeError(f"bad HTTP method {method[:20]!r}")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise DecodeError(f"unsupported HTTP version {version[:20]!r}")
    if not target.startswith("/") or any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in target):
        raise DecodeError(f"bad HTTP request target {target[:80]!r}")
    return RequestHead(method, target, version, _parse_headers(lines[1:]))


def parse_response_head(data: bytes) -> ResponseHead:
    """Parse a response head (status line and headers)."""
    lines = _lines(data)
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise DecodeError(f"bad HTTP status line {lines[0][:80]!r}")
    return ResponseHead(int(code), reason, version, _parse_headers(lines[1:]))


def _render_headers(headers: Iterable[tuple[str, str]]) -> str:
    out = []
    for name, value in headers:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r} holds a line break")
        out.append(f"{name}: {value}\r\n")
    return "".join(out)


def render_request_head(method: str, target: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """A request head, ready to write."""
    return f"{method} {target} HTTP/1.1\r\n{_render_headers(headers)}\r\n".encode("latin-1")


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Status"


def render_response_head(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    """A response head, ready to write."""
    return (f"HTTP/1.1 {status} {reason_phrase(status)}\r\n{_render_headers(headers)}\r\n"
            .encode("latin-1", "replace"))


def simple_response(status: int, body: str | bytes, *, content_type: str = "text/plain; "
                    "charset=utf-8", close: bool = False) -> bytes:
    """A whole response with a body of known length."""
    payload = body.encode() if isinstance(body, str) else body
    headers = [("Content-Type", content_type), ("Content-Length", str(len(payload)))]
    if close:
        headers.append(("Connection", "close"))
    return render_response_head(status, headers) + payload


def chunk(data: bytes) -> bytes:
    """One chunk of a ``Transfer-Encoding: chunked`` body (empty data: the last chunk)."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def end_to_end(headers: Iterable[tuple[str, str]], *, drop: Iterable[str] = ()) -> list[
        tuple[str, str]]:
    """``headers`` without the hop-by-hop ones (and without those named in ``drop``)."""
    dropped = {d.lower() for d in drop} | HOP_BY_HOP
    return [(k, v) for k, v in headers if k.lower() not in dropped]
