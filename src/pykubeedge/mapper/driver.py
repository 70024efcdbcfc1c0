"""The driver protocol: all a mapper author writes for a new protocol.

A driver object serves one device. The SDK (:mod:`.device`) creates it from the device's
protocol config, asks it to parse each property's visitor config once, connects it, reads at
``collectCycle``, writes desired values, and calls :meth:`Driver.health` when it has nothing
else to learn from. Raise:

- :class:`~pykubeedge.mapper.config.ConfigError` for config that cannot work (the property, or
  the device from ``__init__``, is disabled and the device reported ``unhealthy``);
- :class:`DeviceError` when the device answers with an error (that property fails, the device
  is ``unhealthy``, the rest carries on);
- anything else (``OSError``, ``TimeoutError``, ...) when the device does not answer: the SDK
  reports it ``offline``, closes and reconnects with backoff.

    class Thermo(Driver):
        protocol = "thermo"
        def __init__(self, device): self.host = device.config["host"]
        def visitor(self, prop): return prop.visitor["channel"]
        async def connect(self): ...
        async def read(self, visitor): return 21.5
        async def write(self, visitor, value): ...
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from pykubeedge.mapper.model import Device, Property


class DeviceError(Exception):
    """The device answered, with an error (e.g. a Modbus exception response)."""


class Driver(ABC):
    protocol: ClassVar[str]

    @abstractmethod
    def __init__(self, device: Device) -> None:
        """Parse ``device.config`` (the protocol's configData); raise ConfigError if unusable."""

    def visitor(self, prop: Property) -> Any:
        """Parse ``prop.visitor`` (the property's visitor configData) into what read and write
        take; raise ConfigError if unusable. Default: the dict itself."""
        return prop.visitor

    @abstractmethod
    async def connect(self) -> None:
        """Open the connection (raise if the device is unreachable)."""

    @abstractmethod
    async def read(self, visitor: Any) -> Any:
        """One property's raw value (int, float, bool, str or bytes)."""

    async def write(self, visitor: Any, value: Any) -> None:
        """Write one property's raw value (already type-checked and unscaled)."""
        raise DeviceError(f"{self.protocol} properties are read-only")

    async def health(self) -> bool:
        """Whether the device answers (called when no property is polled)."""
        return True

    async def close(self) -> None:
        """Close the connection (also after failures; must not raise)."""
        return None
