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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pykubeedge.core.constants import ResourceType
from pykubeedge.core.errors import PyKubeEdgeError
from pykubeedge.core.objects import namespace_of
from pykubeedge.core.podrefs import iter_references
from pykubeedge.edge.edged.runtime import Mount
from pykubeedge.edge.edged.volumemanager import File, Payload, parse_milli

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
    allocatable: Mapping[str, int] | None = None,
    services: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The container's environment: ``envFrom`` first, then ``env`` (later wins), with
    ``$(VAR)`` references expanded as kubelet does; then the Service variables
    (``services``, see :func:`service_env`) the container does not define itself.

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
            _dict(var["valueFrom"]), pod, namespace, objects, pod_ip=pod_ip, host_ip=host_ip,
            container_name=str(container.get("name") or ""), allocatable=allocatable or {}
        )
        if value is not None:
            env[var_name] = value
    for key, value in (services or {}).items():
        env.setdefault(key, value)
    return env


def service_env(services: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """kubelet's Service environment variables (``FOO_SERVICE_HOST``, ``FOO_PORT_80_TCP``...)
    for services with a ClusterIP.

    >>> svc = {"metadata": {"name": "web-api"}, "spec": {"clusterIP": "10.0.0.5",
    ...        "ports": [{"name": "http", "port": 80}]}}
    >>> env = service_env([svc])
    >>> env["WEB_API_SERVICE_HOST"], env["WEB_API_PORT"], env["WEB_API_PORT_80_TCP_PORT"]
    ('10.0.0.5', 'tcp://10.0.0.5:80', '80')
    """
    env: dict[str, str] = {}
    for svc in services:
        ip = str(_dict(svc.get("spec")).get("clusterIP") or "")
        ports = [_dict(p) for p in _list(_dict(svc.get("spec")).get("ports"))]
        if not ip or ip == "None" or not ports:
            continue
        prefix = str(_dict(svc.get("metadata")).get("name") or "").upper().replace("-", "_")
        host = f"[{ip}]" if ":" in ip else ip
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0].get("port"))
        for port in ports:
            if port.get("name"):
                name = str(port["name"]).upper().replace("-", "_")
                env[f"{prefix}_SERVICE_PORT_{name}"] = str(port.get("port"))
        first = str(ports[0].get("protocol") or "TCP").lower()
        env[f"{prefix}_PORT"] = f"{first}://{host}:{ports[0].get('port')}"
        for port in ports:
            proto = str(port.get("protocol") or "TCP")
            base = f"{prefix}_PORT_{port.get('port')}_{proto.upper()}"
            env[base] = f"{proto.lower()}://{host}:{port.get('port')}"
            env[f"{base}_PROTO"] = proto.lower()
            env[f"{base}_PORT"] = str(port.get("port"))
            env[f"{base}_ADDR"] = ip
    return env


def _value_from(
    value_from: Mapping[str, Any],
    pod: Mapping[str, Any],
    namespace: str,
    objects: Mapping[ObjectKey, Mapping[str, Any] | None],
    *,
    pod_ip: str,
    host_ip: str,
    container_name: str,
    allocatable: Mapping[str, int],
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
    if "resourceFieldRef" in value_from:
        return resource_value(pod, _dict(value_from["resourceFieldRef"]), container_name,
                              allocatable)
    raise PodConfigError("env valueFrom has no source Edged knows")


def resource_value(pod: Mapping[str, Any], ref: Mapping[str, Any], default_container: str,
                   allocatable: Mapping[str, int]) -> str:
    """kubelet's ``ExtractContainerResourceValue``: ``limits.cpu`` etc. of a container,
    divided by ``divisor`` and rounded up; an unset limit is the node's allocatable.

    >>> pod = {"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "500m"}}}]}}
    >>> resource_value(pod, {"resource": "limits.cpu", "divisor": "1m"}, "c", {})
    '500'
    """
    name = str(ref.get("containerName") or default_container)
    resource = str(ref.get("resource") or "")
    divisor = parse_milli(str(ref.get("divisor") or "1")) or 1000
    spec = _dict(pod.get("spec"))
    container: dict[str, Any] = {}
    for item in _list(spec.get("containers")) + _list(spec.get("initContainers")):
        if _dict(item).get("name") == name:
            container = _dict(item)
    if not container:
        raise PodConfigError(f"container {name} not found in pod")
    section, _, kind = resource.partition(".")
    if section not in ("limits", "requests") or not kind:
        raise PodConfigError(f"unsupported container resource : {resource}")
    values = _dict(_dict(container.get("resources")).get(section))
    if kind in values:
        milli = parse_milli(str(values[kind]))
    elif section == "requests" and kind in _dict(
            _dict(container.get("resources")).get("limits")):
        milli = parse_milli(str(_dict(_dict(container.get("resources")).get("limits"))[kind]))
    elif section == "limits":
        milli = allocatable.get(kind, 0) * (1 if kind == "cpu" else 1000)
    else:
        milli = 0
    return str(-(-milli // divisor))


_LABEL_PATH = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def _format_map(values: Mapping[str, Any]) -> str:
    return "\n".join(f"{k}={_go_quote(str(values[k]))}" for k in sorted(values))


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") \
        .replace("\t", "\\t") + '"'


def _field_value(pod: Mapping[str, Any], path: str, *, pod_ip: str, host_ip: str,
                 volume: bool = False) -> str:
    metadata, spec = _dict(pod.get("metadata")), _dict(pod.get("spec"))
    if volume and path in ("metadata.labels", "metadata.annotations"):
        return _format_map(_dict(metadata.get(path.split(".")[1])))
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
    raise PodConfigError(f"unsupported fieldPath: {path}")


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


TokenKey = tuple[str, int, tuple[str, ...]]
"""``(path, expirationSeconds, audiences)`` of a projected serviceAccountToken."""


def token_sources(pod: Mapping[str, Any]) -> list[tuple[str, TokenKey]]:
    """Every projected serviceAccountToken of the pod: ``(volume name, key)``."""
    found: list[tuple[str, TokenKey]] = []
    for volume in _list(_dict(pod.get("spec")).get("volumes")):
        volume = _dict(volume)
        for projection in _list(_dict(volume.get("projected")).get("sources")):
            token = _dict(_dict(projection).get("serviceAccountToken"))
            if token:
                audience = token.get("audience")
                key: TokenKey = (str(token.get("path") or "token"),
                       int(token.get("expirationSeconds") or 3600),
                       (str(audience),) if audience else ())
                found.append((str(volume.get("name") or ""), key))
    return found


def volume_payloads(
    pod: Mapping[str, Any],
    objects: Mapping[ObjectKey, Mapping[str, Any] | None],
    *,
    tokens: Mapping[TokenKey, str] | None = None,
    allocatable: Mapping[str, int] | None = None,
) -> dict[str, Payload]:
    """The files of every configMap, secret, downwardAPI and projected volume (volume ->
    path -> file), with kubelet's modes (``defaultMode`` 0644, ``items[].mode``).

    A missing object or key raises :class:`PodConfigError` with kubelet's text, unless
    ``optional``.
    """
    namespace = namespace_of(pod)
    payloads: dict[str, Payload] = {}
    for volume in _list(_dict(pod.get("spec")).get("volumes")):
        volume = _dict(volume)
        name = str(volume.get("name") or "")
        try:
            if "configMap" in volume:
                source = _dict(volume["configMap"])
                payloads[name] = _files(CONFIGMAP, str(source.get("name") or ""), source,
                                        namespace, objects, _mode(source, "defaultMode"))
            elif "secret" in volume:
                source = _dict(volume["secret"])
                payloads[name] = _files(SECRET, str(source.get("secretName") or ""), source,
                                        namespace, objects, _mode(source, "defaultMode"))
            elif "downwardAPI" in volume:
                source = _dict(volume["downwardAPI"])
                payloads[name] = _downward_files(pod, source, _mode(source, "defaultMode"),
                                                 allocatable or {})
            elif "projected" in volume:
                payloads[name] = _projected_files(pod, _dict(volume["projected"]), namespace,
                                                  objects, tokens or {}, allocatable or {})
        except PodConfigError as exc:
            raise PodConfigError(f'MountVolume.SetUp failed for volume "{name}" : {exc}') \
                from None
    return payloads


def _mode(source: Mapping[str, Any], key: str, default: int = 0o644) -> int:
    value = source.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and \
        0 <= value <= 0o777 else default


def _projected_files(pod: Mapping[str, Any], projected: Mapping[str, Any], namespace: str,
                     objects: Mapping[ObjectKey, Mapping[str, Any] | None],
                     tokens: Mapping[TokenKey, str],
                     allocatable: Mapping[str, int]) -> dict[str, File]:
    mode = _mode(projected, "defaultMode")
    files: dict[str, File] = {}
    for projection in _list(projected.get("sources")):
        projection = _dict(projection)
        if "configMap" in projection:
            source = _dict(projection["configMap"])
            files.update(_files(CONFIGMAP, str(source.get("name") or ""), source, namespace,
                                objects, mode))
        elif "secret" in projection:
            source = _dict(projection["secret"])
            files.update(_files(SECRET, str(source.get("name") or ""), source, namespace,
                                objects, mode))
        elif "downwardAPI" in projection:
            files.update(_downward_files(pod, _dict(projection["downwardAPI"]), mode,
                                         allocatable))
        elif "serviceAccountToken" in projection:
            token = _dict(projection["serviceAccountToken"])
            audience = token.get("audience")
            key: TokenKey = (str(token.get("path") or "token"),
                             int(token.get("expirationSeconds") or 3600),
                             (str(audience),) if audience else ())
            if key not in tokens:
                raise PodConfigError("failed to fetch token: the token request was not "
                                     "answered")
            files[key[0]] = File(tokens[key].encode(), mode)
    return files


def _downward_files(pod: Mapping[str, Any], source: Mapping[str, Any], mode: int,
                    allocatable: Mapping[str, int]) -> dict[str, File]:
    files: dict[str, File] = {}
    for item in _list(source.get("items")):
        item = _dict(item)
        path = str(item.get("path") or "")
        item_mode = _mode(item, "mode", mode)
        if "fieldRef" in item:
            field = str(_dict(item["fieldRef"]).get("fieldPath") or "")
            value = _field_value(pod, field, pod_ip="", host_ip="", volume=True)
        elif "resourceFieldRef" in item:
            value = resource_value(pod, _dict(item["resourceFieldRef"]), "", allocatable)
        else:
            continue
        files[path] = File(value.encode(), item_mode)
    return files


def _files(
    kind: str,
    name: str,
    source: Mapping[str, Any],
    namespace: str,
    objects: Mapping[ObjectKey, Mapping[str, Any] | None],
    mode: int,
) -> dict[str, File]:
    data = _lookup(kind, name, objects)
    if data is None:
        if source.get("optional"):
            return {}
        raise _not_found(kind, name)
    items = _list(source.get("items"))
    if not items:
        return {key: File(value, mode) for key, value in data.items()}
    files: dict[str, File] = {}
    for item in items:
        item = _dict(item)
        key, path = str(item.get("key") or ""), str(item.get("path") or "")
        if key not in data:
            if source.get("optional"):
                continue
            if kind == CONFIGMAP:
                raise PodConfigError(f"configmap references non-existent config key: {key}")
            raise PodConfigError(f"references non-existent secret key: {key}")
        files[path or key] = File(data[key], _mode(item, "mode", mode))
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
