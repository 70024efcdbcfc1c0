"""The Kubernetes resources MetaManager mirrors into ``meta_v2`` and MetaServer serves.

Each edge resource type (the ``<type>`` token of ``<ns>/<type>/<name>``) that MetaServer knows
maps to a group/version/resource, and from there to the ``meta_v2`` key upstream uses
(``/<group|core>/<version>/<plural>/<ns|null>/<name>``)::

    POD = BY_TYPE["pod"]
    POD.v2_key("default", "nginx")   # "/core/v1/pods/default/nginx"
    POD.gvr                         # "/v1, Resource=pods" (Go's GroupVersionResource.String())
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pykubeedge.core.constants import NULL_NAMESPACE, ResourceType

CORE_GROUP: Final = "core"
"""The group token of core (``""`` group) resources in ``meta_v2`` keys."""


@dataclass(frozen=True, slots=True)
class V2Resource:
    """One served resource: its edge type token and its Kubernetes identity.

    >>> BY_PLURAL["nodes"].v2_key("", "edge-1")
    '/core/v1/nodes/null/edge-1'
    """

    edge_type: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    group: str = ""
    version: str = "v1"

    @property
    def api_version(self) -> str:
        """``v1`` for the core group, ``<group>/<version>`` otherwise."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def gvr(self) -> str:
        """The ``group_version_resource`` column: Go's ``GroupVersionResource.String()``."""
        return f"{self.group}/{self.version}, Resource={self.plural}"

    def v2_key(self, namespace: str, name: str) -> str:
        """The ``meta_v2`` primary key; an empty namespace is stored as ``null``."""
        group = self.group or CORE_GROUP
        ns = namespace if self.namespaced and namespace else NULL_NAMESPACE
        return f"/{group}/{self.version}/{self.plural}/{ns}/{name}"


SERVED: Final[tuple[V2Resource, ...]] = (
    V2Resource(ResourceType.POD, "pods", "pod", "Pod", True, ("po",)),
    V2Resource(ResourceType.CONFIGMAP, "configmaps", "configmap", "ConfigMap", True, ("cm",)),
    V2Resource(ResourceType.SECRET, "secrets", "secret", "Secret", True),
    V2Resource(ResourceType.SERVICE, "services", "service", "Service", True, ("svc",)),
    V2Resource(ResourceType.ENDPOINTS, "endpoints", "endpoints", "Endpoints", True, ("ep",)),
    V2Resource(ResourceType.NODE, "nodes", "node", "Node", False, ("no",)),
)
BY_TYPE: Final = {r.edge_type: r for r in SERVED}
BY_PLURAL: Final = {r.plural: r for r in SERVED}
