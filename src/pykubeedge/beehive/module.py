"""What a module is, and what it sees of the hive.

A module is anything with a ``name``, a ``group``, a ``restart_policy`` and an async ``start``
that runs until the module is done (usually forever, reading its queue)::

    class MetaManager:
        name = "metamanager"
        group = "meta"
        restart_policy = RestartPolicy(RestartType.ON_FAILURE)

        async def start(self, ctx: BeehiveContext) -> None:
            while True:
                msg = await ctx.receive(self.name)
                if msg.sync:
                    ctx.respond(response(msg, self.store.get(msg.resource)))
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import NoReturn, Protocol

from pykubeedge.beehive.policy import RestartPolicy
from pykubeedge.core.message import Message

log = logging.getLogger(__name__)


class BeehiveContext(Protocol):
    """The messaging API a module gets in ``start``; :class:`~pykubeedge.beehive.Hive` is one."""

    async def send(self, module: str, msg: Message) -> None: ...

    def try_send(self, module: str, msg: Message) -> bool: ...

    async def send_to_group(self, group: str, msg: Message) -> int: ...

    async def send_sync(
        self,
        module: str,
        msg: Message,
        timeout: float | None = None,
    ) -> Message: ...

    def respond(self, msg: Message) -> bool: ...

    async def receive(self, module: str) -> Message: ...

    def members(self, group: str) -> tuple[str, ...]: ...

    def qsize(self, module: str) -> int: ...


class Module(Protocol):
    """A beehive module. Plain class attributes satisfy the read-only members."""

    @property
    def name(self) -> str: ...

    @property
    def group(self) -> str: ...

    @property
    def restart_policy(self) -> RestartPolicy: ...

    async def start(self, ctx: BeehiveContext) -> None:
        """Run the module. Returning or raising ends this run; the policy decides what next.

        Cancellation means shutdown: let ``CancelledError`` propagate.
        """
        ...


async def serve(ctx: BeehiveContext, module: str,
                handle: Callable[[Message], Awaitable[None] | None]) -> NoReturn:
    """Read ``module``'s queue forever, one message at a time, each to ``handle`` (plain or
    async). A message ``handle`` fails on is logged with the module's name and the next one
    is served: one bad message never takes a module down. Cancellation ends it::

        await serve(ctx, self.name, self.handle)
    """
    while True:
        msg = await ctx.receive(module)
        try:
            result = handle(msg)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("%s failed to handle %s", module, msg)
