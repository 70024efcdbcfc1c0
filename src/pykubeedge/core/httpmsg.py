"""The HTTP request and response that rule traffic carries between the cloud Router and the
edge ServiceBus (upstream ``common/types/http.go``): ``{"header", "body", "method", "url"}`` and
``{"header", "status_code", "body"}``. ``header`` is Go's ``http.Header`` (name -> list of
values); ``body`` is Go's ``[]byte``, so base64 (standard alphabet, padded) in JSON.

    >>> req = HTTPRequest("GET", {"Accept": ["*/*"]}, b"hi")
    >>> HTTPRequest.from_content(req.to_content()) == req
    True
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from pykubeedge.core.errors import DecodeError

Headers = dict[str, list[str]]

EDGE_SERVER_HEADER = "kubeedge-edgecore"
"""The ``Server`` header of an answer ServiceBus made itself (an error), not the local app."""


def encode_body(body: bytes) -> str:
    return base64.b64encode(body).decode("ascii")


def decode_body(value: Any) -> bytes:
    """Go ``[]byte`` from JSON: base64 text, or null/absent for empty."""
    if value is None or value == "":
        return b""
    if not isinstance(value, str):
        raise DecodeError(f"body must be base64 text, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecodeError(f"body is not base64: {exc}") from None


def headers_from(items: Mapping[str, Any] | Iterable[tuple[str, str]] | None) -> Headers:
    """Go ``http.Header`` from a JSON object (or name/value pairs), ignoring bad entries."""
    out: Headers = {}
    if items is None:
        return out
    pairs = items.items() if isinstance(items, Mapping) else items
    for name, values in pairs:
        if not isinstance(name, str):
            continue
        if isinstance(values, str):
            values = [values]
        if isinstance(values, list):  # str(): aiohttp's names are a str subclass
            out.setdefault(str(name), []).extend(str(v) for v in values if isinstance(v, str))
    return out


def _object(content: Any) -> dict[str, Any]:
    if isinstance(content, (bytes, str)):
        try:
            content = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"not JSON: {exc}") from None
    if not isinstance(content, dict):
        raise DecodeError(f"expected a JSON object, got {type(content).__name__}")
    return content


@dataclass(frozen=True)
class HTTPRequest:
    method: str
    header: Headers = field(default_factory=dict)
    body: bytes = b""
    url: str = ""

    def to_content(self) -> dict[str, Any]:
        return {"header": self.header, "body": encode_body(self.body), "method": self.method,
                "url": self.url}

    @classmethod
    def from_content(cls, content: Any) -> HTTPRequest:
        obj = _object(content)
        method = obj.get("method")
        if not isinstance(method, str) or not method:
            raise DecodeError("request has no method")
        url = obj.get("url")
        return cls(method.upper(), headers_from(obj.get("header")), decode_body(obj.get("body")),
                   url if isinstance(url, str) else "")


@dataclass(frozen=True)
class HTTPResponse:
    status_code: int
    header: Headers = field(default_factory=dict)
    body: bytes = b""

    def to_content(self) -> dict[str, Any]:
        return {"header": self.header, "status_code": self.status_code,
                "body": encode_body(self.body)}

    @property
    def from_edge(self) -> bool:
        """Made by ServiceBus itself (an error answer), not by the app behind it."""
        return EDGE_SERVER_HEADER in self.header.get("Server", ())

    @classmethod
    def from_content(cls, content: Any) -> HTTPResponse:
        obj = _object(content)
        code = obj.get("status_code")
        if not isinstance(code, int) or isinstance(code, bool) or not 100 <= code <= 599:
            raise DecodeError(f"response status_code {code!r} is not an HTTP status")
        return cls(code, headers_from(obj.get("header")), decode_body(obj.get("body")))

    @classmethod
    def edge_error(cls, status_code: int, text: str) -> HTTPResponse:
        """An answer ServiceBus makes itself (upstream ``buildErrorResponse``)."""
        return cls(status_code, {"Server": [EDGE_SERVER_HEADER]}, text.encode())
