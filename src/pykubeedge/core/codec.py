"""JSON codec for beehive messages: one message per WebSocket text frame (orjson).

Usage::

    frame = encode(msg)
    msg = decode(frame)  # DecodeError on anything that is not a valid message
"""

from __future__ import annotations

import base64
from typing import Final

import orjson

from pykubeedge.core.errors import DecodeError
from pykubeedge.core.message import Message

MAX_MESSAGE_SIZE: Final = 8 * 1024 * 1024
"""Default bound of an encoded message, in bytes."""

# A str of n characters is at most 4n bytes of UTF-8, so short strings need no measuring.
_UTF8_MAX_BYTES_PER_CHAR = 4


def encode(msg: Message) -> bytes:
    """The message as compact JSON bytes, in the contract's shape.

    ``bytes`` content is base64-encoded, as Go's ``encoding/json`` does with ``[]byte``;
    NaN and infinities become ``null`` (orjson's rule; Go refuses them).
    Content that JSON cannot represent raises ``TypeError`` (a bug of the sender, not input).

    >>> encode(Message(msg_id="a", timestamp=1, source="edged", content={"k": 1}))
    b'{"header":{"msg_id":"a","timestamp":1},"route":{"source":"edged"},"content":{"k":1}}'
    """
    return orjson.dumps(msg.to_dict(), default=_go_default)


def decode(data: bytes | bytearray | memoryview | str, max_size: int = MAX_MESSAGE_SIZE) -> Message:
    """Parse one message, strictly; the only exception it raises is :class:`DecodeError`.

    Rejected: more than ``max_size`` bytes, invalid JSON or UTF-8, a value that is not an
    object, a missing ``header``/``route``, or a known field of the wrong type (see
    :meth:`Message.from_dict`). Unknown keys are tolerated.

    >>> frame = b'{"header":{"msg_id":"a","timestamp":1},"route":{"operation":"keepalive"}}'
    >>> decode(frame).operation
    'keepalive'
    """
    if isinstance(data, str):
        if len(data) > max_size or (
            len(data) * _UTF8_MAX_BYTES_PER_CHAR > max_size and _utf8_len(data) > max_size
        ):
            raise DecodeError(f"message larger than {max_size} bytes")
    elif memoryview(data).nbytes > max_size:
        raise DecodeError(f"message larger than {max_size} bytes")
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"message is not valid JSON: {exc}") from None
    return Message.from_dict(parsed)


def _utf8_len(text: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:  # lone surrogates
        raise DecodeError(f"message is not valid UTF-8: {exc}") from None


def _go_default(value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"type {type(value).__name__} is not JSON serializable")
