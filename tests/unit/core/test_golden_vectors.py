"""Golden vectors: frames recorded on the wire with upstream KubeEdge v1.23.1's binaries
(golden/v1.23.1.jsonl, made by golden/record.py from an interop run's frame logs). A shape
change in our codec, our replies or our reading of upstream's fails here, without the Go
binaries.

- ``go-edge``: upstream's edgecore on our cloudcore; "from-upstream" frames are what it sent,
  "to-upstream" frames what our cloudcore sent and it accepted (its log stayed clean).
- ``go-cloud``: our edgecore on upstream's cloudcore; "from-upstream" frames are what
  upstream's cloudcore sent, "to-upstream" what our edgecore sent and it accepted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from pykubeedge.cloud.edgecontroller.upstream import OBJECT_RESP, Upstream
from pykubeedge.core import codec
from pykubeedge.core.content import (
    error_reply,
    list_items,
    object_reply,
    parse_object_reply,
    status,
)
from pykubeedge.core.message import Message
from pykubeedge.core.resource import parse_cloud, prefix_for_cloud
from pykubeedge.edge.metamanager.manager import KNOWN_TYPES

VECTORS = [json.loads(line) for line in
           (Path(__file__).parent / "golden" / "v1.23.1.jsonl").read_text().splitlines()
           if line.strip()]


def _id(v: dict[str, Any]) -> str:
    r = v["frame"]["route"]
    return f"{v['peer']}:{v['direction']}:{r.get('operation')}:{v['type']}:{v['shape']}"


def select(peer: str, direction: str, operation: str | None = None) -> list[dict[str, Any]]:
    return [v for v in VECTORS if v["peer"] == peer and v["direction"] == direction
            and (operation is None or v["frame"]["route"].get("operation") == operation)]


def frame(v: dict[str, Any]) -> Message:
    return codec.decode(orjson.dumps(v["frame"]))


def test_the_vectors_cover_every_kind_both_directions_exchanged() -> None:
    kinds = {(v["peer"], v["direction"], v["frame"]["route"].get("operation"), v["type"])
             for v in VECTORS}
    for rtype in ("node", "nodepatch", "podpatch", "lease", "serviceaccounttoken"):
        reply = "lease" if rtype == "lease" else rtype
        assert ("go-edge", "to-upstream", "response", reply) in kinds, rtype
        assert ("go-cloud", "from-upstream", "response", reply) in kinds or rtype == "nodepatch"
    for rtype in ("configmap", "secret", "pod", "node"):
        assert any(k[:2] == ("go-edge", "to-upstream") and k[3] == rtype and k[2] != "response"
                   for k in kinds), rtype
    assert ("go-cloud", "from-upstream", "response", "configmap") in kinds


@pytest.mark.parametrize("v", VECTORS, ids=_id)
def test_every_frame_decodes_and_encodes_back_to_the_same_json(v: dict[str, Any]) -> None:
    msg = frame(v)
    assert orjson.loads(codec.encode(msg)) == v["frame"]


@pytest.mark.parametrize("v", select("go-edge", "to-upstream", "response"), ids=_id)
def test_our_cloud_replies_in_the_go_decoders_shapes(v: dict[str, Any]) -> None:
    msg = frame(v)
    assert msg.group == "resource" and msg.source == "edgecontroller" and msg.parent_msg_id
    content = msg.content
    if v["shape"] == "object-resp":
        assert set(content) == {"Object", "Err"}
        err = content["Err"]
        if err is None:
            obj = content["Object"]
            assert obj["kind"] and obj["apiVersion"]  # Object 'Kind' is missing otherwise
            assert msg.resourceversion == obj["metadata"]["resourceVersion"]
        else:  # a StatusError as Go writes it: never a string
            assert set(err) == {"ErrStatus"} and err["ErrStatus"]["kind"] == "Status"
            assert isinstance(err["ErrStatus"]["code"], int)
    elif v["shape"] == "object":
        assert content["kind"] and content["apiVersion"]
    else:
        assert content == "OK"


@pytest.mark.parametrize("v", select("go-cloud", "from-upstream", "response"), ids=_id)
def test_we_understand_every_answer_of_upstreams_cloud(v: dict[str, Any]) -> None:
    msg = frame(v)
    reply = parse_object_reply(msg.content)
    assert not reply.failed
    if v["shape"] in ("object-resp", "object"):
        [obj] = list_items(msg.content)
        assert obj["metadata"]["name"]
    # We ACK every answer but "OK" (upstream's cloud waits for its ConfigMap/Secret ones).
    assert msg.group == "resource"


@pytest.mark.parametrize("v", [v for v in select("go-cloud", "from-upstream", "response")
                               if v["shape"] == "object-resp"], ids=_id)
def test_our_object_replies_have_upstreams_shape_for_the_same_request(v: dict[str, Any]) -> None:
    theirs = frame(v)
    ours = Message(parent_msg_id="p", source="edgecontroller", group="resource",
                   operation="response", resource=theirs.resource,
                   content=object_reply(theirs.content["Object"]))
    encoded = orjson.loads(codec.encode(ours))
    assert set(encoded["content"]) == set(v["frame"]["content"]) == {"Object", "Err"}
    assert encoded["content"]["Err"] is v["frame"]["content"]["Err"] is None
    assert encoded["route"]["group"] == v["frame"]["route"]["group"]
    failed = error_reply(status("NotFound", "gone", name="x", kind="leases"))
    assert set(failed["Err"]) == {"ErrStatus"}


@pytest.mark.parametrize("v", [v for v in select("go-edge", "from-upstream")
                               if v["frame"]["route"].get("operation") not in (
                                   "keepalive", "get", "response")], ids=_id)
def test_our_cloud_has_a_handler_for_every_request_of_the_go_edge(v: dict[str, Any]) -> None:
    msg = frame(v)
    res = parse_cloud(prefix_for_cloud("edge-node", msg.resource))
    up = Upstream(None, None)  # type: ignore[arg-type]
    assert (res.resource_type, msg.operation) in up._handlers, (res.resource_type, msg.operation)
    if (res.resource_type, msg.operation) in OBJECT_RESP:
        assert res.resource_type in ("node", "nodepatch", "podpatch", "lease", "pod")


@pytest.mark.parametrize("v", [v for v in select("go-cloud", "from-upstream")
                               if v["frame"]["route"].get("operation") != "response"], ids=_id)
def test_every_message_upstreams_cloud_sends_is_a_type_our_edge_handles(
        v: dict[str, Any]) -> None:
    msg = frame(v)
    rtype = msg.resource.split("/")[-2]
    assert rtype in KNOWN_TYPES
