"""The virtual mapper (protocol ``virtual``): a simulated sensor and actuator for demos and
tests, the worked example of ``docs/mappers.md``.

    python -m pykubeedge.mapper virtual --config mapper.yaml
"""

from pykubeedge.mapper.virtual.driver import VirtualDriver

__all__ = ["VirtualDriver"]
