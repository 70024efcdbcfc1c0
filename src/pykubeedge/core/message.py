"""The beehive message: header, route and content, as KubeEdge puts it on the wire.

The Python object is flat (``msg.resource``, not ``msg.route.resource``); :meth:`Message.to_dict`
and :meth:`Message.from_dict` give and take exactly the contract's nested JSON shape::

    msg = new_message(source="edgecontroller", group="resource",
                      resource="node/edge-1/default/pod/nginx", operation="insert",
                      content={"metadata": {"name": "nginx"}}, resourceversion="42")
    ack = response(msg, "OK")   # ack.parent_msg_id == msg.msg_id
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from pykubeedge.core.constants import Operation
from pykubeedge.core.errors import DecodeError

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

# Go's field order, so our JSON reads like upstream's byte for byte.
_ROUTE_KEYS = ("source", "destination", "group", "operation", "resource")


def new_id() -> str:
    """A fresh message id: a UUIDv4 string, as ``uuid.New().String()`` in Go.

    >>> len(new_id())
    36
    """
    return str(uuid.uuid4())


def now_ms() -> int:
    """Milliseconds since the Unix epoch: the unit of ``header.timestamp``."""
    return time.time_ns() // 1_000_000


@dataclass(slots=True, kw_only=True)
class Message:
    """A beehive message. Header and route fields are flat attributes; ``content`` is any JSON.

    Senders hand a message over to the receiver: treat ``content`` as read-only once sent (a
    group fan-out shares it between receivers, as upstream does).

    >>> m = Message(source="twin", group="twin", operation="update", resource="membership")
    >>> m.to_dict()["route"]
    {'source': 'twin', 'group': 'twin', 'operation': 'update', 'resource': 'membership'}
    """

    msg_id: str = field(default_factory=new_id)
    parent_msg_id: str = ""
    timestamp: int = field(default_factory=now_ms)
    resourceversion: str = ""
    sync: bool = False
    type: str = ""
    source: str = ""
    destination: str = ""
    group: str = ""
    operation: str = ""
    resource: str = ""
    content: Any = None

    def to_dict(self) -> dict[str, Any]:
        """The wire shape, omitting empty fields exactly where Go's ``omitempty`` does.

        ``msg_id``, ``timestamp``, ``route`` and ``content`` are always present.

        >>> Message(msg_id="a", timestamp=1, content="ping").to_dict()
        {'header': {'msg_id': 'a', 'timestamp': 1}, 'route': {}, 'content': 'ping'}
        """
        header: dict[str, Any] = {"msg_id": self.msg_id}
        if self.parent_msg_id:
            header["parent_msg_id"] = self.parent_msg_id
        header["timestamp"] = self.timestamp
        if self.resourceversion:
            header["resourceversion"] = self.resourceversion
        if self.sync:
            header["sync"] = True
        if self.type:
            header["type"] = self.type
        route: dict[str, str] = {}
        for key in _ROUTE_KEYS:
            value = getattr(self, key)
            if value:
                route[key] = value
        return {"header": header, "route": route, "content": self.content}

    @classmethod
    def from_dict(cls, data: object) -> Message:
        """Build a message from the wire shape, strictly.

        Raises :class:`DecodeError` unless ``data`` is an object with a ``header`` object (with a
        string ``msg_id`` and an int64 ``timestamp``) and a ``route`` object, and every other
        known field has its Go type. ``null`` counts as absent for optional fields (Go decodes
        it to the zero value); unknown keys are ignored; a missing ``content`` is ``None``.

        >>> Message.from_dict({"header": {"msg_id": "a", "timestamp": 1}, "route": {}}).msg_id
        'a'
        """
        if not isinstance(data, dict):
            raise DecodeError(f"message must be a JSON object, got {_kind(data)}")
        header = _required_object(data, "header")
        route = _required_object(data, "route")

        msg_id = header.get("msg_id")
        if not isinstance(msg_id, str):
            raise DecodeError(f"header.msg_id must be a string, got {_kind(msg_id)}")
        timestamp = header.get("timestamp")
        if (
            not isinstance(timestamp, int)
            or isinstance(timestamp, bool)
            or not _INT64_MIN <= timestamp <= _INT64_MAX
        ):
            raise DecodeError(f"header.timestamp must be an int64, got {_kind(timestamp)}")
        sync = header.get("sync")
        if sync is None:
            sync = False
        elif not isinstance(sync, bool):
            raise DecodeError(f"header.sync must be a boolean, got {_kind(sync)}")

        return cls(
            msg_id=msg_id,
            parent_msg_id=_optional_str(header, "header", "parent_msg_id"),
            timestamp=timestamp,
            resourceversion=_optional_str(header, "header", "resourceversion"),
            sync=sync,
            type=_optional_str(header, "header", "type"),
            source=_optional_str(route, "route", "source"),
            destination=_optional_str(route, "route", "destination"),
            group=_optional_str(route, "route", "group"),
            operation=_optional_str(route, "route", "operation"),
            resource=_optional_str(route, "route", "resource"),
            content=data.get("content"),
        )

    def clone(self) -> Message:
        """A copy with a new ``msg_id``; every other field (content shared) is kept.

        Upstream's ``Clone`` also drops resourceversion, type, destination and sync; we keep
        them, since losing the resourceversion would break the ACK queue's supersede rule.

        >>> m = new_message(source="a", group="b", resource="r", operation="insert")
        >>> c = m.clone()
        >>> (c.msg_id != m.msg_id, c.resource)
        (True, 'r')
        """
        return dataclasses.replace(self, msg_id=new_id())

    def __str__(self) -> str:
        # For logs: the routing facts, never the (possibly huge or secret) content.
        return (
            f"Message(id={self.msg_id} parent={self.parent_msg_id} source={self.source} "
            f"group={self.group} operation={self.operation} resource={self.resource} "
            f"rv={self.resourceversion})"
        )


def new_message(
    *,
    source: str,
    group: str,
    resource: str,
    operation: str,
    content: Any = None,
    parent_msg_id: str = "",
    resourceversion: str = "",
    destination: str = "",
    type: str = "",
) -> Message:
    """A new message with a fresh id and the current time (``model.NewMessage().BuildRouter()``).

    >>> msg = new_message(source="websocket", group="resource", resource="node",
    ...                   operation="keepalive", content="ping")
    >>> msg.to_dict()["route"]["operation"]
    'keepalive'
    """
    return Message(
        parent_msg_id=parent_msg_id,
        resourceversion=resourceversion,
        type=type,
        source=source,
        destination=destination,
        group=group,
        operation=operation,
        resource=resource,
        content=content,
    )


def response(req: Message, content: Any) -> Message:
    """The response to ``req`` (upstream ``NewRespByMessage``); also the edge's ACK format.

    New id, ``parent_msg_id`` = ``req.msg_id``, source and group copied from the request, same
    resource and type, operation ``response``.

    >>> req = new_message(source="edgecontroller", group="resource",
    ...                   resource="default/pod/nginx", operation="insert")
    >>> ack = response(req, "OK")
    >>> (ack.parent_msg_id == req.msg_id, ack.source, ack.operation, ack.content)
    (True, 'edgecontroller', 'response', 'OK')
    """
    return Message(
        parent_msg_id=req.msg_id,
        type=req.type,
        source=req.source,
        group=req.group,
        operation=Operation.RESPONSE,
        resource=req.resource,
        content=content,
    )


def error_message(
    req: Message,
    err: BaseException | str,
    *,
    source: str | None = None,
    group: str | None = None,
) -> Message:
    """An ``error`` reply to ``req``: content is the error text.

    ``parent_msg_id`` is ``req.msg_id``, so a ``send_sync`` waiter receives it; source and group
    mirror the request unless given (upstream callers always ``SetRoute`` afterwards).

    >>> req = new_message(source="edged", group="meta", resource="default/pod/x",
    ...                   operation="query")
    >>> err = error_message(req, KeyError("x"), source="metamanager")
    >>> (err.parent_msg_id == req.msg_id, err.operation, err.source, err.group, err.content)
    (True, 'error', 'metamanager', 'meta', "'x'")
    """
    return Message(
        parent_msg_id=req.msg_id,
        type=req.type,
        source=req.source if source is None else source,
        group=req.group if group is None else group,
        operation=Operation.ERROR,
        resource=req.resource,
        content=str(err),
    )


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return type(value).__name__


def _required_object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        if key not in data:
            raise DecodeError(f"message has no {key!r} object")
        raise DecodeError(f"{key} must be a JSON object, got {_kind(value)}")
    return value


def _optional_str(obj: dict[str, Any], where: str, key: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DecodeError(f"{where}.{key} must be a string, got {_kind(value)}")
    return value
