"""Values between a driver, the twin and the model: the model's ``type`` (int, float, double,
boolean, string, bytes), a visitor's ``scale`` (reported = raw * scale, written = value /
scale) and the model's ``minimum``/``maximum`` for writes.

    >>> reported(215, "float", 0.1)
    '21.5'
    >>> raw_for_write("22.5", "float", 0.1, minimum="-40", maximum="125")
    225.0
    >>> raw_for_write("abc", "int", 1.0)
    Traceback (most recent call last):
    ...
    pykubeedge.mapper.convert.ValueTypeError: 'abc' is not an int
"""

from __future__ import annotations

import math
from typing import Any

_TRUE = frozenset({"true", "1", "on", "yes"})
_FALSE = frozenset({"false", "0", "off", "no"})


class ValueTypeError(ValueError):
    """A value that does not fit its property's type or range."""


def scale_of(visitor: dict[str, Any]) -> float:
    raw = visitor.get("scale", 1)
    try:
        scale = float(raw)
    except (TypeError, ValueError):
        raise ValueTypeError(f"visitor scale {raw!r} is not a number") from None
    if scale == 0 or not math.isfinite(scale):
        raise ValueTypeError(f"visitor scale {raw!r} must be a finite, non-zero number")
    return scale


def _format(value: float) -> str:
    text = repr(round(value, 9))
    return text[:-2] if text.endswith(".0") else text


def reported(raw: Any, kind: str, scale: float = 1.0) -> str:
    """A driver's raw value as the twin's reported string."""
    if isinstance(raw, bool) or kind == "boolean":
        return "true" if bool(raw) else "false"
    if isinstance(raw, bytes):
        return raw.hex() if kind == "bytes" else raw.decode(errors="replace")
    if isinstance(raw, int | float):
        value = raw * scale if scale != 1 else raw
        if kind == "int":
            return str(round(value))
        return _format(float(value)) if isinstance(value, float) else str(value)
    return str(raw)


def parse(value: str, kind: str) -> Any:
    """A twin string as a Python value of the model type."""
    text = value.strip()
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            try:
                f = float(text)
            except ValueError:
                raise ValueTypeError(f"{value!r} is not an int") from None
            if not f.is_integer():
                raise ValueTypeError(f"{value!r} is not an int") from None
            return int(f)
    if kind in ("float", "double"):
        try:
            f = float(text)
        except ValueError:
            raise ValueTypeError(f"{value!r} is not a {kind}") from None
        if not math.isfinite(f):
            raise ValueTypeError(f"{value!r} is not a finite {kind}")
        return f
    if kind == "boolean":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueTypeError(f"{value!r} is not a boolean (true or false)")
    return value


def raw_for_write(value: str, kind: str, scale: float = 1.0, *, minimum: str = "",
                  maximum: str = "") -> Any:
    """A desired twin string as the raw value a driver writes (range-checked, unscaled)."""
    parsed = parse(value, kind)
    if isinstance(parsed, int | float) and not isinstance(parsed, bool):
        low, high = _bound(minimum), _bound(maximum)
        if low is not None and parsed < low:
            raise ValueTypeError(f"{value} is below the minimum {minimum}")
        if high is not None and parsed > high:
            raise ValueTypeError(f"{value} is above the maximum {maximum}")
        if scale != 1:
            return parsed / scale
    return parsed


def _bound(text: str) -> float | None:
    try:
        return float(text) if text.strip() else None
    except ValueError:
        return None
