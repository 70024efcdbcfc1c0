"""The beehive Message: wire shape, omitempty rules and the response/error/clone helpers."""

from __future__ import annotations

import time
import uuid

import pytest

from pykubeedge.core.constants import Content, EdgeModule, MessageGroup, Operation
from pykubeedge.core.errors import DecodeError
from pykubeedge.core.message import Message, error_message, new_message, now_ms, response


def _request() -> Message:
    return new_message(
        source="edgecontroller",
        group=MessageGroup.RESOURCE,
        resource="node/edge-1/default/pod/nginx",
        operation=Operation.INSERT,
        content={"metadata": {"name": "nginx", "uid": "u1"}},
        resourceversion="42",
        type="channel",
    )


def test_new_message_has_uuid4_id_and_millisecond_timestamp() -> None:
    before = time.time() * 1000
    msg = _request()
    after = time.time() * 1000

    assert uuid.UUID(msg.msg_id).version == 4
    assert before - 1 <= msg.timestamp <= after + 1
    assert msg.parent_msg_id == ""
    assert not msg.sync
    assert _request().msg_id != msg.msg_id


def test_now_ms_is_milliseconds() -> None:
    assert abs(now_ms() - time.time() * 1000) < 1000


def test_to_dict_full_message_in_go_field_order() -> None:
    msg = Message(
        msg_id="id-1",
        parent_msg_id="id-0",
        timestamp=1700000000123,
        resourceversion="7",
        sync=True,
        type="channel",
        source="metamanager",
        destination="edged",
        group="meta",
        operation="response",
        resource="default/pod/nginx",
        content=[1, "two", None],
    )

    wire = msg.to_dict()

    assert wire == {
        "header": {
            "msg_id": "id-1",
            "parent_msg_id": "id-0",
            "timestamp": 1700000000123,
            "resourceversion": "7",
            "sync": True,
            "type": "channel",
        },
        "route": {
            "source": "metamanager",
            "destination": "edged",
            "group": "meta",
            "operation": "response",
            "resource": "default/pod/nginx",
        },
        "content": [1, "two", None],
    }
    assert list(wire) == ["header", "route", "content"]
    assert list(wire["header"]) == [
        "msg_id",
        "parent_msg_id",
        "timestamp",
        "resourceversion",
        "sync",
        "type",
    ]
    assert list(wire["route"]) == ["source", "destination", "group", "operation", "resource"]


def test_to_dict_omits_empty_fields_like_go_omitempty() -> None:
    wire = Message(msg_id="id-1", timestamp=5).to_dict()

    # msg_id, timestamp (no omitempty in Go), the route struct and content are always there.
    assert wire == {"header": {"msg_id": "id-1", "timestamp": 5}, "route": {}, "content": None}


def test_keepalive_matches_the_contract_shape() -> None:
    msg = new_message(
        source=EdgeModule.EDGEHUB,
        group=MessageGroup.RESOURCE,
        resource="node",
        operation=Operation.KEEPALIVE,
        content=Content.KEEPALIVE_PING,
    )

    wire = msg.to_dict()

    assert wire["route"] == {
        "source": "websocket",
        "group": "resource",
        "operation": "keepalive",
        "resource": "node",
    }
    assert wire["content"] == "ping"
    assert set(wire["header"]) == {"msg_id", "timestamp"}


def test_from_dict_inverts_to_dict() -> None:
    msg = _request()
    assert Message.from_dict(msg.to_dict()) == msg


def test_from_dict_treats_null_as_absent_and_tolerates_unknown_keys() -> None:
    msg = Message.from_dict(
        {
            "header": {"msg_id": "a", "timestamp": 1, "parent_msg_id": None, "sync": None},
            "route": {"source": None, "group": "meta", "extra": [1]},
            "other": True,
        }
    )

    assert msg == Message(msg_id="a", timestamp=1, group="meta", content=None)


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        ([], "JSON object"),
        ({"route": {}}, "'header'"),
        ({"header": {"msg_id": "a", "timestamp": 1}}, "'route'"),
        ({"header": None, "route": {}}, "header must be a JSON object"),
        ({"header": {"msg_id": "a", "timestamp": 1}, "route": "x"}, "route must be"),
        ({"header": {"timestamp": 1}, "route": {}}, "msg_id"),
        ({"header": {"msg_id": "a"}, "route": {}}, "timestamp"),
        ({"header": {"msg_id": "a", "timestamp": True}, "route": {}}, "timestamp"),
        ({"header": {"msg_id": "a", "timestamp": 1.0}, "route": {}}, "timestamp"),
        ({"header": {"msg_id": "a", "timestamp": 2**63}, "route": {}}, "timestamp"),
        ({"header": {"msg_id": "a", "timestamp": 1, "sync": 1}, "route": {}}, "sync"),
        ({"header": {"msg_id": "a", "timestamp": 1, "type": 3}, "route": {}}, "header.type"),
        ({"header": {"msg_id": "a", "timestamp": 1}, "route": {"resource": []}}, "resource"),
    ],
)
def test_from_dict_rejects_wrong_shapes(data: object, complaint: str) -> None:
    with pytest.raises(DecodeError, match=complaint):
        Message.from_dict(data)


def test_response_mirrors_the_request() -> None:
    req = _request()

    resp = response(req, Content.ACK_OK)

    assert resp.msg_id != req.msg_id
    assert resp.parent_msg_id == req.msg_id
    assert (resp.source, resp.group) == (req.source, req.group)
    assert resp.resource == req.resource
    assert resp.operation == Operation.RESPONSE
    assert resp.type == req.type
    assert resp.content == "OK"
    assert resp.resourceversion == ""
    assert not resp.sync


def test_error_message_carries_the_error_text_back_to_the_requester() -> None:
    req = _request()

    err = error_message(req, ValueError("no such pod"), source="metamanager")

    assert err.parent_msg_id == req.msg_id
    assert err.operation == Operation.ERROR
    assert err.resource == req.resource
    assert err.content == "no such pod"
    assert err.source == "metamanager"
    assert err.group == req.group
    assert error_message(req, "plain").content == "plain"
    assert error_message(req, "plain").source == req.source


def test_clone_changes_only_the_id() -> None:
    req = _request()
    req.parent_msg_id = "p"

    copy = req.clone()

    assert copy.msg_id != req.msg_id
    copy.msg_id = req.msg_id
    assert copy == req


def test_str_names_the_route_but_not_the_content() -> None:
    msg = _request()
    msg.content = {"secret": "hunter2"}

    text = str(msg)

    assert msg.msg_id in text
    assert "node/edge-1/default/pod/nginx" in text
    assert "hunter2" not in text
