"""The hive: module registry, bounded queues, sync request/response, supervision, shutdown.

Leaving the ``async with`` block cancels every module and waits for it, so no task outlives
the hive::

    async with Hive() as hive:
        hive.add_module(MetaManager())
        hive.add_module(EdgeHub())
        await hive.wait_closed()  # until a signal handler calls hive.close()
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Final

from pykubeedge.beehive.errors import HiveClosedError, UnknownModuleError
from pykubeedge.beehive.mailbox import Mailbox
from pykubeedge.beehive.module import Module
from pykubeedge.beehive.policy import RestartPolicy
from pykubeedge.core.clock import Sleep, TimeSource
from pykubeedge.core.message import Message

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE: Final = 1024
"""Messages per module queue, as upstream's channel size."""
DEFAULT_SYNC_TIMEOUT: Final = 30.0
"""Seconds ``send_sync`` waits by default, as upstream."""

StoppedHook = Callable[[str, BaseException | None], None]


@dataclass(slots=True)
class _Entry:
    module: Module
    policy: RestartPolicy
    mailbox: Mailbox
    task: asyncio.Task[None] | None = None


class Hive:
    """The in-process module runtime; it is the :class:`BeehiveContext` modules receive.

    ``clock`` and ``sleep`` drive restart backoff (inject fakes in tests);
    ``on_module_stopped(name, error)`` is called when a module ends for good (its policy says no
    restart, or its retries ran out), e.g. to stop the process and let systemd restart it.
    """

    def __init__(
        self,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        sync_timeout: float = DEFAULT_SYNC_TIMEOUT,
        clock: TimeSource = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        on_module_stopped: StoppedHook | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self._queue_size = queue_size
        self._sync_timeout = sync_timeout
        self._clock = clock
        self._sleep = sleep
        self._on_module_stopped = on_module_stopped
        self._modules: dict[str, _Entry] = {}
        self._groups: dict[str, list[_Entry]] = {}
        self._waiters: dict[str, asyncio.Future[Message]] = {}
        self._task_group: asyncio.TaskGroup | None = None
        self._closed = False
        self._closed_event = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Hive:
        if self._task_group is not None or self._closed:
            raise RuntimeError("a Hive can be entered only once")
        task_group = asyncio.TaskGroup()
        await task_group.__aenter__()
        self._task_group = task_group
        for entry in self._modules.values():
            self._spawn(entry)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        assert self._task_group is not None
        if exc_type is not None and not issubclass(exc_type, asyncio.CancelledError):
            # The modules are cancelled already; hiding the body's error from the TaskGroup
            # lets it propagate as itself instead of wrapped in an ExceptionGroup.
            exc_type = exc = tb = None
        await self._task_group.__aexit__(exc_type, exc, tb)

    @property
    def closed(self) -> bool:
        """True once shutdown has begun."""
        return self._closed

    def close(self) -> None:
        """Begin shutdown: cancel every module, drop queued messages, and make pending
        ``send``/``receive``/``send_sync`` calls raise :class:`HiveClosedError`.

        ``async with`` calls it on exit and then waits for the modules to finish.
        """
        if self._closed:
            return
        self._closed = True
        self._closed_event.set()
        for entry in self._modules.values():
            if entry.task is not None:
                entry.task.cancel()
            entry.mailbox.close()
        waiters, self._waiters = self._waiters, {}
        for future in waiters.values():
            if not future.done():
                future.set_exception(HiveClosedError("hive closed before the response came"))

    async def wait_closed(self) -> None:
        """Return once :meth:`close` has been called (by a signal handler, a hook, a module).

        For example, to end the process when any module dies for good::

            async with Hive(on_module_stopped=lambda name, err: hive.close()) as hive:
                hive.add_module(EdgeHub())
                await hive.wait_closed()
        """
        await self._closed_event.wait()

    # -- registry ----------------------------------------------------------------------------

    def add_module(self, module: Module) -> None:
        """Register ``module`` (its queue and group); start it now if the hive is running.

        >>> hive.add_module(EdgeController())    # doctest: +SKIP
        """
        if self._closed:
            raise HiveClosedError(f"cannot add module {module.name!r}: hive closed")
        if module.name in self._modules:
            raise ValueError(f"module {module.name!r} is already registered")
        entry = _Entry(module, module.restart_policy, Mailbox(self._queue_size, module.name))
        self._modules[module.name] = entry
        self._groups.setdefault(module.group, []).append(entry)
        if self._task_group is not None:
            self._spawn(entry)

    def modules(self) -> tuple[str, ...]:
        """Names of the registered modules."""
        return tuple(self._modules)

    def members(self, group: str) -> tuple[str, ...]:
        """Names of the modules in ``group``."""
        return tuple(entry.module.name for entry in self._groups.get(group, ()))

    def pending_sync(self) -> int:
        """How many ``send_sync`` calls are waiting for a response."""
        return len(self._waiters)

    def qsize(self, module: str) -> int:
        """Messages waiting in ``module``'s queue."""
        return self._mailbox(module).qsize()

    # -- messaging ---------------------------------------------------------------------------

    async def send(self, module: str, msg: Message) -> None:
        """Put ``msg`` on ``module``'s queue, waiting while the queue is full (backpressure).

        A module that sends to itself with a full queue waits forever: use :meth:`try_send`.

        >>> await hive.send("metamanager", msg)    # doctest: +SKIP
        """
        await self._mailbox(module).put(msg)

    def try_send(self, module: str, msg: Message) -> bool:
        """Put ``msg`` on ``module``'s queue if there is room; False when it is full.

        >>> if not hive.try_send("websocket", msg):    # doctest: +SKIP
        ...     outbox.append(msg)
        """
        return self._mailbox(module).put_nowait(msg)

    async def send_to_group(self, group: str, msg: Message) -> int:
        """Deliver a copy of ``msg`` to every module of ``group``; returns how many.

        Members with room get it at once; then the call waits for each full one in turn.
        The copies share ``content``. An empty or unknown group gets nothing (logged).

        >>> await hive.send_to_group("meta", msg)    # doctest: +SKIP
        1
        """
        if self._closed:
            raise HiveClosedError(f"cannot send to group {group!r}: hive closed")
        members = self._groups.get(group)
        if not members:
            log.warning("no module in group %r; dropped %s", group, msg)
            return 0
        blocked = [e for e in members if not e.mailbox.put_nowait(dataclasses.replace(msg))]
        for entry in blocked:
            await entry.mailbox.put(dataclasses.replace(msg))
        return len(members)

    async def send_sync(
        self,
        module: str,
        msg: Message,
        timeout: float | None = None,
    ) -> Message:
        """Send ``msg`` (with ``sync`` set) and wait for the message that :meth:`respond` routes
        back to it by ``parent_msg_id``.

        ``timeout`` (default 30 s) covers both the wait for queue room and for the response;
        when it expires ``TimeoutError`` is raised and nothing is left registered.

        >>> reply = await hive.send_sync("metamanager", query, timeout=5)    # doctest: +SKIP
        >>> reply.operation    # doctest: +SKIP
        'response'
        """
        if timeout is None:
            timeout = self._sync_timeout
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        mailbox = self._mailbox(module)
        if msg.msg_id in self._waiters:
            raise ValueError(f"a send_sync of message {msg.msg_id} is already waiting")
        request = dataclasses.replace(msg, sync=True)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiters[request.msg_id] = future
        try:
            async with asyncio.timeout(timeout):
                await mailbox.put(request)
                return await future
        finally:
            if self._waiters.get(request.msg_id) is future:
                del self._waiters[request.msg_id]
            if future.done() and not future.cancelled():
                # close() may fail the future while we still wait for queue room; consume it.
                future.exception()

    def respond(self, msg: Message) -> bool:
        """Hand ``msg`` to the ``send_sync`` waiting for ``msg.parent_msg_id`` (``SendResp``).

        Returns False, and drops the message, when nobody waits (late or unsolicited reply).

        >>> hive.respond(response(request, {"items": []}))    # doctest: +SKIP
        True
        """
        future = self._waiters.pop(msg.parent_msg_id, None)
        if future is None or future.done():
            log.debug("no send_sync waits for %s; dropped", msg)
            return False
        future.set_result(msg)
        return True

    async def receive(self, module: str) -> Message:
        """The next message of ``module``'s queue, waiting for one.

        >>> msg = await ctx.receive("metamanager")    # doctest: +SKIP
        """
        return await self._mailbox(module).get()

    # -- internals ---------------------------------------------------------------------------

    def _mailbox(self, module: str) -> Mailbox:
        if self._closed:
            raise HiveClosedError(f"hive closed (module {module!r})")
        entry = self._modules.get(module)
        if entry is None:
            raise UnknownModuleError(f"no module named {module!r}")
        return entry.mailbox

    def _spawn(self, entry: _Entry) -> None:
        assert self._task_group is not None
        entry.task = self._task_group.create_task(
            self._supervise(entry), name=f"beehive:{entry.module.name}"
        )

    async def _supervise(self, entry: _Entry) -> None:
        module, policy = entry.module, entry.policy
        delay = policy.first_interval
        restarts = 0
        while True:
            began = self._clock()
            error: Exception | None = None
            try:
                await module.start(self)
            except Exception as exc:
                error = exc
                log.error("module %s failed: %r", module.name, exc, exc_info=exc)
            else:
                log.info("module %s returned", module.name)
            if self._closed:  # a module that swallowed its cancellation
                return
            if not policy.should_restart(error is not None):
                self._stopped(module.name, error)
                return
            if self._clock() - began >= policy.stable_after:
                restarts, delay = 0, policy.first_interval
            restarts += 1
            if policy.retries and restarts > policy.retries:
                log.error("module %s: gave up after %d restarts", module.name, policy.retries)
                self._stopped(module.name, error)
                return
            log.warning("module %s: restart %d in %.3g s", module.name, restarts, delay)
            await self._sleep(delay)
            delay = policy.next_interval(delay)

    def _stopped(self, name: str, error: Exception | None) -> None:
        if self._on_module_stopped is None:
            return
        try:
            self._on_module_stopped(name, error)
        except Exception:
            log.exception("on_module_stopped hook failed for module %s", name)
