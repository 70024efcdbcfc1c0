"""The HTTP request/response contents of rule traffic (Go ``[]byte`` bodies are base64)."""

from __future__ import annotations

import pytest

from pykubeedge.core.errors import DecodeError
from pykubeedge.core.httpmsg import HTTPRequest, HTTPResponse, headers_from


def test_round_trips_and_go_shapes() -> None:
    req = HTTPRequest("POST", {"A": ["1", "2"]}, b"\x00\xffbody")
    content = req.to_content()
    assert content["body"] == "AP9ib2R5" and content["method"] == "POST"
    assert HTTPRequest.from_content(content) == req
    resp = HTTPResponse(201, {"X": ["y"]}, b"ok")
    assert HTTPResponse.from_content(resp.to_content()) == resp
    assert HTTPResponse.from_content(b'{"status_code": 200, "body": null}').body == b""
    assert HTTPResponse.edge_error(502, "down").from_edge
    assert not resp.from_edge


@pytest.mark.parametrize("content", [
    "not json", [], {"status_code": "200"}, {"status_code": 99}, {"status_code": True},
    {"status_code": 200, "body": "***"}, {"status_code": 200, "body": 5},
])
def test_bad_responses(content: object) -> None:
    with pytest.raises(DecodeError):
        HTTPResponse.from_content(content)


def test_bad_requests_and_headers() -> None:
    with pytest.raises(DecodeError, match="no method"):
        HTTPRequest.from_content({"body": ""})
    assert HTTPRequest.from_content({"method": "get"}).method == "GET"
    assert headers_from({"a": "x", "b": ["y", 3], 4: ["z"], "c": None}) == {
        "a": ["x"], "b": ["y"]}
    assert headers_from([("a", "1"), ("a", "2")]) == {"a": ["1", "2"]}
