"""A Modbus TCP device for tests: pymodbus's own server (holding and input registers, coils
and discrete inputs at addresses 0..size-1), started, stopped and started again on one port.

    async with ModbusDevice() as dev:          # 127.0.0.1, a free port
        dev.port; await dev.get("h", 2, 1); await dev.set("h", 0, [7])
        await dev.stop(); await dev.start()
"""

from __future__ import annotations

import asyncio
from typing import Any

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from pykubeedge.devcluster.process import free_port

FUNC = {"c": (1, 5), "d": (2, 2), "h": (3, 6), "i": (4, 4)}  # (read code, write code)


class ModbusDevice:
    def __init__(self, port: int = 0, size: int = 200, framer: str = "socket") -> None:
        self.port = port or free_port()
        self.size = size
        self.framer = framer
        self.server: ModbusTcpServer | None = None
        self.device = SimDevice(id=0, simdata=(
            [SimData(0, count=size, values=False, datatype=DataType.BITS)],
            [SimData(0, count=size, values=False, datatype=DataType.BITS)],
            [SimData(0, count=size, values=0, datatype=DataType.REGISTERS)],
            [SimData(0, count=size, values=0, datatype=DataType.REGISTERS)]))

    async def start(self) -> None:
        from pymodbus import FramerType

        self.server = ModbusTcpServer(self.device, address=("127.0.0.1", self.port),
                                      framer=FramerType(self.framer))
        await self.server.serve_forever(background=True)
        for _ in range(100):  # bounded: until it accepts
            try:
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise RuntimeError("the modbus server did not start")

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None
            await asyncio.sleep(0.05)

    async def get(self, table: str, address: int, count: int = 1) -> list[Any]:
        assert self.server is not None
        return list(await self.server.async_getValues(1, FUNC[table][0], address, count))

    async def set(self, table: str, address: int, values: list[Any]) -> None:
        assert self.server is not None
        await self.server.async_setValues(1, FUNC[table][1], address, values)

    async def __aenter__(self) -> ModbusDevice:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
