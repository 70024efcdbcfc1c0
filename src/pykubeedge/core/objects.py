"""Typed accessors for Kubernetes object bodies (plain JSON dicts), sans IO.

Objects arrive from the network: any field may be missing or of the wrong type. These read
what is there and fall back to the empty value, so callers never repeat the ``isinstance``
dance::

    uid_of(pod)             # "" when there is no string metadata.uid
    namespace_of(pod)       # metadata.namespace, or "default" (the API server's default)
    name_of(node), kind_of(obj), resource_version_of(obj)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

DEFAULT_NAMESPACE: Final = "default"
"""The namespace of a namespaced object that names none (the API server fills it in)."""


def metadata_of(obj: Any) -> Mapping[str, Any]:
    """``obj["metadata"]`` when both are objects, else an empty mapping.

    >>> metadata_of({"metadata": {"name": "web"}})["name"]
    'web'
    >>> dict(metadata_of("not an object"))
    {}
    """
    return _section(obj, "metadata")


def _section(obj: Any, key: str) -> Mapping[str, Any]:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def uid_of(obj: Any) -> str:
    """``metadata.uid``, or "".

    >>> uid_of({"metadata": {"uid": "u1"}}), uid_of({"metadata": {"uid": 7}})
    ('u1', '')
    """
    return _text(metadata_of(obj).get("uid"))


def name_of(obj: Any) -> str:
    """``metadata.name``, or "".

    >>> name_of({"metadata": {"name": "edge-1"}})
    'edge-1'
    """
    return _text(metadata_of(obj).get("name"))


def namespace_of(obj: Any, default: str = DEFAULT_NAMESPACE) -> str:
    """``metadata.namespace``, or ``default`` when it is missing or empty.

    >>> namespace_of({"metadata": {}}), namespace_of({"metadata": {"namespace": "kube-system"}})
    ('default', 'kube-system')
    >>> namespace_of({"metadata": {}}, default="")
    ''
    """
    return _text(metadata_of(obj).get("namespace")) or default


def resource_version_of(obj: Any) -> str:
    """``metadata.resourceVersion``, or "".

    >>> resource_version_of({"metadata": {"resourceVersion": "42"}})
    '42'
    """
    return _text(metadata_of(obj).get("resourceVersion"))


def kind_of(obj: Any) -> str:
    """``kind``, or "".

    >>> kind_of({"kind": "Pod"})
    'Pod'
    """
    return _text(obj.get("kind")) if isinstance(obj, Mapping) else ""


def spec_of(obj: Any) -> Mapping[str, Any]:
    """``obj["spec"]`` when it is an object, else an empty mapping.

    >>> spec_of({"spec": {"nodeName": "edge-1"}})["nodeName"]
    'edge-1'
    """
    return _section(obj, "spec")


def node_name_of(pod: Any) -> str:
    """A pod's ``spec.nodeName``, or "" (not scheduled).

    >>> node_name_of({"spec": {"nodeName": "edge-1"}})
    'edge-1'
    """
    return _text(spec_of(pod).get("nodeName"))
