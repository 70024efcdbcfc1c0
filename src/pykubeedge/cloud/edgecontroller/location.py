"""Which edge node needs which object: pods by node, and the ConfigMaps, Secrets and
ServiceAccounts each node's pods reference (volumes, projected sources, env, envFrom,
imagePullSecrets). Upstream calls it the LocationCache.

    loc = LocationCache()
    loc.update_pod(pod)
    loc.nodes_for("configmap", "default", "app-config")   # -> {"edge-1"}
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Any, Final

from pykubeedge.core.objects import name_of, namespace_of, node_name_of, uid_of
from pykubeedge.core.podrefs import iter_references

Ref = tuple[str, str, str]  # (kind: configmap|secret|serviceaccount, namespace, name)

GONE_REMEMBERED: Final = 4096
"""How many deleted pods the cache remembers the node of (their last events still come)."""


@dataclass
class _PodPlace:
    node: str
    uid: str
    refs: frozenset[Ref] = field(default_factory=frozenset)


def pod_references(pod: dict[str, Any]) -> frozenset[Ref]:
    """Every ConfigMap, Secret and ServiceAccount a pod needs on its node."""
    ns = namespace_of(pod)
    return frozenset((r.kind, ns, r.name) for r in iter_references(pod))


def _key(pod: dict[str, Any]) -> str:
    return f"{namespace_of(pod)}/{name_of(pod)}"


class LocationCache:
    def __init__(self) -> None:
        self.edge_nodes: set[str] = set()
        self._pods: dict[str, _PodPlace] = {}  # "ns/name" -> where
        self._pods_by_node: dict[str, set[str]] = defaultdict(set)
        self._ref_count: dict[Ref, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._gone: OrderedDict[str, str] = OrderedDict()  # "ns/name" -> its last node

    def is_edge_node(self, name: str) -> bool:
        return name in self.edge_nodes

    def update_pod(self, pod: dict[str, Any]) -> tuple[set[Ref], set[Ref]]:
        """Record ``pod``; returns the references its node gained and lost by it."""
        key = _key(pod)
        node = node_name_of(pod)
        if not node:
            return set(), self.delete_pod(pod)
        refs = pod_references(pod)
        old = self._pods.get(key)
        if old is not None and old.node == node and old.refs == refs:
            old.uid = uid_of(pod)
            return set(), set()
        lost = self._forget(key, old) if old is not None else set()
        gained = {r for r in refs if self._ref_count[r].get(node, 0) == 0}
        self._pods[key] = _PodPlace(node, uid_of(pod), refs)
        self._pods_by_node[node].add(key)
        for r in refs:
            self._ref_count[r][node] += 1
        return gained - lost, lost - refs

    def delete_pod(self, pod: dict[str, Any]) -> set[Ref]:
        """Forget ``pod``; returns the references its node no longer has."""
        key = _key(pod)
        old = self._pods.pop(key, None)
        if old is None:
            return set()
        self._gone[key] = old.node
        self._gone.move_to_end(key)
        while len(self._gone) > GONE_REMEMBERED:
            self._gone.popitem(last=False)
        return self._forget(key, old)

    def _forget(self, key: str, place: _PodPlace) -> set[Ref]:
        self._pods_by_node[place.node].discard(key)
        if not self._pods_by_node[place.node]:
            del self._pods_by_node[place.node]
        lost = set()
        for r in place.refs:
            counts = self._ref_count[r]
            counts[place.node] -= 1
            if counts[place.node] <= 0:
                del counts[place.node]
                lost.add(r)
            if not counts:
                del self._ref_count[r]
        return lost

    def pod_node(self, namespace: str, name: str) -> tuple[str, str] | None:
        """(node, uid) of a known scheduled pod."""
        place = self._pods.get(f"{namespace}/{name}")
        return (place.node, place.uid) if place else None

    def last_node(self, namespace: str, name: str) -> str | None:
        """The node a pod is bound to, or was bound to when it was deleted (one of the last
        :data:`GONE_REMEMBERED`): kubelet's Killing event comes after the delete."""
        place = self._pods.get(f"{namespace}/{name}")
        return place.node if place else self._gone.get(f"{namespace}/{name}")

    def pods_on(self, node: str) -> set[str]:
        return set(self._pods_by_node.get(node, ()))

    def nodes_for(self, kind: str, namespace: str, name: str) -> set[str]:
        """The nodes whose pods reference this ConfigMap/Secret/ServiceAccount."""
        counts = self._ref_count.get((kind, namespace, name))
        return set(counts) if counts else set()

    def node_uses(self, node: str, kind: str, namespace: str, name: str) -> bool:
        counts = self._ref_count.get((kind, namespace, name))
        return counts is not None and counts.get(node, 0) > 0

    def refs_of(self, node: str) -> set[Ref]:
        return {r for r, counts in self._ref_count.items() if counts.get(node, 0) > 0}
