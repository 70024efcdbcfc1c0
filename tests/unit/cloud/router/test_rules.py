"""The Router's pure parts: rules into routes, REST paths, resources."""

from __future__ import annotations

from typing import Any

import pytest

from pykubeedge.cloud.router.rules import (
    RestCall,
    RuleError,
    match_rest,
    param_of,
    parse_rule,
    publish_resource,
    service_resource,
    split_rest_path,
)


def ep(name: str, kind: str, **props: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"ruleEndpointType": kind}
    if props:
        spec["properties"] = props
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": spec}


ENDPOINTS = {f"ns/{e['metadata']['name']}": e for e in (
    ep("rest", "rest"), ep("bus", "eventbus"), ep("svc", "servicebus", service_port="8080"),
    ep("noport", "servicebus"), ep("odd", "mqtt"))}


def rule(source: str, sres: dict[str, str], target: str, tres: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "r", "namespace": "ns"},
            "spec": {"source": source, "sourceResource": sres, "target": target,
                     "targetResource": tres}}


def test_each_kind_of_route() -> None:
    r = parse_rule(rule("rest", {"path": "/a/b/"}, "bus", {"topic": "t"}), ENDPOINTS)
    assert (r.key, r.source.key, r.target.topic) == ("ns/r", "/ns/a/b", "t")
    r = parse_rule(rule("rest", {"path": "a"}, "svc", {"path": "/p"}), ENDPOINTS)
    assert (r.target.service_port, r.target.path) == ("8080", "/p")
    r = parse_rule(rule("bus", {"topic": "up", "node_name": "e1"}, "rest",
                        {"resource": "http://x/y"}), ENDPOINTS)
    assert r.source.key == "bus/node/e1/ns/up" and r.target.resource == "http://x/y"
    r = parse_rule(rule("svc", {"target_url": "/api", "node_name": "e1"}, "rest",
                        {"resource": "https://x"}), ENDPOINTS)
    assert r.source.key == "servicebus/node/e1//api"


@pytest.mark.parametrize(("source", "sres", "target", "tres", "why"), [
    ("nope", {"path": "a"}, "bus", {"topic": "t"}, "source rule endpoint ns/nope"),
    ("rest", {"path": "a"}, "gone", {"topic": "t"}, "target rule endpoint ns/gone"),
    ("odd", {}, "rest", {"resource": "http://x"}, "ruleEndpointType 'mqtt'"),
    ("rest", {"path": "a"}, "rest", {"resource": "http://x"}, "cannot feed"),
    ("bus", {"topic": "t"}, "bus", {"topic": "t"}, "cannot feed"),
    ("rest", {}, "bus", {"topic": "t"}, "sourceResource.path"),
    ("rest", {"path": "/"}, "bus", {"topic": "t"}, "non-empty"),
    ("bus", {"topic": "t"}, "rest", {"resource": "http://x"}, "sourceResource.node_name"),
    ("bus", {"topic": "t", "node_name": "n"}, "rest", {"resource": "ftp://x"}, "http(s)"),
    ("rest", {"path": "a"}, "noport", {"path": "/"}, "service_port"),
    ("rest", {"path": "a"}, "svc", {}, "targetResource.path"),
])
def test_what_is_wrong_with_a_rule(source: str, sres: dict[str, str], target: str,
                                   tres: dict[str, str], why: str) -> None:
    with pytest.raises(RuleError, match=why.replace("(", r"\(").replace(")", r"\)")):
        parse_rule(rule(source, sres, target, tres), ENDPOINTS)


def test_rest_paths() -> None:
    assert split_rest_path("/e1/ns/a/b/", "q=1") == RestCall("e1", "ns", ["a", "b"], "q=1")
    for bad in ("/", "/e1", "/e1/ns", "/e1/ns/", "//ns/a", "e1/ns/a"):
        assert split_rest_path(bad) is None, bad
    assert match_rest("a", ["a", "b"]) == 1
    assert match_rest("a/b", ["a", "b"]) == 2
    assert match_rest("a/{id}/c", ["a", "42", "c", "d"]) == 3
    assert match_rest("a/b/c", ["a", "b"]) == 0
    assert match_rest("b", ["a", "b"]) == 0
    call = RestCall("e1", "ns", ["a", "x", "y"], "")
    assert param_of(call, 1) == "/x/y" and param_of(call, 3) == ""


def test_resources_to_the_edge() -> None:
    assert publish_resource("e1", "t/", "/x") == "node/e1/t/x"
    assert service_resource("e1", "80", "/", "/index.html") == "node/e1/80:/index.html"
    assert service_resource("e1", "80", "/api", "") == "node/e1/80:/api"
