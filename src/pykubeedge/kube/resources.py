"""Where each kind lives in the Kubernetes REST API.

    >>> PODS.path(namespace="default", name="nginx")
    '/api/v1/namespaces/default/pods/nginx'
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def base(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def path(self, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        """The URL path; without ``namespace`` a namespaced resource lists across namespaces."""
        parts = [self.base]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(self.plural)
        if name is not None:
            if not name:
                raise ValueError(f"empty name for {self.kind}")
            parts.append(quote(name, safe=""))
            if subresource:
                parts.append(subresource)
        return "/".join(parts)


NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
NODES = Resource("", "v1", "nodes", "Node", namespaced=False)
PODS = Resource("", "v1", "pods", "Pod")
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")
SECRETS = Resource("", "v1", "secrets", "Secret")
SERVICES = Resource("", "v1", "services", "Service")
ENDPOINTS = Resource("", "v1", "endpoints", "Endpoints")
EVENTS = Resource("", "v1", "events", "Event")
SERVICEACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions",
                "CustomResourceDefinition", namespaced=False)
DEVICES = Resource("devices.kubeedge.io", "v1beta1", "devices", "Device")
DEVICEMODELS = Resource("devices.kubeedge.io", "v1beta1", "devicemodels", "DeviceModel")
DEVICESTATUSES = Resource("devices.kubeedge.io", "v1beta1", "devicestatuses", "DeviceStatus")
OBJECTSYNCS = Resource("reliablesyncs.kubeedge.io", "v1alpha1", "objectsyncs", "ObjectSync")
CLUSTEROBJECTSYNCS = Resource("reliablesyncs.kubeedge.io", "v1alpha1", "clusterobjectsyncs",
                              "ClusterObjectSync", namespaced=False)
RULES = Resource("rules.kubeedge.io", "v1", "rules", "Rule")
RULEENDPOINTS = Resource("rules.kubeedge.io", "v1", "ruleendpoints", "RuleEndpoint")

BY_KIND: dict[str, Resource] = {
    r.kind: r
    for r in (NAMESPACES, NODES, PODS, CONFIGMAPS, SECRETS, SERVICES, ENDPOINTS, EVENTS,
              SERVICEACCOUNTS, LEASES, DEPLOYMENTS, CRDS, DEVICES, DEVICEMODELS, DEVICESTATUSES,
              OBJECTSYNCS,
              CLUSTEROBJECTSYNCS, RULES, RULEENDPOINTS)
}


def for_object(obj: dict[str, object]) -> Resource:
    """The Resource of a manifest, by its ``kind`` (for the kinds pykubeedge knows)."""
    kind = obj.get("kind")
    if not isinstance(kind, str) or kind not in BY_KIND:
        raise KeyError(f"unknown kind {kind!r}")
    return BY_KIND[kind]
