"""Edged's side of the Edged <-> MetaManager conversation (upstream ``metamanager/client``).

Every request is a ``send_sync`` to module ``metamanager`` with source ``edged`` and group
``meta`` (``docs/edge-messages.md``); an ``error`` reply, a timeout or a hive failure becomes a
:class:`MetaRequestError`::

    meta = MetaClient(ctx, timeout=60)
    node = await meta.request("insert", "null/node/edge-1", node_object)
    obj, err = object_resp(node)
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from pykubeedge.beehive import BeehiveContext, BeehiveError
from pykubeedge.core.constants import EdgeGroup, EdgeModule, Operation
from pykubeedge.core.errors import PyKubeEdgeError
from pykubeedge.core.message import new_message

log = logging.getLogger(__name__)


class MetaRequestError(PyKubeEdgeError):
    """MetaManager answered ``error`` (e.g. ``not connected``), or did not answer in time."""


class MetaClient:
    """Sends Edged's requests to MetaManager and unwraps the replies."""

    def __init__(self, ctx: BeehiveContext, *, timeout: float) -> None:
        self._ctx = ctx
        self._timeout = timeout

    async def request(self, operation: str, resource: str, content: Any = None) -> Any:
        """Send one request and return the ``response`` content.

        >>> pods = await meta.request("query", "null/pod")    # doctest: +SKIP
        """
        msg = new_message(
            source=EdgeModule.EDGED,
            group=EdgeGroup.META,
            resource=resource,
            operation=operation,
            content=content,
        )
        try:
            reply = await self._ctx.send_sync(EdgeModule.METAMANAGER, msg, self._timeout)
        except TimeoutError:
            raise MetaRequestError(
                f"{operation} {resource}: no reply within {self._timeout:g} s"
            ) from None
        except BeehiveError as exc:
            raise MetaRequestError(f"{operation} {resource}: {exc}") from None
        if reply.operation == Operation.ERROR:
            raise MetaRequestError(f"{operation} {resource}: {_text(reply.content)}")
        return reply.content


def object_resp(content: Any) -> tuple[dict[str, Any] | None, str]:
    """Split a reply into ``(object, error text)``.

    Understands ``{"Object": ..., "Err": ...}`` (upstream ``ObjectResp``, ``Err`` a string or a
    Go ``StatusError``), a bare object, and ``"OK"``.

    >>> object_resp({"Object": {"kind": "Node"}, "Err": ""})
    ({'kind': 'Node'}, '')
    >>> object_resp({"Object": None, "Err": {"ErrStatus": {"message": "already exists"}}})
    (None, 'already exists')
    >>> object_resp("OK")
    (None, '')
    """
    if isinstance(content, dict) and ("Object" in content or "Err" in content):
        obj = content.get("Object")
        return (obj if isinstance(obj, dict) and obj else None), _text(content.get("Err"))
    if isinstance(content, dict):
        return content, ""
    return None, ""


def list_items(content: Any) -> list[dict[str, Any]]:
    """The objects of a list reply: a list of objects or of JSON strings (upstream's form).

    Malformed items are logged and skipped.

    >>> list_items(['{"kind": "Pod"}', {"kind": "Pod"}, 7])
    [{'kind': 'Pod'}, {'kind': 'Pod'}]
    """
    if isinstance(content, dict) and isinstance(content.get("items"), list):
        content = content["items"]
    if not isinstance(content, list):
        if content not in (None, ""):
            log.warning("expected a list reply, got %s", type(content).__name__)
        return []
    items: list[dict[str, Any]] = []
    for item in content:
        if isinstance(item, str | bytes):
            try:
                item = orjson.loads(item)
            except orjson.JSONDecodeError:
                log.warning("skipped a list item that is not JSON")
                continue
        if isinstance(item, dict):
            items.append(item)
        else:
            log.warning("skipped a list item of type %s", type(item).__name__)
    return items


def _text(err: Any) -> str:
    if err is None:
        return ""
    if isinstance(err, str):
        return err
    if isinstance(err, dict):
        status = err.get("ErrStatus", err)
        if isinstance(status, dict):
            for key in ("message", "reason"):
                value = status.get(key)
                if isinstance(value, str) and value:
                    return value
        return str(err) if err else ""
    return str(err)
