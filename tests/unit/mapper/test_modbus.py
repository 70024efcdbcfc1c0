"""The modbus mapper's config schema, codec and driver, against pymodbus's own server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pykubeedge.mapper.config import ConfigError
from pykubeedge.mapper.convert import ValueTypeError
from pykubeedge.mapper.driver import DeviceError
from pykubeedge.mapper.modbus import ModbusDriver
from pykubeedge.mapper.modbus.codec import decode, encode
from pykubeedge.mapper.modbus.config import Visitor, parse_protocol, parse_visitor
from pykubeedge.mapper.model import Device, Property
from tests.modbusdev import ModbusDevice


def test_protocol_config() -> None:
    c = parse_protocol({"ip": "127.0.0.1", "port": 5020, "slaveID": 3})
    assert (c.ip, c.port, c.slave_id, c.framer) == ("127.0.0.1", 5020, 3, "socket")
    s = parse_protocol({"serialPort": "/dev/ttyS0", "parity": "even", "baudRate": 9600})
    assert (s.framer, s.parity, s.baud_rate) == ("rtu", "E", 9600)


@pytest.mark.parametrize(("data", "error"), [
    ({}, r"needs ip \(TCP\) or serialPort"),
    ({"ip": "h", "port": 70000}, "port 70000 is out of range"),
    ({"ip": "h", "port": "x"}, "port must be an integer"),
    ({"ip": "h", "parity": "maybe"}, "parity 'maybe'"),
    ({"ip": "h", "framer": "tcp"}, "framer 'tcp'"),
])
def test_bad_protocol_config(data: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_protocol(data)


def test_visitor_defaults() -> None:
    assert parse_visitor({"register": "HoldingRegister", "offset": 2}) == Visitor(
        "HoldingRegister", 2, 1, "int16")
    assert parse_visitor({"register": "InputRegister", "offset": 0, "limit": 2},
                         model_type="float").data_type == "float32"
    assert parse_visitor({"register": "CoilRegister", "offset": 1}).data_type == "boolean"
    v = parse_visitor({"register": "HoldingRegister", "offset": 0, "dataType": "uint32",
                       "isSwap": True, "isRegisterSwap": "true"})
    assert (v.count, v.swap_bytes, v.swap_words) == (2, True, True)


@pytest.mark.parametrize(("data", "error"), [
    ({"register": "Holding", "offset": 1}, "register 'Holding' is not one of"),
    ({"register": "HoldingRegister"}, "offset .* is missing"),
    ({"register": "HoldingRegister", "offset": 70000}, "offset 70000 is out of range"),
    ({"register": "HoldingRegister", "offset": 65535, "dataType": "int32"},
     "beyond register 65535"),
    ({"register": "HoldingRegister", "offset": 0, "dataType": "int32", "limit": 1},
     "int32 takes 2 register"),
    ({"register": "HoldingRegister", "offset": 0, "dataType": "complex"}, "dataType 'complex'"),
    ({"register": "CoilRegister", "offset": 0, "dataType": "int16"}, "holds bits"),
    ({"register": "HoldingRegister", "offset": 0, "isSwap": "yes"}, "isSwap must be"),
    ({"register": "HoldingRegister", "offset": 0, "dataType": "string"}, "needs limit"),
])
def test_bad_visitor(data: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_visitor(data)


@given(st.sampled_from(["int16", "uint16", "int32", "uint32", "int64", "uint64"]),
       st.booleans(), st.booleans(), st.integers())
def test_integer_codec_round_trips(kind: str, swap: bool, words: bool, n: int) -> None:
    v = parse_visitor({"register": "HoldingRegister", "offset": 0, "dataType": kind,
                       "isSwap": swap, "isRegisterSwap": words})
    try:
        regs = encode(n, v)
    except ValueTypeError:
        return
    assert all(0 <= r <= 0xFFFF for r in regs) and len(regs) == v.count
    assert decode(regs, v) == n


def test_byte_and_word_order() -> None:
    base = {"register": "HoldingRegister", "offset": 0, "dataType": "uint32"}
    assert encode(0x11223344, parse_visitor(base)) == [0x1122, 0x3344]
    assert encode(0x11223344, parse_visitor({**base, "isRegisterSwap": True})) == [0x3344,
                                                                                   0x1122]
    assert encode(0x11223344, parse_visitor({**base, "isSwap": True})) == [0x2211, 0x4433]
    f = parse_visitor({**base, "dataType": "float32"})
    assert decode(encode(21.5, f), f) == 21.5
    s = parse_visitor({**base, "dataType": "string", "limit": 3})
    assert decode(encode("abcd", s), s) == "abcd"
    with pytest.raises(ValueTypeError, match="does not fit int16"):
        encode(40000, parse_visitor({**base, "dataType": "int16"}))


def _device(port: int, framer: str = "socket") -> Device:
    return Device("default", "m", "m-model", "modbus",
                  {"ip": "127.0.0.1", "port": port, "timeout": 500, "framer": framer}, [])


def _prop(**visitor: Any) -> Property:
    return Property("p", "int", visitor=visitor)


@pytest.fixture
async def dev() -> AsyncIterator[ModbusDevice]:
    async with ModbusDevice() as d:
        yield d


@pytest.mark.parametrize("framer", ["socket", "rtu"])
async def test_driver_reads_and_writes_every_table(framer: str) -> None:
    async with ModbusDevice(framer=framer) as dev:
        drv = ModbusDriver(_device(dev.port, framer))
        await drv.connect()
        try:
            hr = drv.visitor(_prop(register="HoldingRegister", offset=4, dataType="int32"))
            await drv.write(hr, -70000)
            assert await dev.get("h", 4, 2) == encode(-70000, hr)
            assert await drv.read(hr) == -70000
            await dev.set("i", 7, [0xFFFE])
            assert await drv.read(drv.visitor(_prop(register="InputRegister", offset=7))) == -2
            coil = drv.visitor(_prop(register="CoilRegister", offset=3))
            await drv.write(coil, True)
            assert (await dev.get("c", 3))[0] is True and await drv.read(coil) is True
            await dev.set("d", 5, [True])
            di = drv.visitor(_prop(register="DiscreteInputRegister", offset=5))
            assert await drv.read(di) is True
            with pytest.raises(ValueTypeError, match="read-only"):
                await drv.write(di, False)
        finally:
            await drv.close()


async def test_an_address_the_device_lacks_is_a_device_error(dev: ModbusDevice) -> None:
    drv = ModbusDriver(_device(dev.port))
    await drv.connect()
    try:
        far = drv.visitor(_prop(register="HoldingRegister", offset=5000))
        with pytest.raises(DeviceError, match=r"modbus exception 2 \(illegal data address\)"):
            await drv.read(far)
        near = drv.visitor(_prop(register="HoldingRegister", offset=0))
        assert await drv.read(near) == 0  # the connection still works
    finally:
        await drv.close()


async def test_no_device_is_a_connection_error() -> None:
    async with ModbusDevice() as dev:
        port = dev.port
    drv = ModbusDriver(_device(port))
    with pytest.raises(ConnectionError):
        await drv.connect()
    await drv.close()
