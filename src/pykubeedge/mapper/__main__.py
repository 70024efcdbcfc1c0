"""``python -m pykubeedge.mapper <protocol> --config config.yaml``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import signal
import sys

from pykubeedge.mapper.config import ConfigError, load_config
from pykubeedge.mapper.driver import Driver

BUILT_IN = {"modbus": "pykubeedge.mapper.modbus:ModbusDriver",
            "virtual": "pykubeedge.mapper.virtual:VirtualDriver"}


def driver_class(name: str) -> type[Driver]:
    target = BUILT_IN.get(name, name)
    if ":" not in target:
        raise ConfigError(f"unknown mapper {name!r}: one of {', '.join(BUILT_IN)} or "
                          f"package.module:DriverClass")
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load the driver {target}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise ConfigError(f"{target} is not a pykubeedge.mapper.Driver")
    return cls


async def _run(args: argparse.Namespace) -> None:
    from pykubeedge.mapper.app import Mapper

    driver = driver_class(args.protocol)
    cfg = load_config(args.config, protocol=getattr(driver, "protocol", ""))
    task = asyncio.create_task(Mapper(cfg, driver).run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pykubeedge.mapper",
                                     description="run a KubeEdge mapper")
    parser.add_argument("protocol", help="modbus, virtual or package.module:DriverClass")
    parser.add_argument("--config", default="config.yaml", help="the mapper's config.yaml")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_run(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
