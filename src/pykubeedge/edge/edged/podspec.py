"""Reading a Pod spec: the ConfigMaps and Secrets it needs, its env, its volume files.

Missing objects or keys raise :class:`PodConfigError` with kubelet's wording; the pod then
stays Pending (``CreateContainerConfigError``) until they arrive::

    refs = referenced_objects(pod)      # [ObjectRef("configmap", "default", "cfg", False)]
    env = resolve_env(pod, pod["spec"]["containers"][0], objects, pod_ip="10.88.0.2",
                      host_ip="192.168.1.5")
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pykubeedge.core.constants import ResourceType
from pykubeedge.core.errors import PyKubeEdgeError
from pykubeedge.core.objects import namespace_of
from pykubeedge.core.podrefs import iter_references
from pykubeedge.edge.edged.runtime import Mount

log = logging.getLogger(__name__)

CONFIGMAP: Final = ResourceType.CONFIGMAP
SECRET: Final = ResourceType.SECRET

ObjectKey = tuple[str, str]
"""``(kind, name)`` of a ConfigMap or Secret in the pod's namespace."""


class PodConfigError(PyKubeEdgeError):
    """A pod refers to a ConfigMap/Secret (or a key of one) that is not there."""


class PodSpecError(PyKubeEdgeError):
    """The Pod object is malformed (no containers, wrong types, no name or UID)."""


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A ConfigMap or Secret a pod uses; ``optional`` only if every use of it is optional."""

    kind: str
    namespace: str
    name: str
    optional: bool = False

    @property
    def key(self) -> ObjectKey:
        return (self.kind, self.name)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def containers(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The pod's regular containers; raises :class:`PodSpecError` unless each has a name and
    an image and names are unique."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        raise PodSpecError("pod has no spec")
    items = spec.get("containers")
    if not isinstance(items, list) or not items:
        raise PodSpecError("pod has no containers")
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            raise PodSpecError("a container is not an object")
        name, image = item.get("name"), item.get("image")
        if not isinstance(name, str) or not name:
            raise PodSpecError("a container has no name")
        if not isinstance(image, str) or not image:
            raise PodSpecError(f"container {name!r} has no image")
        if name in seen:
            raise PodSpecError(f"container name {name!r} is used twice")
        seen.add(name)
    return items


def referenced_objects(pod: Mapping[str, Any]) -> list[ObjectRef]:
    """Every ConfigMap and Secret the pod's volumes, env and envFrom refer to, once each.

    >>> pod = {"metadata": {"namespace": "ns"}, "spec": {"containers": [{"name": "c",
    ...     "envFrom": [{"configMapRef": {"name": "cfg", "optional": True}}]}]}}
    >>> referenced_objects(pod)
    [ObjectRef(kind='configmap', namespace='ns', name='cfg', optional=True)]
    """
    namespace = namespace_of(pod)
    found: dict[ObjectKey, bool] = {}
    for ref in iter_references(pod):
        if ref.use not in ("volume", "env"):
            continue  # pull secrets are not needed for local images; the account is not data
        key = (ref.kind, ref.name)
        found[key] = found.get(key, True) and ref.optional
    return [ObjectRef(kind, namespace, name, optional) for (kind, name), optional in found.items()]


# -- values -------------------------------------------------------------------------------------


def object_data(kind: str, obj: Mapping[str, Any]) -> dict[str, bytes]:
    """The key -> bytes view of a ConfigMap (``data`` + ``binaryData``) or Secret (``data``,
    base64, + ``stringData``). Undecodable values are skipped and logged."""
    result: dict[str, bytes] = {}
    plain = "data" if kind == CONFIGMAP else "stringData"
    encoded = "binaryData" if kind == CONFIGMAP else "data"
    for key, value in _dict(obj.get(encoded)).items():
        if isinstance(value, str):
            try:
                result[key] = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                log.warning("%s key %r is not base64; skipped", kind, key)
    for key, value in _dict(obj.get(plain)).items():
        if isinstance(value, str):
            result[key] = value.encode()
    return result


def _lookup(
    kind: str, name: str, objects: Mapping[ObjectKey, Mapping[str, Any] | None]
) -> dict[str, bytes] | None:
    obj = objects.get((kind, name))
    return None if obj is None else object_data(kind, obj)


def _not_found(kind: str, name: str) -> PodConfigError:
    return PodConfigError(f'{kind} "{name}" not found')


def _kind_title(kind: str) -> str:
    return "ConfigMap" if kind == CONFIGMAP else "Secret"


def resolve_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    objects: Mapping[ObjectKey, Mapping[str, Any] | None],
    *,
    pod_ip: str,
    host_ip: str,
) -> dict[str, str]:
    """The container's environment: ``envFrom`` first, then ``env`` (later wins), with
    ``$(VAR)`` references expanded as kubelet does.

    >>> pod = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {}}
    >>> c = {"env": [{"name": "A", "value": "x"}, {"name": "B", "value": "$(A)-y"},
    ...              {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}
    >>> resolve_env(pod, c, {}, pod_ip="10.88.0.2", host_ip="10.0.0.1")
    {'A': 'x', 'B': 'x-y', 'POD': 'p'}
    """
    namespace = namespace_of(pod)
    env: dict[str, str] = {}
    for source in _list(container.get("envFrom")):
        source = _dict(source)
        prefix = str(source.get("prefix") or "")
        for kind, ref_key in ((CONFIGMAP, "configMapRef"), (SECRET, "secretRef")):
            if ref_key not in source:
                continue
            ref = _dict(source[ref_key])
            ref_name = str(ref.get("name") or "")
            data = _lookup(kind, ref_name, objects)
            if data is None:
                if ref.get("optional"):
                    continue
                raise _not_found(kind, ref_name)
            for key, raw in data.items():
                env[prefix + key] = raw.decode(errors="replace")
    for var in _list(container.get("env")):
        var = _dict(var)
        var_name = var.get("name")
        if not isinstance(var_name, str) or not var_name:
            continue
        if "valueFrom" not in var:
            env[var_name] = _expand(str(var.get("value") or ""), env)
            continue
        value = _value_from(
            _dict(var["valueFrom"]), pod, namespace, objects, pod_ip=pod_ip, host_ip=host_ip
        )
        if value is not None:
            env[var_name] = value
    return env


def _value_from(
    value_from: Mapping[str, Any],
    pod: Mapping[str, Any],
    namespace: str,
    objects: Mapping[ObjectKey, Mapping[str, Any] | None],
    *,
    pod_ip: str,
    host_ip: str,
) -> str | None:
    for kind, ref_key in ((CONFIGMAP, "configMapKeyRef"), (SECRET, "secretKeyRef")):
        if ref_key not in value_from:
            continue
        ref = _dict(value_from[ref_key])
        name, key = str(ref.get("name") or ""), str(ref.get("key") or "")
        data = _lookup(kind, name, objects)
        if data is None:
            if ref.get("optional"):
                return None
            raise _not_found(kind, name)
        if key not in data:
            if ref.get("optional"):
                return None
            raise PodConfigError(
                f"couldn't find key {key} in {_kind_title(kind)} {namespace}/{name}"
            )
        return data[key].decode(errors="replace")
    if "fieldRef" in value_from:
        path = str(_dict(value_from["fieldRef"]).get("fieldPath") or "")
        return _field_value(pod, path, pod_ip=pod_ip, host_ip=host_ip)
    return None  # resourceFieldRef: not supported yet


_LABEL_PATH = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def _field_value(pod: Mapping[str, Any], path: str, *, pod_ip: str, host_ip: str) -> str:
    metadata, spec = _dict(pod.get("metadata")), _dict(pod.get("spec"))
    simple = {
        "metadata.name": metadata.get("name"),
        "metadata.namespace": metadata.get("namespace"),
        "metadata.uid": metadata.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
    }
    if path in simple:
        return str(simple[path] or "")
    match = _LABEL_PATH.match(path)
    if match:
        return str(_dict(metadata.get(match.group(1))).get(match.group(2)) or "")
    log.warning("unsupported fieldRef %r; left empty", path)
    return ""


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def _expand(value: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR_REF.sub(replace, value)


def expand_args(args: list[Any], env: Mapping[str, str]) -> tuple[str, ...]:
    """``command``/``args`` with ``$(VAR)`` expanded from the container's env."""
    return tuple(_expand(str(arg), env) for arg in args)


# -- volumes ------------------------------------------------------------------------------------


def resolve_volumes(
    pod: Mapping[str, Any], objects: Mapping[ObjectKey, Mapping[str, Any] | None]
) -> dict[str, dict[str, bytes]]:
    """The files of every configMap, secret and projected volume (volume -> path -> bytes).

    Other volume types are left to the runtime backend (empty here).
    """
    namespace = namespace_of(pod)
    volumes: dict[str, dict[str, bytes]] = {}
    for volume in _list(_dict(pod.get("spec")).get("volumes")):
        volume = _dict(volume)
        name = str(volume.get("name") or "")
        try:
            if "configMap" in volume:
                source = _dict(volume["configMap"])
                volumes[name] = _files(
                    CONFIGMAP, str(source.get("name") or ""), source, namespace, objects
                )
            elif "secret" in volume:
                source = _dict(volume["secret"])
                volumes[name] = _files(
                    SECRET, str(source.get("secretName") or ""), source, namespace, objects
                )
            elif "projected" in volume:
                files: dict[str, bytes] = {}
                for projection in _list(_dict(volume["projected"]).get("sources")):
                    projection = _dict(projection)
                    for kind, key in ((CONFIGMAP, "configMap"), (SECRET, "secret")):
                        if key in projection:
                            source = _dict(projection[key])
                            files.update(
                                _files(kind, str(source.get("name") or ""), source,
                                       namespace, objects)
                            )
                volumes[name] = files
        except PodConfigError as exc:
            raise PodConfigError(f'MountVolume.SetUp failed for volume "{name}" : {exc}') from None
    return volumes


def _files(
    kind: str,
    name: str,
    source: Mapping[str, Any],
    namespace: str,
    objects: Mapping[ObjectKey, Mapping[str, Any] | None],
) -> dict[str, bytes]:
    data = _lookup(kind, name, objects)
    if data is None:
        if source.get("optional"):
            return {}
        raise _not_found(kind, name)
    items = _list(source.get("items"))
    if not items:
        return dict(data)
    files: dict[str, bytes] = {}
    for item in items:
        item = _dict(item)
        key, path = str(item.get("key") or ""), str(item.get("path") or "")
        if key not in data:
            if source.get("optional"):
                continue
            raise PodConfigError(
                f"{_kind_title(kind).lower()} references non-existent config key: {key}"
            )
        files[path or key] = data[key]
    return files


def container_mounts(container: Mapping[str, Any]) -> tuple[Mount, ...]:
    """The container's ``volumeMounts`` as runtime mounts."""
    mounts = []
    for item in _list(container.get("volumeMounts")):
        item = _dict(item)
        volume, path = item.get("name"), item.get("mountPath")
        if isinstance(volume, str) and isinstance(path, str):
            mounts.append(
                Mount(volume, path, bool(item.get("readOnly")), str(item.get("subPath") or ""))
            )
    return tuple(mounts)
