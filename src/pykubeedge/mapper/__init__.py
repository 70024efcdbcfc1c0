"""pykubeedge.mapper: a Python SDK for KubeEdge mappers, and the built-in mappers.

A mapper speaks a device protocol on one side and DMI (gRPC on unix sockets) to edgecore on
the other. Write a :class:`Driver` (connect, read, write, health); the SDK registers with
edgecore, polls, reports, writes desired values, reconnects, reports states, pushes, serves
the REST API. Run one with ``python -m pykubeedge.mapper <protocol> --config config.yaml``
(``modbus``, ``virtual``, or ``package.module:DriverClass``). Guide: ``docs/mappers.md``.
"""

from pykubeedge.mapper.config import ConfigError, MapperConfig, load_config
from pykubeedge.mapper.driver import DeviceError, Driver
from pykubeedge.mapper.model import Device, Property

__all__ = ["ConfigError", "Device", "DeviceError", "Driver", "MapperConfig", "Property",
           "load_config"]
