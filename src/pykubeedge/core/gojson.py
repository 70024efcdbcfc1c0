"""Decoding JSON the way Go's ``encoding/json`` decodes into a struct, for payloads whose
upstream readers are Go structs (twin requests, membership, device state).

Keys match fields case-insensitively (a later duplicate wins), ``null`` is the zero value, and
a value of the wrong JSON type is an error (Go's ``UnmarshalTypeError``)::

    f = fields_ci({"State": "ok"}, ("state", "event_id"))    # {"state": "ok"}
    as_str(f.get("event_id"))                                  # ""
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class GoTypeError(ValueError):
    """A JSON value of the wrong type for its Go field."""


def fields_ci(obj: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The values of ``names`` in ``obj``, keys matched case-insensitively; null is absent.

    >>> fields_ci({"State": "ok", "x": 1}, ("state",))
    {'state': 'ok'}
    """
    wanted = {n.lower(): n for n in names}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = wanted.get(key.lower())
        if name is not None:
            if value is None:
                out.pop(name, None)
            else:
                out[name] = value
    return out


def as_str(value: Any) -> str:
    """A Go ``string`` field: null is ""."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise GoTypeError(f"expected a string, got {type(value).__name__}")
    return value


def as_int64(value: Any) -> int:
    """A Go ``int64`` field: an integral JSON number in range (1.0 and 1e3 are refused)."""
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or not (
            _INT64_MIN <= value <= _INT64_MAX):
        raise GoTypeError(f"expected an int64, got {value!r:.40}")
    return value


def as_bool(value: Any) -> bool | None:
    """A Go ``*bool`` field: null is None."""
    if value is None:
        return None
    if not isinstance(value, bool):
        raise GoTypeError(f"expected a boolean, got {type(value).__name__}")
    return value


def as_object(value: Any) -> dict[str, Any]:
    """A Go struct or map field (null is refused: callers test for it first)."""
    if not isinstance(value, dict):
        raise GoTypeError(f"expected an object, got {type(value).__name__}")
    return value


def as_list(value: Any) -> list[Any]:
    """A Go slice field: null is empty."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise GoTypeError(f"expected an array, got {type(value).__name__}")
    return value
