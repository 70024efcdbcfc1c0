"""The CloudStream/EdgeStream tunnel's frames and connect payloads (upstream ``pkg/stream``).

One WebSocket message is one frame: ``uvarint(connectID) uvarint(messageType) data``, sent
as a TEXT frame whatever the bytes are (upstream's rule; the data is seldom UTF-8). The data
of a connect frame is the JSON of upstream's connection struct: ``MessID``, the URL as Go's
``url.URL`` object, the request ``header`` (``http.Header``) and, for exec and attach, the
``method``::

    >>> encode_frame(Frame(300, MessageType.DATA, b"hi")).hex()
    'ac02036869'
    >>> decode_frame(bytes.fromhex("ac0204"))
    Frame(connect_id=300, type=<MessageType.REMOVE_CONNECT: 4>, data=b'')
    >>> req = ConnectRequest(7, "/containerLogs/default/demo/web", "follow=true")
    >>> decode_connect(encode_connect(req)).target
    '/containerLogs/default/demo/web?follow=true'

Where upstream is silent, pykubeedge's edge adds two signals an upstream cloud ignores (it
drops frames it has no use for): an empty ``DATA`` frame says "the request was accepted, the
body follows", and ``CLOSE_CONNECT`` on a connection id carries the failure (status code and
message, :func:`encode_failure`) so the cloud answers the API server with that status instead
of streaming an error page as if it were the log.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

import orjson

from pykubeedge.core.errors import DecodeError

MAX_DATA: Final = 1 << 20
"""Upstream's ``MaxRespBodyLength``: the most data one frame carries (upstream truncates
beyond it; pykubeedge refuses the frame)."""
MAX_UVARINT_BYTES: Final = 10
MAX_CONNECT_BYTES: Final = 64 * 1024
"""A connect payload is a URL and request headers: more is not a request."""
MAX_PATH: Final = 8192
MAX_HEADERS: Final = 128
DEFAULT_SERVER_HOST: Final = "127.0.0.1:10350"
"""Where upstream's cloud points every request: the edge's kubelet read-only port."""
_UINT64: Final = (1 << 64) - 1


class MessageType(enum.IntEnum):
    """``messageType`` values (``pkg/stream/constants.go``)."""

    LOGS_CONNECT = 0
    EXEC_CONNECT = 1
    METRIC_CONNECT = 2
    DATA = 3
    REMOVE_CONNECT = 4
    CLOSE_CONNECT = 5
    ATTACH_CONNECT = 6

    @property
    def is_connect(self) -> bool:
        return self in CONNECT_TYPES

    @property
    def wire_name(self) -> str:
        """Upstream's ``String()`` (``LOGS_CONNECT``, ``DATA``...)."""
        return self.name


CONNECT_TYPES: Final = frozenset({MessageType.LOGS_CONNECT, MessageType.EXEC_CONNECT,
                                  MessageType.METRIC_CONNECT, MessageType.ATTACH_CONNECT})
UPGRADE_TYPES: Final = frozenset({MessageType.EXEC_CONNECT, MessageType.ATTACH_CONNECT})
"""Connections that relay an upgraded (SPDY) HTTP connection byte for byte."""


@dataclass(frozen=True, slots=True)
class Frame:
    connect_id: int
    type: MessageType
    data: bytes = b""


def encode_uvarint(value: int) -> bytes:
    """Go's ``binary.PutUvarint``.

    >>> encode_uvarint(300).hex()
    'ac02'
    """
    if not 0 <= value <= _UINT64:
        raise ValueError(f"uvarint out of range: {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_uvarint(buf: bytes | memoryview, pos: int = 0) -> tuple[int, int]:
    """Go's ``binary.ReadUvarint`` on ``buf[pos:]``: the value and the position after it.

    >>> decode_uvarint(bytes.fromhex("ac02ff"))
    (300, 2)
    """
    value = shift = 0
    for i in range(MAX_UVARINT_BYTES):
        if pos + i >= len(buf):
            raise DecodeError("stream frame ends inside a uvarint")
        byte = buf[pos + i]
        if byte < 0x80:
            if i == MAX_UVARINT_BYTES - 1 and byte > 1:
                raise DecodeError("stream frame uvarint overflows 64 bits")
            return value | byte << shift, pos + i + 1
        value |= (byte & 0x7F) << shift
        shift += 7
    raise DecodeError("stream frame uvarint overflows 64 bits")


def encode_frame(frame: Frame) -> bytes:
    """The WebSocket message for ``frame``."""
    return encode_uvarint(frame.connect_id) + encode_uvarint(frame.type) + frame.data


def frame_header(buf: bytes | memoryview) -> tuple[int, int, int]:
    """``(connect_id, raw type, data offset)`` of a frame, whatever its type and size; the
    receiver uses it to tell the peer which connection a refused frame was for."""
    connect_id, pos = decode_uvarint(buf)
    kind, pos = decode_uvarint(buf, pos)
    return connect_id, kind, pos


def decode_frame(buf: bytes | memoryview, max_data: int = MAX_DATA) -> Frame:
    """Parse one frame strictly; :class:`DecodeError` names what is wrong."""
    connect_id, kind, pos = frame_header(buf)
    try:
        msg_type = MessageType(kind)
    except ValueError:
        raise DecodeError(f"stream frame for connection {connect_id} has unknown message "
                          f"type {kind}") from None
    size = len(buf) - pos
    if size > max_data:
        raise DecodeError(f"stream frame for connection {connect_id} carries {size} bytes; "
                          f"the limit is {max_data}")
    return Frame(connect_id, msg_type, bytes(buf[pos:]))


# -- connect payloads ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """What the cloud asks the edge to replay against its kubelet port.

    ``path`` is the unescaped path and ``raw_query`` the query as sent (Go's ``url.URL``
    fields); ``headers`` maps a header name to its values, as ``http.Header``; ``method`` is
    only carried by exec and attach (upstream's logs and metrics are GETs).
    """

    mess_id: int
    path: str
    raw_query: str = ""
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    method: str = ""
    host: str = DEFAULT_SERVER_HOST
    scheme: str = "http"
    raw_path: str = ""

    @property
    def target(self) -> str:
        """The HTTP request target: escaped path and query."""
        path = self.raw_path or quote(self.path, safe="/:@!$&'()*+,;=-._~")
        return f"{path}?{self.raw_query}" if self.raw_query else path


def _go_url(req: ConnectRequest) -> dict[str, Any]:
    # Go's url.URL marshals its exported fields in declaration order.
    return {"Scheme": req.scheme, "Opaque": "", "User": None, "Host": req.host,
            "Path": req.path, "RawPath": req.raw_path, "OmitHost": False, "ForceQuery": False,
            "RawQuery": req.raw_query, "Fragment": "", "RawFragment": ""}


def _go_html_escape(data: bytes) -> bytes:
    # encoding/json escapes <, > and & (and U+2028/9) inside strings; they appear nowhere
    # else in a JSON document, so the whole text can be rewritten.
    return (data.replace(b"&", b"\\u0026").replace(b"<", b"\\u003c").replace(b">", b"\\u003e")
            .replace("\u2028".encode(), b"\\u2028").replace("\u2029".encode(), b"\\u2029"))


def encode_connect(req: ConnectRequest) -> bytes:
    """The JSON of upstream's ``EdgedLogsConnection`` / ``EdgedExecConnection`` (with
    ``method``) / ``EdgedMetricsConnection`` / ``EdgedAttachConnection``."""
    doc: dict[str, Any] = {"MessID": req.mess_id, "url": _go_url(req),
                           "header": {k: list(v) for k, v in req.headers.items()}}
    if req.method:
        doc["method"] = req.method
    return _go_html_escape(orjson.dumps(doc))


def _text(value: Any, what: str, limit: int = MAX_PATH) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DecodeError(f"connect payload: {what} is not a string")
    if len(value) > limit or any(ord(c) < 0x20 or c == "\x7f" for c in value):
        raise DecodeError(f"connect payload: {what} is too long or holds control characters")
    return value


def _headers(value: Any) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DecodeError("connect payload: header is not an object")
    if len(value) > MAX_HEADERS:
        raise DecodeError(f"connect payload: more than {MAX_HEADERS} headers")
    out: dict[str, tuple[str, ...]] = {}
    for name, values in value.items():
        if not name or not all(33 <= ord(c) <= 126 and c != ":" for c in name):
            raise DecodeError(f"connect payload: bad header name {name[:40]!r}")
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list):
            raise DecodeError(f"connect payload: header {name} is not a list of strings")
        out[name] = tuple(_text(v, f"header {name}") for v in values)
    return out


def decode_connect(data: bytes) -> ConnectRequest:
    """Parse a connect payload; :class:`DecodeError` on anything but a request upstream's
    cloud could have sent."""
    if len(data) > MAX_CONNECT_BYTES:
        raise DecodeError(f"connect payload of {len(data)} bytes; the limit is "
                          f"{MAX_CONNECT_BYTES}")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"connect payload is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DecodeError("connect payload is not a JSON object")
    mess_id = doc.get("MessID", 0)
    if not isinstance(mess_id, int) or isinstance(mess_id, bool) or not 0 <= mess_id <= _UINT64:
        raise DecodeError("connect payload: MessID is not an unsigned integer")
    url = doc.get("url")
    if not isinstance(url, dict):
        raise DecodeError("connect payload has no url object")
    path = _text(url.get("Path"), "url.Path")
    if not path.startswith("/"):
        raise DecodeError(f"connect payload: url.Path {path[:60]!r} is not an absolute path")
    method = _text(doc.get("method"), "method", 16)
    if method and not method.isalpha():
        raise DecodeError(f"connect payload: bad method {method!r}")
    return ConnectRequest(
        mess_id=mess_id, path=path, raw_query=_text(url.get("RawQuery"), "url.RawQuery"),
        headers=_headers(doc.get("header")), method=method.upper(),
        host=_text(url.get("Host"), "url.Host", 255) or DEFAULT_SERVER_HOST,
        scheme=_text(url.get("Scheme"), "url.Scheme", 16) or "http",
        raw_path=_text(url.get("RawPath"), "url.RawPath"))


# -- failures (pykubeedge's CloseConnect on a connection) ---------------------------------------


def encode_failure(code: int, message: str) -> bytes:
    """The data of a ``CLOSE_CONNECT`` that ends one connection with an HTTP status.

    >>> decode_failure(encode_failure(404, 'container "x" not found'))
    (404, 'container "x" not found')
    """
    return orjson.dumps({"code": code, "message": message})


def decode_failure(data: bytes) -> tuple[int, str]:
    """``(code, message)``; upstream's plain-text reason (its cloud's CloseConnect) is a 500."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("code"), int):
        code = doc["code"] if 400 <= doc["code"] <= 599 else 502
        return code, str(doc.get("message", ""))[:4096]
    return 500, data[:4096].decode("utf-8", "replace")
