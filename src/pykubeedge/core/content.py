"""What message contents look like: "a JSON object", patches, and the reply shape the cloud
answers with (upstream's ``ObjectResp``), encoded exactly as upstream's Go edge decodes it.

``ObjectResp`` is ``{"Object": <object>, "Err": <error>}``. On success ``Err`` is JSON
``null``; on failure it is an ``apierrors.StatusError`` as Go's ``encoding/json`` writes it:
``{"ErrStatus": <metav1.Status>}``, never a string (upstream's ``client/lease.go`` unmarshals
``Err`` into a ``StatusError`` and compares it with the zero value)::

    object_reply(node)                           # {"Object": node, "Err": None}
    error_reply(status("NotFound", 'nodes "edge-2" not found', name="edge-2", kind="nodes"))
    parse_object_reply(content)                  # ObjectReply(object=..., error=..., reason=...)

Parsing accepts the older shapes too (``Err`` a string, ``""`` for success; a bare object;
``"OK"``), so an edge still understands a cloud that writes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from pykubeedge.core.errors import DecodeError, KubeError, NotAllowed, PyKubeEdgeError

OBJECT: Final = "Object"
ERR: Final = "Err"
ERR_STATUS: Final = "ErrStatus"

STATUS_CODES: Final = {
    "BadRequest": 400,
    "Unauthorized": 401,
    "Forbidden": 403,
    "NotFound": 404,
    "MethodNotAllowed": 405,
    "Conflict": 409,
    "AlreadyExists": 409,
    "Gone": 410,
    "Invalid": 422,
    "TooManyRequests": 429,
    "InternalError": 500,
    "ServiceUnavailable": 503,
    "Timeout": 504,
}
"""``metav1.StatusReason`` -> HTTP code, as ``apierrors`` pairs them."""


# -- "content must be a JSON object" ---------------------------------------------------------


def json_object(content: Any, what: str = "content") -> dict[str, Any]:
    """``content`` as a JSON object: a dict, or a string (or bytes) holding one; else
    :class:`DecodeError` naming ``what``.

    >>> json_object('{"metadata": {"name": "x"}}')
    {'metadata': {'name': 'x'}}
    >>> json_object([1])
    Traceback (most recent call last):
    ...
    pykubeedge.core.errors.DecodeError: content must be a JSON object, got list
    """
    if isinstance(content, dict):
        return content
    if isinstance(content, str | bytes):
        try:
            parsed = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"{what} is not JSON: {exc}") from None
        if isinstance(parsed, dict):
            return parsed
        content = parsed
    raise DecodeError(f"{what} must be a JSON object, got {type(content).__name__}")


def patch_content(content: Any) -> tuple[str, dict[str, Any]]:
    """A patch as (JSON text, parsed object): Edged sends the text, a dict is accepted too.

    >>> patch_content({"status": {}})
    ('{"status":{}}', {'status': {}})
    """
    obj = json_object(content, "a patch")
    text = content if isinstance(content, str) else orjson.dumps(obj).decode()
    return text, obj


def maybe_json(item: Any) -> Any:
    """A string holding JSON, parsed; anything else (or text that is not JSON) as it is.

    >>> maybe_json('{"a": 1}'), maybe_json("OK"), maybe_json(3)
    ({'a': 1}, 'OK', 3)
    """
    if isinstance(item, str | bytes):
        try:
            return orjson.loads(item)
        except orjson.JSONDecodeError:
            return item
    return item


def list_items(content: Any) -> list[Any]:
    """A query reply's content as a list, one element per object: a list (of objects or, as
    upstream writes them, of JSON strings), a ``{"items": [...]}`` list object, an
    ``ObjectResp``, or one object.

    >>> list_items(['{"kind": "Pod"}', {"kind": "Pod"}])
    [{'kind': 'Pod'}, {'kind': 'Pod'}]
    >>> list_items({"Object": {"kind": "Node"}, "Err": None})
    [{'kind': 'Node'}]
    >>> list_items(None)
    []
    """
    content = maybe_json(content)
    if isinstance(content, dict) and isinstance(content.get("items"), list):
        content = content["items"]
    if isinstance(content, list):
        return [maybe_json(item) for item in content]
    if content in (None, ""):
        return []
    if is_object_reply(content):
        return [content[OBJECT]]
    return [content]


# -- the reply shape -----------------------------------------------------------------------


def status(reason: str, message: str, *, code: int | None = None, name: str = "",
           kind: str = "") -> dict[str, Any]:
    """A failed ``metav1.Status``, with Go's field order (``metadata`` is always written).

    >>> status("NotFound", 'pods "web" not found', name="web", kind="pods")["code"]
    404
    """
    result: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Failure", "message": message, "reason": reason}
    details = {k: v for k, v in (("name", name), ("kind", kind)) if v}
    if details:
        result["details"] = details
    result["code"] = code if code is not None else STATUS_CODES.get(reason, 500)
    return result


def status_of(exc: BaseException, *, name: str = "", kind: str = "") -> dict[str, Any]:
    """The ``metav1.Status`` for one of our errors: the API server's own Status when it sent
    one, ``Forbidden`` for a refused edge, ``BadRequest`` for bad input, else
    ``InternalError``.

    >>> status_of(NotAllowed("node edge-2 may not patch node edge-1"))["reason"]
    'Forbidden'
    """
    if isinstance(exc, KubeError):
        body = exc.body
        if body.get("kind") == "Status" and isinstance(body.get("reason"), str):
            return {"kind": "Status", "apiVersion": "v1", "metadata": {},
                    **{k: v for k, v in body.items() if k not in ("kind", "apiVersion")}}
        reason = exc.reason or _reason_of_code(exc.status)
        return status(reason, str(exc), code=exc.status or None, name=name, kind=kind)
    if isinstance(exc, NotAllowed):
        return status("Forbidden", str(exc), name=name, kind=kind)
    if isinstance(exc, DecodeError):
        return status("BadRequest", str(exc), name=name, kind=kind)
    text = str(exc) if isinstance(exc, PyKubeEdgeError) else f"{type(exc).__name__}: {exc}"
    return status("InternalError", text, name=name, kind=kind)


_REASONS: Final = {code: reason for reason, code in reversed(STATUS_CODES.items())}


def _reason_of_code(code: int) -> str:
    if code in _REASONS:
        return _REASONS[code]
    return "InternalError" if code >= 500 or code == 0 else "BadRequest"


def object_reply(obj: Any) -> dict[str, Any]:
    """A successful ``ObjectResp``: ``Err`` is ``null``.

    >>> object_reply({"kind": "Lease"})
    {'Object': {'kind': 'Lease'}, 'Err': None}
    """
    return {OBJECT: obj, ERR: None}


def error_reply(failure: Mapping[str, Any]) -> dict[str, Any]:
    """A failed ``ObjectResp`` carrying ``failure`` (a ``metav1.Status``) as a StatusError.

    >>> failed = error_reply(status("Conflict", "the object has been modified"))
    >>> failed["Err"]["ErrStatus"]["code"]
    409
    """
    return {OBJECT: None, ERR: {ERR_STATUS: dict(failure)}}


def is_object_reply(content: Any) -> bool:
    """Whether ``content`` is an ``ObjectResp`` (both keys present, as upstream's
    ``isObjectResp`` checks).

    >>> is_object_reply({"Object": None, "Err": None}), is_object_reply({"kind": "Pod"})
    (True, False)
    """
    return isinstance(content, Mapping) and OBJECT in content and ERR in content


@dataclass(frozen=True, slots=True)
class ObjectReply:
    """A reply understood: the object it carries (if any) and, on failure, the error's
    message and reason (``error`` is "" on success)."""

    object: dict[str, Any] | None
    error: str = ""
    reason: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.error or self.reason)


def parse_object_reply(content: Any) -> ObjectReply:
    """Understand a reply's content: an ``ObjectResp`` in the upstream shape (``Err`` null or
    a StatusError) or ours before it (``Err`` a string, "" for success), a bare object, or a
    plain "OK".

    >>> parse_object_reply({"Object": {"kind": "Node"}, "Err": None})
    ObjectReply(object={'kind': 'Node'}, error='', reason='')
    >>> parse_object_reply({"Object": None, "Err": {"ErrStatus": {
    ...     "message": 'nodes "e" already exists', "reason": "AlreadyExists"}}})
    ObjectReply(object=None, error='nodes "e" already exists', reason='AlreadyExists')
    >>> parse_object_reply({"Object": {}, "Err": "not connected"}).error
    'not connected'
    >>> parse_object_reply("OK")
    ObjectReply(object=None, error='', reason='')
    """
    content = maybe_json(content) if isinstance(content, str) and content[:1] == "{" else content
    if is_object_reply(content):
        obj = content[OBJECT]
        error, reason = _error_text(content[ERR])
        return ObjectReply(obj if isinstance(obj, dict) and obj else None, error, reason)
    if isinstance(content, dict):
        return ObjectReply(content)
    return ObjectReply(None)


def reply_object(content: Any) -> dict[str, Any] | None:
    """The object a cloud reply carries (``ObjectResp.Object``, or the object itself when it
    has metadata), or None.

    >>> reply_object({"Object": {"metadata": {"name": "x"}}, "Err": None})
    {'metadata': {'name': 'x'}}
    """
    if is_object_reply(content):
        inner = content[OBJECT]
        return inner if isinstance(inner, dict) else None
    if isinstance(content, dict) and isinstance(content.get("metadata"), dict):
        return content
    return None


def _error_text(err: Any) -> tuple[str, str]:
    """(message, reason) of an ``Err`` value: null, "", a string, or a StatusError."""
    if err is None or err == "":
        return "", ""
    if isinstance(err, str):
        return err, ""
    if isinstance(err, Mapping):
        failure = err.get(ERR_STATUS, err)
        if isinstance(failure, Mapping):
            message = failure.get("message")
            reason = failure.get("reason")
            reason = reason if isinstance(reason, str) else ""
            if isinstance(message, str) and message:
                return message, reason
            if reason:
                return reason, reason
            if not any(failure.get(k) for k in ("status", "code", "details")):
                return "", ""  # Go's zero StatusError ({"metadata": {}}): no error
        return str(dict(err)), ""
    return str(err), ""
