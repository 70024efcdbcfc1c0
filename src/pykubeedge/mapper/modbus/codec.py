"""Registers ↔ values for a :class:`~.config.Visitor`: big-endian registers, optional byte
swap within each register (``isSwap``) and word swap (``isRegisterSwap``).

    >>> v = Visitor("HoldingRegister", 0, 2, "float32")
    >>> decode(encode(21.5, v), v)
    21.5
    >>> encode(-2, Visitor("HoldingRegister", 0, 1, "int16"))
    [65534]
"""

from __future__ import annotations

import math
import struct
from typing import Any

from pykubeedge.mapper.convert import ValueTypeError
from pykubeedge.mapper.modbus.config import DATA_TYPES, Visitor

_LIMITS = {"h": (-(2**15), 2**15 - 1), "H": (0, 2**16 - 1), "i": (-(2**31), 2**31 - 1),
           "I": (0, 2**32 - 1), "q": (-(2**63), 2**63 - 1), "Q": (0, 2**64 - 1)}


def _to_bytes(registers: list[int], v: Visitor) -> bytes:
    regs = list(reversed(registers)) if v.swap_words else list(registers)
    raw = b"".join(r.to_bytes(2, "big") for r in regs)
    if v.swap_bytes:
        raw = b"".join(raw[i + 1:i + 2] + raw[i:i + 1] for i in range(0, len(raw), 2))
    return raw


def _from_bytes(raw: bytes, v: Visitor) -> list[int]:
    if v.swap_bytes:
        raw = b"".join(raw[i + 1:i + 2] + raw[i:i + 1] for i in range(0, len(raw), 2))
    regs = [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]
    return list(reversed(regs)) if v.swap_words else regs


def decode(registers: list[int], v: Visitor) -> Any:
    raw = _to_bytes(registers, v)
    if v.data_type == "string":
        return raw.rstrip(b"\x00").decode(errors="replace")
    fmt = DATA_TYPES[v.data_type][0]
    return struct.unpack(f">{fmt}", raw)[0]


def encode(value: Any, v: Visitor) -> list[int]:
    if v.data_type == "string":
        raw = str(value).encode()
        if len(raw) > 2 * v.count:
            raise ValueTypeError(f"{value!r} is longer than {2 * v.count} bytes")
        return _from_bytes(raw.ljust(2 * v.count, b"\x00"), v)
    fmt = DATA_TYPES[v.data_type][0]
    if fmt in _LIMITS:
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueTypeError(f"{value!r} is not a finite number")
            value = round(value)
        lo, hi = _LIMITS[fmt]
        if not isinstance(value, int) or not lo <= value <= hi:
            raise ValueTypeError(f"{value!r} does not fit {v.data_type} ({lo} to {hi})")
    elif not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueTypeError(f"{value!r} is not a number for {v.data_type}")
    return _from_bytes(struct.pack(f">{fmt}", value), v)
