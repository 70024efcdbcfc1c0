"""The Modbus mapper (protocol ``modbus``): TCP, RTU over a serial port and RTU framing over
TCP; coils, discrete inputs, holding and input registers; 16/32/64-bit integers, 32/64-bit
floats, strings and booleans, byte and word order, scale. See ``docs/mappers.md``.

    python -m pykubeedge.mapper modbus --config mapper.yaml
"""

from pykubeedge.mapper.modbus.driver import ModbusDriver

__all__ = ["ModbusDriver"]
