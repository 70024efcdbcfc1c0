"""The Modbus driver on pymodbus's asyncio clients (the connection: one client per device).

A Modbus exception response (illegal address, illegal value, device failure...) is a
:class:`~pykubeedge.mapper.driver.DeviceError` naming the code, the register and the slave;
no answer (refused, timed out, closed) raises ``ConnectionError`` and the SDK reconnects.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pykubeedge.mapper.config import ConfigError
from pykubeedge.mapper.convert import ValueTypeError
from pykubeedge.mapper.driver import DeviceError, Driver
from pykubeedge.mapper.modbus.codec import decode, encode
from pykubeedge.mapper.modbus.config import Connection, Visitor, parse_protocol, parse_visitor
from pykubeedge.mapper.model import Device, Property

EXCEPTION_CODES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                   4: "device failure", 5: "acknowledge", 6: "device busy",
                   8: "memory parity error", 10: "gateway path unavailable",
                   11: "gateway target failed to respond"}


class ModbusDriver(Driver):
    protocol: ClassVar[str] = "modbus"

    def __init__(self, device: Device) -> None:
        self.conn: Connection = parse_protocol(device.config)
        self.client: Any = None

    def visitor(self, prop: Property) -> Visitor:
        return parse_visitor(prop.visitor, model_type=prop.type)

    def _new_client(self) -> Any:
        from pymodbus import FramerType
        from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

        c = self.conn
        framer = FramerType(c.framer)
        if c.serial_port:
            try:
                return AsyncModbusSerialClient(
                    c.serial_port, framer=framer, baudrate=c.baud_rate, bytesize=c.data_bits,
                    parity=c.parity, stopbits=c.stop_bits, timeout=c.timeout_s, retries=0,
                    reconnect_delay=0)
            except RuntimeError as exc:  # pyserial missing
                raise ConfigError(f"serial port {c.serial_port}: {exc}") from None
        return AsyncModbusTcpClient(c.ip, port=c.port, framer=framer, timeout=c.timeout_s,
                                    retries=0, reconnect_delay=0)

    async def connect(self) -> None:
        await self.close()
        self.client = self._new_client()
        if not await self.client.connect():
            raise ConnectionError(f"{self.conn.describe()}: no connection")

    async def _call(self, what: str, v: Visitor, fn: Any, *args: Any, **kw: Any) -> Any:
        from pymodbus.exceptions import ModbusException

        if self.client is None or not self.client.connected:
            raise ConnectionError(f"{self.conn.describe()}: not connected")
        try:
            answer = await fn(*args, device_id=self.conn.slave_id, **kw)
        except ModbusException as exc:
            raise ConnectionError(f"{self.conn.describe()}: {exc}") from None
        if answer.isError():
            code = getattr(answer, "exception_code", 0)
            raise DeviceError(f"{what} {v.describe()} on {self.conn.describe()}: modbus "
                              f"exception {code} ({EXCEPTION_CODES.get(code, 'unknown')})")
        return answer

    async def read(self, visitor: Visitor) -> Any:
        v, c = visitor, self.client
        if v.register in ("CoilRegister", "DiscreteInputRegister"):
            fn = c.read_coils if v.register == "CoilRegister" else c.read_discrete_inputs
            bits = (await self._call("reading", v, fn, v.offset, count=v.count)).bits
            if v.count == 1:
                return bool(bits[0])
            return sum(1 << i for i, b in enumerate(bits[:v.count]) if b)
        fn = c.read_holding_registers if v.register == "HoldingRegister" \
            else c.read_input_registers
        regs = (await self._call("reading", v, fn, v.offset, count=v.count)).registers
        return decode(list(regs[:v.count]), v)

    async def write(self, visitor: Visitor, value: Any) -> None:
        v, c = visitor, self.client
        if not v.writable:
            raise ValueTypeError(f"{v.register} is read-only")
        if v.register == "CoilRegister":
            if v.count != 1:
                raise ValueTypeError("writing needs a single coil (limit 1)")
            await self._call("writing", v, c.write_coil, v.offset, bool(value))
            return
        regs = encode(value, v)
        if len(regs) == 1:
            await self._call("writing", v, c.write_register, v.offset, regs[0])
        else:
            await self._call("writing", v, c.write_registers, v.offset, regs)

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close()
