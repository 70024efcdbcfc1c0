"""The tunnel's frame codec and connect payloads: upstream's bytes, strict parsing, fuzzing."""

from __future__ import annotations

import contextlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykubeedge.core.errors import DecodeError
from pykubeedge.core.stream import (
    MAX_DATA,
    ConnectRequest,
    Frame,
    MessageType,
    decode_connect,
    decode_failure,
    decode_frame,
    decode_uvarint,
    encode_connect,
    encode_failure,
    encode_frame,
    encode_uvarint,
    frame_header,
)

UINT64 = st.integers(min_value=0, max_value=2**64 - 1)


@pytest.mark.parametrize(("frame", "wire"), [
    (Frame(1, MessageType.LOGS_CONNECT, b"{}"), "0100" + b"{}".hex()),
    (Frame(300, MessageType.DATA, b"hi"), "ac02036869"),
    (Frame(300, MessageType.REMOVE_CONNECT), "ac0204"),
    (Frame(0, MessageType.CLOSE_CONNECT, b"x"), "000578"),
    (Frame(2**64 - 1, MessageType.ATTACH_CONNECT), "ffffffffffffffffff0106"),
])
def test_frames_are_upstreams_bytes(frame: Frame, wire: str) -> None:
    assert encode_frame(frame).hex() == wire
    assert decode_frame(bytes.fromhex(wire)) == frame


@given(UINT64)
def test_uvarint_round_trips(value: int) -> None:
    data = encode_uvarint(value)
    assert decode_uvarint(data + b"rest") == (value, len(data))


@given(UINT64, st.sampled_from(list(MessageType)), st.binary(max_size=300))
def test_frames_round_trip(connect_id: int, kind: MessageType, data: bytes) -> None:
    assert decode_frame(encode_frame(Frame(connect_id, kind, data))) == Frame(connect_id, kind,
                                                                              data)


@settings(max_examples=500)
@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_decode_error(buf: bytes) -> None:
    try:
        frame = decode_frame(buf)
    except DecodeError:
        return
    assert decode_frame(encode_frame(frame)) == frame  # (non-minimal varints re-encode shorter)


@pytest.mark.parametrize(("wire", "why"), [
    ("", "ends inside"),
    ("80", "ends inside"),
    ("01", "ends inside"),
    ("ffffffffffffffffff02", "overflows"),
    ("ffffffffffffffffffff01", "overflows"),
    ("0107", "unknown message type 7"),
    ("01ff01", "unknown message type 255"),
])
def test_malformed_frames_name_the_problem(wire: str, why: str) -> None:
    with pytest.raises(DecodeError, match=why):
        decode_frame(bytes.fromhex(wire))


def test_oversized_data_is_refused_not_truncated() -> None:
    buf = encode_frame(Frame(9, MessageType.DATA, b"x" * (MAX_DATA + 1)))
    with pytest.raises(DecodeError, match="connection 9 carries 1048577 bytes"):
        decode_frame(buf)
    assert frame_header(buf)[:2] == (9, MessageType.DATA)  # still attributable
    assert len(decode_frame(encode_frame(Frame(9, MessageType.DATA, b"x" * MAX_DATA))).data) \
        == MAX_DATA


def test_connect_payload_has_upstreams_shape() -> None:
    req = ConnectRequest(300, "/exec/default/demo/httpd", "command=sh&input=1&tty=1",
                         {"Upgrade": ("SPDY/3.1",), "X-Stream-Protocol-Version":
                          ("v4.channel.k8s.io", "v3.channel.k8s.io")}, method="POST")
    raw = encode_connect(req)
    assert b"\\u0026" in raw and b"&" not in raw  # Go's HTML-safe escaping
    doc = orjson.loads(raw)
    assert list(doc) == ["MessID", "url", "header", "method"]
    assert list(doc["url"]) == ["Scheme", "Opaque", "User", "Host", "Path", "RawPath",
                                "OmitHost", "ForceQuery", "RawQuery", "Fragment",
                                "RawFragment"]
    assert doc["url"]["Host"] == "127.0.0.1:10350" and doc["url"]["Scheme"] == "http"
    assert doc["header"]["X-Stream-Protocol-Version"] == ["v4.channel.k8s.io",
                                                          "v3.channel.k8s.io"]
    back = decode_connect(raw)
    assert back == req
    assert back.target == "/exec/default/demo/httpd?command=sh&input=1&tty=1"


def test_logs_connect_has_no_method() -> None:
    doc = orjson.loads(encode_connect(ConnectRequest(7, "/containerLogs/a/b/c")))
    assert "method" not in doc
    assert decode_connect(encode_connect(ConnectRequest(7, "/x"))).method == ""


def test_an_upstream_payload_decodes() -> None:
    upstream = (b'{"MessID":7,"url":{"Scheme":"http","Opaque":"","User":null,'
                b'"Host":"127.0.0.1:10350","Path":"/containerLogs/default/demo/httpd",'
                b'"RawPath":"","OmitHost":false,"ForceQuery":false,'
                b'"RawQuery":"follow=true\\u0026tailLines=10","Fragment":"","RawFragment":""},'
                b'"header":{"Accept-Encoding":["gzip"],"User-Agent":["kube-apiserver/v1.37"]}}')
    req = decode_connect(upstream)
    assert req.mess_id == 7 and req.raw_query == "follow=true&tailLines=10"
    assert req.headers["Accept-Encoding"] == ("gzip",)


@pytest.mark.parametrize(("payload", "why"), [
    (b"not json", "not JSON"),
    (b"[]", "not a JSON object"),
    (b'{"MessID":-1,"url":{"Path":"/x"}}', "MessID"),
    (b'{"MessID":true,"url":{"Path":"/x"}}', "MessID"),
    (b'{"MessID":1}', "no url"),
    (b'{"MessID":1,"url":{"Path":"relative"}}', "absolute path"),
    (b'{"MessID":1,"url":{"Path":"/a\\nb"}}', "control characters"),
    (b'{"MessID":1,"url":{"Path":"/x"},"header":{"A B":["x"]}}', "bad header name"),
    (b'{"MessID":1,"url":{"Path":"/x"},"header":{"A":[1]}}', "not a string"),
    (b'{"MessID":1,"url":{"Path":"/x"},"method":"GE T"}', "bad method"),
    (b'{"MessID":1,"url":{"Path":"/x"},"header":' + orjson.dumps(
        {f"h{i}": ["v"] for i in range(200)}) + b"}", "more than 128 headers"),
    (b"{" + b" " * (70 * 1024) + b"}", "limit is"),
])
def test_bad_connect_payloads_are_decode_errors(payload: bytes, why: str) -> None:
    with pytest.raises(DecodeError, match=why):
        decode_connect(payload)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_any_connect_bytes_decode_or_raise_decode_error(payload: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_connect(payload)


def test_failures_round_trip_and_upstream_text_is_a_500() -> None:
    assert decode_failure(encode_failure(404, "nope")) == (404, "nope")
    assert decode_failure(b"failed to Update KubeletEndpoint Port") == (
        500, "failed to Update KubeletEndpoint Port")
    assert decode_failure(encode_failure(200, "not an error"))[0] == 502
