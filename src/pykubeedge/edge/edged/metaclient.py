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

from pykubeedge.beehive import BeehiveContext, BeehiveError
from pykubeedge.core.constants import EdgeGroup, EdgeModule, Operation
from pykubeedge.core.content import list_items as content_items
from pykubeedge.core.content import parse_object_reply
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
            raise MetaRequestError(f"{operation} {resource}: {reply.content}")
        return reply.content

    async def send(self, operation: str, resource: str, content: Any = None) -> None:
        """Send without waiting for an answer (events: upstream uses ``Send`` too).

        >>> await meta.send("insert", "default/event/web.17a", event)    # doctest: +SKIP
        """
        msg = new_message(source=EdgeModule.EDGED, group=EdgeGroup.META, resource=resource,
                          operation=operation, content=content)
        try:
            await self._ctx.send(EdgeModule.METAMANAGER, msg)
        except BeehiveError as exc:
            raise MetaRequestError(f"{operation} {resource}: {exc}") from None


def object_resp(content: Any) -> tuple[dict[str, Any] | None, str]:
    """A reply as ``(object, error text)`` (see :func:`core.content.parse_object_reply`).

    >>> object_resp({"Object": {"kind": "Node"}, "Err": None})
    ({'kind': 'Node'}, '')
    >>> object_resp({"Object": None, "Err": {"ErrStatus": {"message": "already exists"}}})
    (None, 'already exists')
    >>> object_resp("OK")
    (None, '')
    """
    reply = parse_object_reply(content)
    return reply.object, reply.error


def list_items(content: Any) -> list[dict[str, Any]]:
    """The objects of a list reply (see :func:`core.content.list_items`); anything that is
    not an object is logged and skipped.

    >>> list_items(['{"kind": "Pod"}', {"kind": "Pod"}, 7])
    [{'kind': 'Pod'}, {'kind': 'Pod'}]
    """
    items: list[dict[str, Any]] = []
    for item in content_items(content):
        if isinstance(item, dict):
            items.append(item)
        else:
            log.warning("skipped a list item of type %s", type(item).__name__)
    return items
