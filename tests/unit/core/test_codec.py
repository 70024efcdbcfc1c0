"""The JSON codec: exact bytes out, strict parsing in, and fuzzing for anything but DecodeError."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykubeedge.core.codec import MAX_MESSAGE_SIZE, decode, encode
from pykubeedge.core.errors import DecodeError
from pykubeedge.core.message import Message

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
JSON_SCALARS = (
    st.none() | st.booleans() | INT64 | st.floats(allow_nan=False, allow_infinity=False) | st.text()
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)

GOOD = b'{"header":{"msg_id":"a","timestamp":1},"route":{"source":"edged"},"content":{"k":1}}'


def test_encode_gives_the_contract_bytes() -> None:
    msg = Message(msg_id="a", timestamp=1, source="edged", content={"k": 1})
    assert encode(msg) == GOOD


def test_encode_base64s_bytes_content_like_go() -> None:
    msg = Message(msg_id="a", timestamp=1, content=b"\x00\xffhi")
    assert orjson.loads(encode(msg))["content"] == "AP9oaQ=="


def test_encode_refuses_content_json_cannot_hold() -> None:
    with pytest.raises(TypeError):
        encode(Message(content={1, 2}))


def test_decode_accepts_bytes_str_bytearray_and_memoryview() -> None:
    expected = Message(msg_id="a", timestamp=1, source="edged", content={"k": 1})
    for data in (GOOD, GOOD.decode(), bytearray(GOOD), memoryview(GOOD)):
        assert decode(data) == expected


def test_decode_tolerates_unknown_keys() -> None:
    frame = b'{"header":{"msg_id":"a","timestamp":1,"x":1},"route":{"y":2},"z":3}'
    assert decode(frame).msg_id == "a"


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'"text"',
        b"null",
        b'{"header":{"msg_id":"a","timestamp":1}}',
        b'{"header":{"msg_id":"a","timestamp":"1"},"route":{}}',
        b'{"header":{"msg_id":"a","timestamp":1.5},"route":{}}',
        b'{"header":{"msg_id":"a","timestamp":99999999999999999999999},"route":{}}',
        b'{"header":[],"route":{}}',
        b'{"header":{"msg_id":"a","timestamp":1},"route":{"group":1}}',
        b'{"header":{"msg_id":"a","timestamp":1},"route":{}} trailing',
        b"[" * 5000 + b"]" * 5000,
    ],
)
def test_decode_rejects_malformed_frames(frame: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(frame)


def test_decode_rejects_lone_surrogates_in_str() -> None:
    with pytest.raises(DecodeError):
        decode('{"header":{"msg_id":"\ud800","timestamp":1},"route":{}}')


def test_size_bound_is_inclusive_and_configurable() -> None:
    assert decode(GOOD, max_size=len(GOOD)).msg_id == "a"
    with pytest.raises(DecodeError, match="larger than"):
        decode(GOOD, max_size=len(GOOD) - 1)


def test_size_bound_counts_utf8_bytes_of_str_frames() -> None:
    frame = Message(msg_id="a", timestamp=1, content="é" * 100).to_dict()
    text = orjson.dumps(frame).decode()
    size = len(text.encode())
    assert len(text) < size

    assert decode(text, max_size=size).content == "é" * 100
    with pytest.raises(DecodeError, match="larger than"):
        decode(text, max_size=size - 1)


def test_default_bound_is_8_mib() -> None:
    assert MAX_MESSAGE_SIZE == 8 * 1024 * 1024
    padding = b" " * (MAX_MESSAGE_SIZE - len(GOOD) + 1)
    with pytest.raises(DecodeError):
        decode(GOOD + padding)


def _decodes_or_decode_error(data: bytes | str) -> None:
    with contextlib.suppress(DecodeError):
        decode(data)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    _decodes_or_decode_error(data)


@settings(max_examples=300)
@given(JSON)
def test_fuzz_arbitrary_json_raises_only_decode_error(value: Any) -> None:
    _decodes_or_decode_error(orjson.dumps(value))


HEADER_KEYS = st.sampled_from(
    ["msg_id", "parent_msg_id", "timestamp", "resourceversion", "sync", "type", "other"]
)
ROUTE_KEYS = st.sampled_from(["source", "destination", "group", "operation", "resource", "other"])


@settings(max_examples=300)
@given(
    header=st.dictionaries(HEADER_KEYS, JSON) | JSON,
    route=st.dictionaries(ROUTE_KEYS, JSON) | JSON,
    content=JSON,
    drop=st.sampled_from(["", "header", "route", "content"]),
)
def test_fuzz_message_shaped_json_raises_only_decode_error(
    header: Any, route: Any, content: Any, drop: str
) -> None:
    frame = {"header": header, "route": route, "content": content}
    frame.pop(drop, None)
    _decodes_or_decode_error(orjson.dumps(frame))
    _decodes_or_decode_error(orjson.dumps(frame).decode())


MESSAGES = st.builds(
    Message,
    msg_id=st.text(),
    parent_msg_id=st.text(),
    timestamp=INT64,
    resourceversion=st.text(),
    sync=st.booleans(),
    type=st.text(),
    source=st.text(),
    destination=st.text(),
    group=st.text(),
    operation=st.text(),
    resource=st.text(),
    content=JSON,
)


@settings(max_examples=300)
@given(MESSAGES)
def test_round_trip_of_valid_messages(msg: Message) -> None:
    assert decode(encode(msg)) == msg
    assert decode(encode(msg).decode()) == msg
