"""Resource strings: edge and cloud forms, and the hub's translation between them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pykubeedge.core.constants import NULL_NAMESPACE, Operation
from pykubeedge.core.errors import DecodeError
from pykubeedge.core.resource import (
    CloudResource,
    EdgeResource,
    build_cloud,
    build_edge,
    parse_cloud,
    parse_edge,
    prefix_for_cloud,
    split_node_prefix,
    trim_for_edge,
)

TOKENS = st.text(min_size=1).filter(lambda t: "/" not in t)


def test_parse_edge_object() -> None:
    r = parse_edge("default/pod/nginx")

    assert r == EdgeResource("default", "pod", "nginx")
    assert not r.is_list
    assert not r.cluster_scoped
    assert str(r) == "default/pod/nginx"


def test_parse_edge_cluster_scoped_and_lease() -> None:
    assert parse_edge("null/node/edge-1").cluster_scoped
    assert parse_edge("kube-node-lease/lease/edge-1").namespace == "kube-node-lease"


@pytest.mark.parametrize("operation", [None, Operation.QUERY, Operation.RESPONSE])
def test_parse_edge_list_form_for_query_and_response(operation: str | None) -> None:
    r = parse_edge("default/pod", operation)
    assert r.is_list
    assert r == EdgeResource("default", "pod")
    assert str(r) == "default/pod"


@pytest.mark.parametrize("operation", [Operation.INSERT, Operation.UPDATE, Operation.DELETE])
def test_parse_edge_list_form_refused_for_other_operations(operation: str) -> None:
    with pytest.raises(DecodeError, match="query/response"):
        parse_edge("default/pod", operation)


@pytest.mark.parametrize(
    "resource", ["", "pod", "a/b/c/d", "/pod/x", "default//x", "default/pod/", "//"]
)
def test_parse_edge_rejects_malformed(resource: str) -> None:
    with pytest.raises(DecodeError):
        parse_edge(resource, Operation.QUERY)


def test_build_edge() -> None:
    assert build_edge("default", "configmap", "cm") == "default/configmap/cm"
    assert build_edge(NULL_NAMESPACE, "nodestatus", "edge-1") == "null/nodestatus/edge-1"
    assert build_edge("default", "pod") == "default/pod"


@pytest.mark.parametrize(
    ("namespace", "resource_type", "name"),
    [("", "pod", "x"), ("default", "", "x"), ("a/b", "pod", "x"), ("default", "pod", "x/y")],
)
def test_build_edge_rejects_bad_tokens(namespace: str, resource_type: str, name: str) -> None:
    with pytest.raises(DecodeError):
        build_edge(namespace, resource_type, name)


def test_parse_cloud() -> None:
    r = parse_cloud("node/edge-1/default/pod/nginx")

    assert r == CloudResource("edge-1", "default", "pod", "nginx")
    assert r.edge == EdgeResource("default", "pod", "nginx")
    assert str(r) == "node/edge-1/default/pod/nginx"
    assert parse_cloud("node/edge-1/default/podlist").name == ""


@pytest.mark.parametrize(
    "resource",
    [
        "",
        "node/edge-1",
        "node/edge-1/membership",
        "nodes/edge-1/default/pod/x",
        "node//default/pod/x",
        "node/edge-1/default/pod/x/y",
        "default/pod/x",
    ],
)
def test_parse_cloud_rejects_malformed(resource: str) -> None:
    with pytest.raises(DecodeError):
        parse_cloud(resource)


def test_build_cloud() -> None:
    assert build_cloud("edge-1", "default", "pod", "nginx") == "node/edge-1/default/pod/nginx"
    assert build_cloud("edge-1", "default", "podlist") == "node/edge-1/default/podlist"
    with pytest.raises(DecodeError):
        build_cloud("", "default", "pod")
    with pytest.raises(DecodeError):
        build_cloud("edge-1", "", "pod")


def test_split_node_prefix() -> None:
    assert split_node_prefix("node/edge-1/membership/detail") == ("edge-1", "membership/detail")
    assert split_node_prefix("node/edge-1/twin") == ("edge-1", "twin")
    for bad in ("node/edge-1", "node//twin", "rule/r1/x", "node/edge-1/"):
        with pytest.raises(DecodeError):
            split_node_prefix(bad)


@pytest.mark.parametrize(
    ("cloud", "edge"),
    [
        ("node/edge-1/default/pod/nginx", "default/pod/nginx"),
        ("node/edge-1/null/node/edge-1", "null/node/edge-1"),
        ("node/edge-1/membership", "membership"),
        ("node/edge-1/device/default/d1/twin", "device/default/d1/twin"),
        ("node/edge-1", "node/edge-1"),  # fewer than 3 tokens: unchanged
        ("node/connection", "node/connection"),
        ("rule/r1", "rule/r1"),
        ("default/pod/nginx", "default/pod/nginx"),
        ("nodes/a/b", "nodes/a/b"),
    ],
)
def test_trim_for_edge(cloud: str, edge: str) -> None:
    assert trim_for_edge(cloud) == edge


def test_prefix_for_cloud() -> None:
    assert prefix_for_cloud("edge-1", "default/podstatus/x") == "node/edge-1/default/podstatus/x"
    assert prefix_for_cloud("edge-1", "membership/detail") == "node/edge-1/membership/detail"
    for node_id, resource in (("", "a/b/c"), ("a/b", "a/b/c"), ("edge-1", "")):
        with pytest.raises(DecodeError):
            prefix_for_cloud(node_id, resource)


@given(node=TOKENS, ns=TOKENS, kind=TOKENS, name=TOKENS | st.just(""))
def test_forms_round_trip_through_the_hub(node: str, ns: str, kind: str, name: str) -> None:
    edge = build_edge(ns, kind, name)
    cloud = prefix_for_cloud(node, edge)

    assert cloud == build_cloud(node, ns, kind, name)
    assert trim_for_edge(cloud) == edge
    assert parse_cloud(cloud) == CloudResource(node, ns, kind, name)
    assert parse_edge(edge) == EdgeResource(ns, kind, name)
