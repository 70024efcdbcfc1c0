"""pykubeedge.beehive: the in-process module runtime (upstream ``beehive/pkg/core``).

Usage::

    from pykubeedge.beehive import Hive

    async with Hive() as hive:
        hive.add_module(metamanager)  # a Module: name, group, restart_policy, start
        await hive.send("metamanager", msg)  # waits while the queue is full
        reply = await hive.send_sync("metamanager", query, timeout=5)
"""

from pykubeedge.beehive.errors import BeehiveError, HiveClosedError, UnknownModuleError
from pykubeedge.beehive.hive import DEFAULT_QUEUE_SIZE, DEFAULT_SYNC_TIMEOUT, Hive
from pykubeedge.beehive.module import BeehiveContext, Module, serve
from pykubeedge.beehive.policy import NEVER, RestartPolicy, RestartType

__all__ = [
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_SYNC_TIMEOUT",
    "NEVER",
    "BeehiveContext",
    "BeehiveError",
    "Hive",
    "HiveClosedError",
    "Module",
    "RestartPolicy",
    "RestartType",
    "UnknownModuleError",
    "serve",
]
