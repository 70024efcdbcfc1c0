"""Message contents: JSON objects, patches, list replies, and the ObjectResp reply shape in
upstream's encoding (Err null, or a StatusError as Go's encoding/json writes it)."""

from __future__ import annotations

import orjson
import pytest

from pykubeedge.core.content import (
    error_reply,
    is_object_reply,
    json_object,
    list_items,
    object_reply,
    parse_object_reply,
    patch_content,
    reply_object,
    status,
    status_of,
)
from pykubeedge.core.errors import (
    Conflict,
    DecodeError,
    KubeError,
    NotAllowed,
    NotFound,
    StoreError,
)
from pykubeedge.core.objects import (
    kind_of,
    name_of,
    namespace_of,
    node_name_of,
    resource_version_of,
    uid_of,
)


def test_json_object_accepts_an_object_or_text_holding_one() -> None:
    assert json_object({"a": 1}) == {"a": 1}
    assert json_object('{"a": 1}') == {"a": 1}
    assert json_object(b'{"a": 1}') == {"a": 1}
    for bad in ("[1]", "{nope", 3, None, ["x"]):
        with pytest.raises(DecodeError):
            json_object(bad)
    with pytest.raises(DecodeError, match="content of patch x is not JSON"):
        json_object("{", "content of patch x")


def test_patch_content_keeps_the_text_edged_sent() -> None:
    assert patch_content('{"status": {}}') == ('{"status": {}}', {"status": {}})
    assert patch_content({"status": {}}) == ('{"status":{}}', {"status": {}})


def test_list_items_of_every_reply_form() -> None:
    assert list_items(['{"a": 1}', {"b": 2}, "not json"]) == [{"a": 1}, {"b": 2}, "not json"]
    assert list_items('[{"a": 1}]') == [{"a": 1}]
    assert list_items({"items": [{"c": 3}]}) == [{"c": 3}]
    assert list_items({"Object": {"d": 4}, "Err": None}) == [{"d": 4}]
    assert list_items({"e": 5}) == [{"e": 5}]
    assert list_items(None) == [] and list_items("") == []


def test_success_is_the_object_with_a_null_err() -> None:
    node = {"kind": "Node", "metadata": {"name": "edge-1"}}
    reply = object_reply(node)
    # Byte for byte what Go's encoding/json writes for ObjectResp{Object: node, Err: nil}.
    assert orjson.dumps(reply) == b'{"Object":{"kind":"Node","metadata":{"name":"edge-1"}},' \
                                  b'"Err":null}'
    assert is_object_reply(reply)
    assert parse_object_reply(reply).object == node
    assert not parse_object_reply(reply).failed
    assert reply_object(reply) == node


def test_failure_is_a_status_error_as_go_encodes_it() -> None:
    failure = status("NotFound", 'leases.coordination.k8s.io "edge-1" not found',
                     name="edge-1", kind="leases")
    reply = error_reply(failure)
    # apierrors.StatusError{ErrStatus: metav1.Status{...}}: no JSON tag on ErrStatus; Status's
    # fields in Go's order, TypeMeta inline, ListMeta always written (a struct, not omitted).
    assert orjson.dumps(reply["Err"]) == (
        b'{"ErrStatus":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        b'"message":"leases.coordination.k8s.io \\"edge-1\\" not found","reason":"NotFound",'
        b'"details":{"name":"edge-1","kind":"leases"},"code":404}}')
    assert reply["Object"] is None
    parsed = parse_object_reply(reply)
    assert parsed.failed and parsed.reason == "NotFound" and parsed.object is None
    assert "not found" in parsed.error


def test_status_codes_follow_the_reasons() -> None:
    for reason, code in (("Forbidden", 403), ("Conflict", 409), ("BadRequest", 400),
                         ("InternalError", 500), ("AlreadyExists", 409)):
        assert status(reason, "x")["code"] == code
    assert "details" not in status("InternalError", "x")


def test_status_of_our_errors() -> None:
    api_status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": 'pods "web" not found', "reason": "NotFound",
                  "details": {"name": "web", "kind": "pods"}, "code": 404}
    exc = NotFound('pods "web" not found', status=404, reason="NotFound", body=api_status)
    assert status_of(exc) == api_status  # the API server's own Status, passed on
    bare = Conflict("the object has been modified", status=409)
    assert status_of(bare, name="edge-1", kind="leases") == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "the object has been modified", "reason": "Conflict",
        "details": {"name": "edge-1", "kind": "leases"}, "code": 409}
    assert status_of(KubeError("no answer"))["reason"] == "InternalError"
    assert status_of(NotAllowed("not yours"))["code"] == 403
    assert status_of(DecodeError("bad"))["reason"] == "BadRequest"
    assert status_of(StoreError("disk"))["message"] == "disk"
    assert status_of(RuntimeError("bug"))["message"] == "RuntimeError: bug"


def test_replies_in_the_shapes_before_upstream_encoding_are_understood() -> None:
    assert parse_object_reply({"Object": {"a": 1}, "Err": ""}).object == {"a": 1}
    assert parse_object_reply({"Object": {}, "Err": "boom"}).error == "boom"
    assert parse_object_reply('{"Object": null, "Err": "boom"}').error == "boom"
    assert not parse_object_reply({"Object": {"a": 1}, "Err": {"ErrStatus": {"metadata": {}}}}
                                  ).failed  # Go's zero StatusError
    assert parse_object_reply({"metadata": {"name": "x"}}).object == {"metadata": {"name": "x"}}
    assert parse_object_reply("OK").object is None and not parse_object_reply("OK").failed
    assert reply_object({"kind": "NoMetadata"}) is None


def test_object_accessors_never_fail() -> None:
    pod = {"kind": "Pod", "metadata": {"name": "web", "uid": "u1", "resourceVersion": "9"},
           "spec": {"nodeName": "edge-1"}}
    assert (kind_of(pod), name_of(pod), uid_of(pod), resource_version_of(pod)) == (
        "Pod", "web", "u1", "9")
    assert namespace_of(pod) == "default"
    assert namespace_of(pod, default="null") == "null"
    assert node_name_of(pod) == "edge-1"
    for junk in (None, "text", [], {"metadata": "x"}, {"metadata": {"uid": 3, "name": None}}):
        assert (uid_of(junk), name_of(junk), kind_of(junk), node_name_of(junk)) == (
            "", "", "", "")
        assert namespace_of(junk) == "default"
