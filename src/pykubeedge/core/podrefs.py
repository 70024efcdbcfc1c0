"""Which ConfigMaps, Secrets and ServiceAccount a pod refers to, and how. Sans IO, shared by
the cloud (which objects a node needs) and the edge (which objects a pod waits for).

    >>> pod = {"spec": {"containers": [{"name": "c", "envFrom": [
    ...     {"configMapRef": {"name": "cfg", "optional": True}}]}]}}
    >>> list(iter_references(pod))
    [PodRef(kind='configmap', name='cfg', optional=True, use='env')]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

CONFIGMAP = "configmap"
SECRET = "secret"
SERVICEACCOUNT = "serviceaccount"

Use = Literal["volume", "env", "pull", "account"]


@dataclass(frozen=True, slots=True)
class PodRef:
    kind: str  # configmap | secret | serviceaccount
    name: str
    optional: bool
    use: Use  # volume (incl. projected), env (env/envFrom), pull (imagePullSecrets), account


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def iter_references(pod: Mapping[str, Any]) -> Iterator[PodRef]:
    """Every reference of the pod, in spec order; malformed parts are skipped, not fatal."""
    spec = _dict(pod.get("spec"))

    def ref(kind: str, source: Any, key: str, use: Use) -> Iterator[PodRef]:
        source = _dict(source)
        name = source.get(key)
        if isinstance(name, str) and name:
            yield PodRef(kind, name, bool(source.get("optional")), use)

    for volume in _list(spec.get("volumes")):
        volume = _dict(volume)
        yield from ref(CONFIGMAP, volume.get("configMap"), "name", "volume")
        yield from ref(SECRET, volume.get("secret"), "secretName", "volume")
        for projection in _list(_dict(volume.get("projected")).get("sources")):
            projection = _dict(projection)
            yield from ref(CONFIGMAP, projection.get("configMap"), "name", "volume")
            yield from ref(SECRET, projection.get("secret"), "name", "volume")
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in _list(spec.get(key)):
            container = _dict(container)
            for var in _list(container.get("env")):
                value_from = _dict(_dict(var).get("valueFrom"))
                yield from ref(CONFIGMAP, value_from.get("configMapKeyRef"), "name", "env")
                yield from ref(SECRET, value_from.get("secretKeyRef"), "name", "env")
            for source in _list(container.get("envFrom")):
                source = _dict(source)
                yield from ref(CONFIGMAP, source.get("configMapRef"), "name", "env")
                yield from ref(SECRET, source.get("secretRef"), "name", "env")
    for secret in _list(spec.get("imagePullSecrets")):
        yield from ref(SECRET, secret, "name", "pull")
    account = spec.get("serviceAccountName")
    if isinstance(account, str) and account:
        yield PodRef(SERVICEACCOUNT, account, False, "account")
