"""The Modbus config schema: a Device's ``protocol.configData`` and each property's
``visitors.configData`` (upstream mappers-go's keys; ``dataType`` and ``framer`` are ours).

Protocol: TCP ``ip``, ``port`` (502); serial ``serialPort``, ``baudRate`` (19200), ``dataBits``
(8), ``parity`` (none|even|odd or N|E|O), ``stopBits`` (1); both ``slaveID`` (1), ``timeout``
(ms, 1000), ``framer`` (socket for TCP, rtu for serial; ``rtu`` over TCP is allowed).

Visitor: ``register`` (CoilRegister, DiscreteInputRegister, HoldingRegister, InputRegister),
``offset`` (0-65535), ``limit`` (registers or bits; default from the data type), ``scale``,
``isSwap`` (bytes within each register), ``isRegisterSwap`` (word order), ``dataType``
(int16, uint16, int32, uint32, int64, uint64, float32, float64, string, boolean; default from
the model's type and ``limit``).

    conn = parse_protocol({"ip": "127.0.0.1", "port": 5020})
    v = parse_visitor({"register": "HoldingRegister", "offset": 2}, model_type="int")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pykubeedge.mapper.config import ConfigError

REGISTERS: Final = ("CoilRegister", "DiscreteInputRegister", "HoldingRegister",
                    "InputRegister")
BIT_REGISTERS: Final = ("CoilRegister", "DiscreteInputRegister")
# data type → (struct format, registers)
DATA_TYPES: Final[dict[str, tuple[str, int]]] = {
    "int16": ("h", 1), "uint16": ("H", 1), "int32": ("i", 2), "uint32": ("I", 2),
    "int64": ("q", 4), "uint64": ("Q", 4), "float32": ("f", 2), "float64": ("d", 4),
    "string": ("s", 0), "boolean": ("?", 0),
}
MAX_READ_REGISTERS: Final = 125
MAX_READ_BITS: Final = 2000
_PARITY: Final = {"none": "N", "n": "N", "even": "E", "e": "E", "odd": "O", "o": "O"}


@dataclass(frozen=True)
class Connection:
    ip: str = ""
    port: int = 502
    serial_port: str = ""
    baud_rate: int = 19200
    data_bits: int = 8
    parity: str = "N"
    stop_bits: int = 1
    slave_id: int = 1
    timeout_s: float = 1.0
    framer: str = "socket"

    def describe(self) -> str:
        where = self.serial_port or f"{self.ip}:{self.port}"
        return f"modbus {self.framer} {where} slave {self.slave_id}"


@dataclass(frozen=True)
class Visitor:
    register: str
    offset: int
    count: int  # registers (or bits) read
    data_type: str
    swap_bytes: bool = False
    swap_words: bool = False

    @property
    def writable(self) -> bool:
        return self.register in ("CoilRegister", "HoldingRegister")

    def describe(self) -> str:
        return f"{self.register} {self.offset}+{self.count} ({self.data_type})"


def _int(data: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    raw = data.get(key, default)
    if isinstance(raw, bool) or raw is None:
        raise ConfigError(f"{key} must be an integer, got {raw!r}")
    try:
        value = int(raw)
        if isinstance(raw, float) and not raw.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{key} {value} is out of range {lo}-{hi}")
    return value


def _bool(data: dict[str, Any], key: str) -> bool:
    raw = data.get(key, False)
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise ConfigError(f"{key} must be true or false, got {raw!r}")


def parse_protocol(data: dict[str, Any]) -> Connection:
    serial = str(data.get("serialPort") or "")
    ip = str(data.get("ip") or "")
    if not serial and not ip:
        raise ConfigError("the modbus protocol config needs ip (TCP) or serialPort (RTU)")
    framer = str(data.get("framer") or ("rtu" if serial else "socket")).lower()
    if framer not in ("socket", "rtu", "ascii"):
        raise ConfigError(f"framer {framer!r} is not one of socket, rtu, ascii")
    parity = _PARITY.get(str(data.get("parity", "N")).lower())
    if parity is None:
        raise ConfigError(f"parity {data.get('parity')!r} is not one of none, even, odd")
    return Connection(
        ip=ip, port=_int(data, "port", 502, 1, 65535), serial_port=serial,
        baud_rate=_int(data, "baudRate", 19200, 50, 4_000_000),
        data_bits=_int(data, "dataBits", 8, 5, 8), parity=parity,
        stop_bits=_int(data, "stopBits", 1, 1, 2),
        slave_id=_int(data, "slaveID", 1, 0, 247),
        timeout_s=_int(data, "timeout", 1000, 1, 600_000) / 1000, framer=framer)


def _default_type(register: str, model_type: str, limit: int) -> str:
    if register in BIT_REGISTERS:
        return "boolean"
    if model_type == "string":
        return "string"
    if model_type in ("float", "double"):
        return {2: "float32", 4: "float64"}.get(limit, "int16" if limit == 1 else "float32")
    return {1: "int16", 2: "int32", 4: "int64"}.get(limit, "int16")


def parse_visitor(data: dict[str, Any], *, model_type: str = "int") -> Visitor:
    register = data.get("register")
    if register not in REGISTERS:
        raise ConfigError(f"register {register!r} is not one of {', '.join(REGISTERS)}")
    offset = _int(data, "offset", -1, 0, 65535) if "offset" in data else None
    if offset is None:
        raise ConfigError("offset (the register address, 0-65535) is missing")
    limit = _int(data, "limit", 1, 1, MAX_READ_BITS) if "limit" in data else 0
    data_type = str(data.get("dataType") or _default_type(register, model_type, limit or 1))
    data_type = data_type.lower()
    if data_type not in DATA_TYPES:
        raise ConfigError(f"dataType {data_type!r} is not one of {', '.join(DATA_TYPES)}")
    if register in BIT_REGISTERS:
        if data_type != "boolean":
            raise ConfigError(f"{register} holds bits: dataType must be boolean, not "
                              f"{data_type}")
        count = limit or 1
    else:
        if data_type == "boolean":
            raise ConfigError(f"dataType boolean needs a CoilRegister or "
                              f"DiscreteInputRegister, not {register}")
        size = DATA_TYPES[data_type][1]
        if data_type == "string":
            if not limit:
                raise ConfigError("dataType string needs limit (registers, 2 bytes each)")
            count = limit
        else:
            if limit and limit != size:
                raise ConfigError(f"dataType {data_type} takes {size} register(s), limit is "
                                  f"{limit}")
            count = size
        if count > MAX_READ_REGISTERS:
            raise ConfigError(f"limit {count} exceeds {MAX_READ_REGISTERS} registers")
    if offset + count > 65536:
        raise ConfigError(f"offset {offset} + limit {count} is beyond register 65535")
    return Visitor(register, offset, count, data_type, _bool(data, "isSwap"),
                   _bool(data, "isRegisterSwap"))
