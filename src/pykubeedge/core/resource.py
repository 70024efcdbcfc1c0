"""Resource strings: the edge form, the cloud form, and the hub's translation between them.

- edge form ``<namespace>/<type>/<name>`` (or ``<namespace>/<type>`` for list queries);
  cluster-scoped objects use the namespace ``null``: ``null/node/edge-1``.
- cloud form ``node/<nodeID>/<namespace>/<type>[/<name>]``.

CloudHub strips the node prefix on the way down and adds it on the way up::

    trim_for_edge("node/edge-1/default/pod/nginx")    # "default/pod/nginx"
    prefix_for_cloud("edge-1", "default/podstatus/nginx")  # "node/edge-1/default/podstatus/nginx"

Malformed strings raise :class:`DecodeError`, whether parsed or built: they come from the
network more often than from a typo.
"""

from __future__ import annotations

from dataclasses import dataclass

from pykubeedge.core.constants import NODE_PREFIX, NULL_NAMESPACE, RESOURCE_SEP, Operation
from pykubeedge.core.errors import DecodeError

_LIST_OPERATIONS = frozenset({Operation.QUERY, Operation.RESPONSE})


@dataclass(frozen=True, slots=True)
class EdgeResource:
    """A parsed edge resource; ``name`` is empty for the list form.

    >>> r = parse_edge("null/node/edge-1")
    >>> (r.cluster_scoped, r.resource_type, str(r))
    (True, 'node', 'null/node/edge-1')
    """

    namespace: str
    resource_type: str
    name: str = ""

    @property
    def is_list(self) -> bool:
        """True for ``<namespace>/<type>`` (a list query or its response)."""
        return not self.name

    @property
    def cluster_scoped(self) -> bool:
        """True when the namespace is the literal ``null``."""
        return self.namespace == NULL_NAMESPACE

    def __str__(self) -> str:
        return build_edge(self.namespace, self.resource_type, self.name)


@dataclass(frozen=True, slots=True)
class CloudResource:
    """A parsed cloud resource ``node/<node_id>/<namespace>/<type>[/<name>]``.

    >>> r = parse_cloud("node/edge-1/default/pod/nginx")
    >>> (r.node_id, str(r.edge))
    ('edge-1', 'default/pod/nginx')
    """

    node_id: str
    namespace: str
    resource_type: str
    name: str = ""

    @property
    def edge(self) -> EdgeResource:
        """The same object in the edge form."""
        return EdgeResource(self.namespace, self.resource_type, self.name)

    def __str__(self) -> str:
        return build_cloud(self.node_id, self.namespace, self.resource_type, self.name)


def parse_edge(resource: str, operation: str | None = None) -> EdgeResource:
    """Parse ``<ns>/<type>/<name>`` or ``<ns>/<type>``.

    With ``operation`` given, the 2-token list form is accepted only for ``query`` and
    ``response``, as upstream's ``ParseResourceEdge``; with ``None`` it is always accepted.

    >>> parse_edge("default/pod", Operation.QUERY).is_list
    True
    >>> parse_edge("default/pod", Operation.INSERT)
    Traceback (most recent call last):
    ...
    pykubeedge.core.errors.DecodeError: ...
    """
    tokens = _split(resource, "edge")
    if len(tokens) == 3:
        return EdgeResource(tokens[0], tokens[1], tokens[2])
    if len(tokens) == 2:
        if operation is not None and operation not in _LIST_OPERATIONS:
            raise DecodeError(
                f"edge resource {resource!r} has no name; "
                f"a list form is only valid for query/response, not {operation!r}"
            )
        return EdgeResource(tokens[0], tokens[1])
    raise DecodeError(f"edge resource {resource!r} is not <namespace>/<type>[/<name>]")


def build_edge(namespace: str, resource_type: str, name: str = "") -> str:
    """``<namespace>/<type>[/<name>]``. Pass ``NULL_NAMESPACE`` for cluster-scoped objects.

    >>> build_edge(NULL_NAMESPACE, "nodepatch", "edge-1")
    'null/nodepatch/edge-1'
    """
    parts = [namespace, resource_type] + ([name] if name else [])
    _check_tokens(parts, "edge")
    return RESOURCE_SEP.join(parts)


def parse_cloud(resource: str) -> CloudResource:
    """Parse ``node/<nodeID>/<namespace>/<type>[/<name>]`` (upstream ``BuildResource``'s form).

    >>> parse_cloud("node/edge-1/kube-node-lease/lease/edge-1").resource_type
    'lease'
    """
    tokens = _split(resource, "cloud")
    if tokens[0] != NODE_PREFIX or len(tokens) not in (4, 5):
        raise DecodeError(
            f"cloud resource {resource!r} is not node/<nodeID>/<namespace>/<type>[/<name>]"
        )
    return CloudResource(*tokens[1:])


def build_cloud(node_id: str, namespace: str, resource_type: str, name: str = "") -> str:
    """``node/<nodeID>/<namespace>/<type>[/<name>]``.

    >>> build_cloud("edge-1", "default", "pod", "nginx")
    'node/edge-1/default/pod/nginx'
    """
    parts = [NODE_PREFIX, node_id, namespace, resource_type] + ([name] if name else [])
    _check_tokens(parts, "cloud")
    return RESOURCE_SEP.join(parts)


def split_node_prefix(resource: str) -> tuple[str, str]:
    """Split any ``node/<nodeID>/<rest>`` into ``(nodeID, rest)``, e.g. device forms.

    >>> split_node_prefix("node/edge-1/membership/detail")
    ('edge-1', 'membership/detail')
    """
    tokens = resource.split(RESOURCE_SEP, 2)
    if len(tokens) != 3 or tokens[0] != NODE_PREFIX or not tokens[1] or not tokens[2]:
        raise DecodeError(f"resource {resource!r} is not node/<nodeID>/<rest>")
    return tokens[1], tokens[2]


def node_resource(node_id: str) -> str:
    """``node/<nodeID>``: the resource of CloudHub's connected/disconnected events.

    >>> node_resource("edge-1")
    'node/edge-1'
    """
    _check_tokens([node_id], "cloud")
    return f"{NODE_PREFIX}{RESOURCE_SEP}{node_id}"


def node_of(resource: str) -> str:
    """The node id of any cloud-side resource (``node/<nodeID>`` or ``node/<nodeID>/...``).

    >>> node_of("node/edge-1"), node_of("node/edge-1/default/pod/web")
    ('edge-1', 'edge-1')
    """
    tokens = resource.split(RESOURCE_SEP, 2)
    if len(tokens) < 2 or tokens[0] != NODE_PREFIX or not tokens[1]:
        raise DecodeError(f"resource {resource!r} is not node/<nodeID>[/...]")
    return tokens[1]


def resource_type_of(resource: str) -> str:
    """The ``<type>`` token of a resource in either form ("" when it has none).

    >>> resource_type_of("node/edge-1/default/pod/web"), resource_type_of("default/pod/web")
    ('pod', 'pod')
    """
    tokens = resource.split(RESOURCE_SEP)
    if tokens[0] == NODE_PREFIX and len(tokens) >= 4:
        return tokens[3]
    return tokens[1] if len(tokens) >= 2 else ""


def trim_for_edge(resource: str) -> str:
    """Cloud to edge (upstream ``TrimMessage``): drop ``node/<nodeID>/`` when present.

    A resource whose first token is ``node`` and which has at least 3 tokens loses its first two;
    anything else is returned unchanged. (Upstream tests the string prefix ``node``, so it would
    also trim a first token like ``nodes``; we test the whole token.)

    >>> trim_for_edge("node/edge-1/default/pod/nginx")
    'default/pod/nginx'
    >>> trim_for_edge("rule/r1")
    'rule/r1'
    """
    tokens = resource.split(RESOURCE_SEP, 2)
    if len(tokens) == 3 and tokens[0] == NODE_PREFIX:
        return tokens[2]
    return resource


def prefix_for_cloud(node_id: str, resource: str) -> str:
    """Edge to cloud (upstream ``PubToController``): prepend ``node/<nodeID>/``.

    >>> prefix_for_cloud("edge-1", "null/nodestatus/edge-1")
    'node/edge-1/null/nodestatus/edge-1'
    """
    if not node_id or RESOURCE_SEP in node_id:
        raise DecodeError(f"node id {node_id!r} is empty or contains {RESOURCE_SEP!r}")
    if not resource:
        raise DecodeError(f"empty resource from node {node_id!r}")
    return f"{NODE_PREFIX}{RESOURCE_SEP}{node_id}{RESOURCE_SEP}{resource}"


def _split(resource: str, form: str) -> list[str]:
    tokens = resource.split(RESOURCE_SEP)
    if any(not token for token in tokens):
        raise DecodeError(f"{form} resource {resource!r} has an empty token")
    return tokens


def _check_tokens(parts: list[str], form: str) -> None:
    for part in parts:
        if not part or RESOURCE_SEP in part:
            raise DecodeError(
                f"{form} resource token {part!r} is empty or contains {RESOURCE_SEP!r}"
            )
