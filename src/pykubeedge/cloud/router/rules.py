"""Rules and RuleEndpoints (``rules.kubeedge.io/v1``) as the Router uses them: which source
feeds which target, the listener keys and the beehive resources of each kind (upstream
``cloud/pkg/router/provider/{rest,eventbus,servicebus}``). Pure: no I/O.

    >>> ep = {"metadata": {"name": "my-rest", "namespace": "default"},
    ...       "spec": {"ruleEndpointType": "rest"}}
    >>> bus = {"metadata": {"name": "my-bus", "namespace": "default"},
    ...        "spec": {"ruleEndpointType": "eventbus"}}
    >>> rule = {"metadata": {"name": "r", "namespace": "default"},
    ...         "spec": {"source": "my-rest", "sourceResource": {"path": "/a"},
    ...                  "target": "my-bus", "targetResource": {"topic": "t"}}}
    >>> route = parse_rule(rule, {"default/my-rest": ep, "default/my-bus": bus})
    >>> (route.source.kind, route.target.kind, route.source.path)
    ('rest', 'eventbus', 'a')
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pykubeedge.core.errors import PyKubeEdgeError
from pykubeedge.core.objects import name_of, namespace_of

REST: Final = "rest"
EVENTBUS: Final = "eventbus"
SERVICEBUS: Final = "servicebus"
KINDS: Final = (REST, EVENTBUS, SERVICEBUS)
# What each kind can be: rest -> eventbus | servicebus, eventbus -> rest, servicebus -> rest.
ROUTES: Final = frozenset({(REST, EVENTBUS), (REST, SERVICEBUS), (EVENTBUS, REST),
                           (SERVICEBUS, REST)})

Obj = dict[str, Any]


class RuleError(PyKubeEdgeError):
    """A Rule that cannot be routed (a missing endpoint or field); its status says why."""


@dataclass(frozen=True)
class Source:
    kind: str
    namespace: str
    path: str = ""  # rest: normalized, no leading or trailing "/"
    topic: str = ""  # eventbus
    node: str = ""  # eventbus, servicebus
    target_url: str = ""  # servicebus

    @property
    def key(self) -> str:
        """What the Router listens on: a REST path, or ``<edge source>/<cloud resource>``."""
        if self.kind == REST:
            return f"/{self.namespace}/{self.path}"
        if self.kind == EVENTBUS:
            return f"bus/{subscribe_resource(self.node, self.namespace, self.topic)}"
        return f"servicebus/{start_resource(self.node, self.target_url)}"


@dataclass(frozen=True)
class Target:
    kind: str
    namespace: str
    resource: str = ""  # rest: the URL
    topic: str = ""  # eventbus
    path: str = ""  # servicebus
    service_port: str = ""  # servicebus (the RuleEndpoint's properties.service_port)


@dataclass(frozen=True)
class Route:
    namespace: str
    name: str
    source: Source
    target: Target

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def _meta(obj: Obj) -> tuple[str, str]:
    return namespace_of(obj), name_of(obj)


def _strings(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def endpoint_kind(ep: Obj) -> str:
    kind = str((ep.get("spec") or {}).get("ruleEndpointType") or "")
    if kind not in KINDS:
        raise RuleError(f"ruleEndpointType {kind!r} is not one of {', '.join(KINDS)}")
    return kind


def normalize_path(path: str) -> str:
    return path.strip("/")


def parse_rule(rule: Obj, endpoints: Mapping[str, Obj]) -> Route:
    """The route ``rule`` describes, its endpoints looked up in ``endpoints``
    (``namespace/name`` -> RuleEndpoint). Raises :class:`RuleError` saying what is wrong."""
    ns, name = _meta(rule)
    spec = rule.get("spec") or {}
    ends = []
    for role in ("source", "target"):
        ep_name = str(spec.get(role) or "")
        ep = endpoints.get(f"{ns}/{ep_name}")
        if ep is None:
            raise RuleError(f"{role} rule endpoint {ns}/{ep_name} does not exist")
        ends.append(endpoint_kind(ep))
    src_kind, dst_kind = ends
    if (src_kind, dst_kind) not in ROUTES:
        raise RuleError(f"a {src_kind} source cannot feed a {dst_kind} target")
    sres, tres = _strings(spec.get("sourceResource")), _strings(spec.get("targetResource"))

    def need(res: dict[str, str], key: str, role: str, kind: str) -> str:
        value = res.get(key, "")
        if not value:
            raise RuleError(f"a {kind} {role} needs {role}Resource.{key}")
        return value

    if src_kind == REST:
        path = normalize_path(need(sres, "path", "source", src_kind))
        if not path:
            raise RuleError("a rest source needs a non-empty sourceResource.path")
        source = Source(REST, ns, path=path)
    elif src_kind == EVENTBUS:
        source = Source(EVENTBUS, ns, topic=need(sres, "topic", "source", src_kind),
                        node=need(sres, "node_name", "source", src_kind))
    else:
        source = Source(SERVICEBUS, ns, target_url=need(sres, "target_url", "source", src_kind),
                        node=need(sres, "node_name", "source", src_kind))
    dst_ep = endpoints[f"{ns}/{spec.get('target')}"]
    if dst_kind == REST:
        url = need(tres, "resource", "target", dst_kind)
        if not url.startswith(("http://", "https://")):
            raise RuleError(f"targetResource.resource {url!r} is not an http(s) URL")
        target = Target(REST, ns, resource=url)
    elif dst_kind == EVENTBUS:
        target = Target(EVENTBUS, ns, topic=need(tres, "topic", "target", dst_kind))
    else:
        port = _strings((dst_ep.get("spec") or {}).get("properties")).get("service_port", "")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise RuleError("a servicebus target endpoint needs properties.service_port "
                            f"(a port number), got {port!r}")
        target = Target(SERVICEBUS, ns, path=need(tres, "path", "target", dst_kind),
                        service_port=port)
    return Route(ns, name, source, target)


# -- beehive resources (cloud-internal form: the hub trims ``node/<id>/``) -------------------

def subscribe_resource(node: str, namespace: str, topic: str) -> str:
    """What an eventbus source asks the edge to subscribe to: ``<namespace>/<topic>``.

    >>> subscribe_resource("edge-1", "default", "sensors/a")
    'node/edge-1/default/sensors/a'
    """
    return f"node/{node}/{namespace}/{topic}"


def start_resource(node: str, target_url: str) -> str:
    """The URL a servicebus source allows the edge's local callers to reach.

    >>> start_resource("edge-1", "/cloud/api")
    'node/edge-1//cloud/api'
    """
    return f"node/{node}/{target_url}"


def join_param(base: str, param: str) -> str:
    """``base`` with what the REST path had beyond the rule's path (upstream's ``param``).

    >>> join_param("topic/a", ""), join_param("topic/a/", "/x/y"), join_param("/p", "?q=1")
    ('topic/a', 'topic/a/x/y', '/p?q=1')
    """
    if not param:
        return base
    if param.startswith("?"):
        return base + param
    return base.rstrip("/") + "/" + param.lstrip("/")


def publish_resource(node: str, topic: str, param: str) -> str:
    """rest -> eventbus: the edge publishes on ``<topic>[/<param>]``.

    >>> publish_resource("edge-1", "hello/world", "")
    'node/edge-1/hello/world'
    """
    return f"node/{node}/{join_param(topic, param)}"


def service_resource(node: str, port: str, path: str, param: str) -> str:
    """rest -> servicebus: ``<servicePort>:<path>[/<param>]`` on the edge.

    >>> service_resource("edge-1", "8080", "/api", "/v1?x=1")
    'node/edge-1/8080:/api/v1?x=1'
    """
    return f"node/{node}/{port}:{join_param(path, param)}"


# -- REST paths -------------------------------------------------------------------------------

_PARAM = re.compile(r"^\{[-A-Za-z0-9+&@#%?=~_|!:,.;]+\}$")


@dataclass(frozen=True)
class RestCall:
    node: str
    namespace: str
    rest: list[str]  # the path segments after the namespace
    query: str


def split_rest_path(path: str, query: str = "") -> RestCall | None:
    """``/<node>/<namespace>/<path...>`` -> its parts; None when it is not that shape.

    >>> split_rest_path("/edge-1/default/a/b", "x=1")
    RestCall(node='edge-1', namespace='default', rest=['a', 'b'], query='x=1')
    """
    parts = path.split("/")
    if len(parts) < 4 or parts[0] != "" or not parts[1] or not parts[2]:
        return None
    rest = [p for p in parts[3:] if p]
    if not rest:
        return None
    return RestCall(parts[1], parts[2], rest, query)


def match_rest(rule_path: str, segments: list[str]) -> int:
    """How many segments of ``segments`` the rule's path matches from the start (``{name}``
    matches any one segment); 0 when it does not match.

    >>> match_rest("a/{id}", ["a", "7", "x"]), match_rest("a/b", ["a", "c"])
    (2, 0)
    """
    want = rule_path.split("/")
    if len(want) > len(segments):
        return 0
    for w, s in zip(want, segments, strict=False):
        if w != s and not _PARAM.match(w):
            return 0
    return len(want)


def param_of(call: RestCall, matched: int) -> str:
    """The part of the call beyond the rule's path: ``/rest...`` and ``?query``.

    >>> param_of(RestCall("n", "ns", ["a", "x"], "q=1"), 1)
    '/x?q=1'
    """
    extra = "/".join(call.rest[matched:])
    param = f"/{extra}" if extra else ""
    return param + (f"?{call.query}" if call.query else "")
