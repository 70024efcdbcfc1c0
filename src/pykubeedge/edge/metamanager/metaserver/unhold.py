"""MetaServer's ``unhold-upgrade`` subresource (KubeEdge v1.23's edge hold-upgrade): a POST
releases pods Edged holds because of ``edge.kubeedge.io/hold-upgrade: "true"``.

- ``POST /api/v1/pods/unhold-upgrade`` (or ``/api/v1/namespaces/<ns>/pods/unhold-upgrade``;
  the namespace in the path is ignored, as upstream), body ``<namespace>/<name>``,
  ``text/plain``;
- ``POST /api/v1/nodes/unhold-upgrade``, body the node name: every held pod of that node.

Replies as upstream's handler: 200 with an empty body; errors are plain text with a newline::

    curl -X POST -H 'Content-Type: text/plain' --data 'default/web' \\
        http://127.0.0.1:10550/api/v1/pods/unhold-upgrade
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from aiohttp import web

from pykubeedge.core.objects import name_of, namespace_of
from pykubeedge.edge.metamanager.dao import MetaStore

log = logging.getLogger(__name__)

HOLD_UPGRADE_ANNOTATION: Final = "edge.kubeedge.io/hold-upgrade"
MAX_BODY: Final = 3 * 1024 * 1024
UNHOLD: Final = "unhold-upgrade"

Unhold = Callable[[str, str], Awaitable[None]]
"""``unhold(namespace, name)``: tell Edged to release the pod."""


def unhold_target(path: str) -> str:
    """``pods`` or ``nodes`` if ``path`` is an unhold-upgrade subresource, else ``""``.

    >>> unhold_target("/api/v1/pods/unhold-upgrade"), unhold_target("/api/v1/pods/web")
    ('pods', '')
    """
    segments = [s for s in path.split("/") if s]
    if segments[:2] != ["api", "v1"] or not segments or segments[-1] != UNHOLD:
        return ""
    rest = segments[2:-1]
    if len(rest) == 3 and rest[0] == "namespaces":
        rest = rest[2:]
    return rest[0] if len(rest) == 1 else "unsupported"


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n", content_type="text/plain")


def _held(pod: Mapping[str, Any]) -> bool:
    meta = pod.get("metadata") if isinstance(pod.get("metadata"), dict) else {}
    annotations = (meta or {}).get("annotations")
    return isinstance(annotations, dict) and annotations.get(HOLD_UPGRADE_ANNOTATION) == "true"


def _pending(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status")
    return isinstance(status, dict) and status.get("phase") == "Pending"


async def handle_unhold(request: web.Request, target: str, store: MetaStore,
                        unhold: Unhold | None) -> web.Response:
    """Serve one unhold-upgrade POST."""
    if unhold is None:
        return _text(503, "edged is not reachable from the MetaServer")
    if target not in ("pods", "nodes"):
        return _text(400, "unsupported resource for unhold-upgrade")
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _text(413, "request body too large")
    body = (await request.content.read(MAX_BODY + 1))[:MAX_BODY].decode(errors="replace")
    if target == "pods":
        namespace, sep, name = body.strip().partition("/")
        if not sep or not namespace or not name:
            return _text(400, "invalid format, expected <namespace>/<name>")
        pod, _ = await store.get_object("pods", namespace, name)
        if not isinstance(pod, dict):
            return _text(404, f'pod not found: pods "{name}" not found')
        if not _held(pod):
            return _text(400, "pod is not marked with hold-upgrade annotation")
        if not _pending(pod):
            return _text(400, "pod is not in pending phase")
        await unhold(namespace, name)
        log.info("MetaServer: unhold-upgrade of pod %s/%s", namespace, name)
        return web.Response(status=200, body=b"")
    node = body.strip()
    if not node:
        return _text(400, "node name required in body")
    found, _ = await store.get_object("nodes", "", node)
    if not isinstance(found, dict):
        return _text(404, f'node not found: nodes "{node}" not found')
    pods, _ = await store.list_objects("pods")
    released = 0
    for pod in pods:
        spec = pod.get("spec") if isinstance(pod, dict) else None
        if isinstance(spec, dict) and spec.get("nodeName") == node and _held(pod) and \
                _pending(pod):
            await unhold(namespace_of(pod), name_of(pod))
            released += 1
    log.info("MetaServer: unhold-upgrade of node %s: %d pods", node, released)
    return web.Response(status=200, body=b"")
