"""The beehive runtime: queues, groups, sync calls, backpressure, supervision and shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from pykubeedge.beehive import (
    NEVER,
    BeehiveContext,
    Hive,
    HiveClosedError,
    RestartPolicy,
    RestartType,
    UnknownModuleError,
    serve,
)
from pykubeedge.core.message import Message, new_message, response

WAIT = 2.0  # seconds; a safety net for a hung test, never reached when the code works


def _msg(content: object = None) -> Message:
    return new_message(
        source="test", group="meta", resource="default/pod/x", operation="insert", content=content
    )


@dataclass
class Idle:
    """A module that never reads its queue, so tests can receive from it themselves."""

    name: str
    group: str = "idle"
    restart_policy: RestartPolicy = NEVER

    async def start(self, ctx: BeehiveContext) -> None:
        await asyncio.Event().wait()


@dataclass
class Echo:
    """Answers every sync request with its content."""

    name: str = "echo"
    group: str = "meta"
    restart_policy: RestartPolicy = NEVER
    seen: list[Message] = field(default_factory=list)

    async def start(self, ctx: BeehiveContext) -> None:
        while True:
            msg = await ctx.receive(self.name)
            self.seen.append(msg)
            if msg.sync:
                ctx.respond(response(msg, {"echo": msg.content}))


@dataclass
class Flaky:
    """Fails ``failures`` times, then behaves as ``after`` says; counts its runs."""

    restart_policy: RestartPolicy
    failures: int = 1_000_000
    after: str = "wait"  # "wait" forever, or "return"
    run_time: float = 0.0  # fake seconds each run lasts
    clock: FakeClock | None = None
    name: str = "flaky"
    group: str = "g"
    runs: int = 0
    ran: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self, ctx: BeehiveContext) -> None:
        self.runs += 1
        self.ran.set()
        if self.clock is not None:
            self.clock.now += self.run_time
        if self.runs <= self.failures:
            raise RuntimeError(f"crash {self.runs}")
        if self.after == "wait":
            await asyncio.Event().wait()


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeSleep:
    """Records the requested delays and returns at once."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


async def _until(predicate: Callable[[], bool], rounds: int = 10_000) -> None:
    """Let the loop run until ``predicate`` holds; counted in loop iterations, not seconds."""
    for _ in range(rounds):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def _is_blocked(awaitable: Awaitable[object]) -> asyncio.Task[object]:
    async def run() -> object:
        return await awaitable

    task = asyncio.create_task(run())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done()
    return task


# -- send and receive ------------------------------------------------------------------------


async def test_send_and_receive_in_order() -> None:
    async with Hive() as hive:
        hive.add_module(Idle("a"))
        first, second = _msg(1), _msg(2)

        await hive.send("a", first)
        assert hive.try_send("a", second)

        assert hive.qsize("a") == 2
        assert await hive.receive("a") is first
        assert await hive.receive("a") is second


async def test_unknown_module_is_a_typed_error() -> None:
    async with Hive() as hive:
        with pytest.raises(UnknownModuleError, match="nope"):
            await hive.send("nope", _msg())
        with pytest.raises(LookupError):
            hive.try_send("nope", _msg())
        with pytest.raises(UnknownModuleError):
            await hive.receive("nope")


async def test_registry() -> None:
    hive = Hive()
    hive.add_module(Idle("a", group="meta"))
    hive.add_module(Idle("b", group="meta"))
    hive.add_module(Idle("c", group="bus"))

    assert hive.modules() == ("a", "b", "c")
    assert hive.members("meta") == ("a", "b")
    assert hive.members("none") == ()
    with pytest.raises(ValueError, match="already registered"):
        hive.add_module(Idle("a"))


async def test_messages_sent_before_start_wait_in_the_queue() -> None:
    hive = Hive()
    echo = Echo()
    hive.add_module(echo)
    await hive.send("echo", _msg("early"))

    async with hive:
        await _until(lambda: len(echo.seen) == 1)

    assert echo.seen[0].content == "early"


# -- groups ----------------------------------------------------------------------------------


async def test_send_to_group_fans_out_a_copy_to_each_member() -> None:
    async with Hive() as hive:
        for name in ("a", "b"):
            hive.add_module(Idle(name, group="meta"))
        hive.add_module(Idle("c", group="bus"))
        msg = _msg({"k": "v"})

        assert await hive.send_to_group("meta", msg) == 2

        got_a, got_b = await hive.receive("a"), await hive.receive("b")
        assert got_a == msg
        assert got_b == msg
        assert got_a is not got_b
        assert got_a is not msg
        assert got_a.content is msg.content
        assert hive.qsize("c") == 0


async def test_send_to_empty_group_delivers_nothing() -> None:
    async with Hive() as hive:
        assert await hive.send_to_group("nobody", _msg()) == 0


async def test_group_member_with_room_is_not_held_up_by_a_full_one() -> None:
    async with Hive(queue_size=1) as hive:
        hive.add_module(Idle("full", group="meta"))
        hive.add_module(Idle("free", group="meta"))
        await hive.send("full", _msg("old"))

        task = await _is_blocked(hive.send_to_group("meta", _msg("new")))

        assert hive.qsize("free") == 1
        assert (await hive.receive("full")).content == "old"
        assert await task == 2
        assert (await hive.receive("full")).content == "new"


# -- send_sync and respond -------------------------------------------------------------------


async def test_send_sync_gets_the_response_routed_by_parent_id() -> None:
    echo = Echo()
    async with Hive() as hive:
        hive.add_module(echo)
        request = _msg("ping")

        reply = await hive.send_sync("echo", request, timeout=WAIT)

        assert reply.parent_msg_id == request.msg_id
        assert reply.content == {"echo": "ping"}
        assert echo.seen[0].sync  # the module saw a sync request...
        assert echo.seen[0].msg_id == request.msg_id
        assert not request.sync  # ...without the caller's message being changed
        assert hive.pending_sync() == 0


async def test_concurrent_send_sync_calls_each_get_their_own_response() -> None:
    async with Hive() as hive:
        hive.add_module(Echo())

        replies = await asyncio.gather(
            *(hive.send_sync("echo", _msg(i), timeout=WAIT) for i in range(50))
        )

        assert [r.content["echo"] for r in replies] == list(range(50))


async def test_respond_without_a_waiter_is_dropped() -> None:
    async with Hive() as hive:
        assert not hive.respond(response(_msg(), "late"))
        assert not hive.respond(_msg())  # no parent id at all


async def test_send_sync_timeout_cleans_up() -> None:
    async with Hive() as hive:
        hive.add_module(Idle("silent"))
        request = _msg()

        with pytest.raises(TimeoutError):
            await hive.send_sync("silent", request, timeout=0.01)

        assert hive.pending_sync() == 0
        assert not hive.respond(response(request, "too late"))


async def test_send_sync_timeout_covers_a_full_queue() -> None:
    async with Hive(queue_size=1) as hive:
        hive.add_module(Idle("busy"))
        await hive.send("busy", _msg())

        with pytest.raises(TimeoutError):
            await hive.send_sync("busy", _msg(), timeout=0.01)

        assert hive.pending_sync() == 0
        assert hive.qsize("busy") == 1


async def test_send_sync_argument_checks() -> None:
    async with Hive() as hive:
        hive.add_module(Idle("a"))
        with pytest.raises(ValueError, match="positive"):
            await hive.send_sync("a", _msg(), timeout=0)
        with pytest.raises(UnknownModuleError):
            await hive.send_sync("nope", _msg(), timeout=1)
        assert hive.pending_sync() == 0

        request = _msg()
        first = asyncio.create_task(hive.send_sync("a", request, timeout=WAIT))
        await _until(lambda: hive.pending_sync() == 1)
        with pytest.raises(ValueError, match="already waiting"):
            await hive.send_sync("a", request, timeout=WAIT)
        assert hive.respond(response(request, "ok"))
        assert (await first).content == "ok"


# -- backpressure ----------------------------------------------------------------------------


async def test_full_queue_blocks_send_and_refuses_try_send() -> None:
    async with Hive(queue_size=2) as hive:
        hive.add_module(Idle("slow"))
        assert hive.try_send("slow", _msg(1))
        assert hive.try_send("slow", _msg(2))

        assert not hive.try_send("slow", _msg(3))
        blocked = await _is_blocked(hive.send("slow", _msg(4)))
        assert hive.qsize("slow") == 2

        assert (await hive.receive("slow")).content == 1
        await asyncio.wait_for(blocked, WAIT)
        assert [(await hive.receive("slow")).content for _ in range(2)] == [2, 4]


async def test_a_cancelled_receiver_does_not_swallow_a_message() -> None:
    async with Hive() as hive:
        hive.add_module(Idle("a"))
        first = await _is_blocked(hive.receive("a"))
        second = await _is_blocked(hive.receive("a"))
        msg = _msg()

        assert hive.try_send("a", msg)  # wakes the first receiver...
        first.cancel()  # ...which is cancelled before it runs

        assert await asyncio.wait_for(second, WAIT) is msg


async def test_a_cancelled_sender_does_not_swallow_a_free_slot() -> None:
    async with Hive(queue_size=1) as hive:
        hive.add_module(Idle("a"))
        await hive.send("a", _msg(0))
        first = await _is_blocked(hive.send("a", _msg(1)))
        second = await _is_blocked(hive.send("a", _msg(2)))

        assert (await hive.receive("a")).content == 0  # frees a slot, wakes the first sender
        first.cancel()

        await asyncio.wait_for(second, WAIT)
        assert (await hive.receive("a")).content == 2


async def test_default_queue_size_is_1024() -> None:
    async with Hive() as hive:
        hive.add_module(Idle("a"))
        assert all(hive.try_send("a", _msg(i)) for i in range(1024))
        assert not hive.try_send("a", _msg())


# -- supervision -----------------------------------------------------------------------------


async def test_always_restarts_with_exponential_backoff_capped_at_30s() -> None:
    sleep = FakeSleep()
    module = Flaky(RestartPolicy(RestartType.ALWAYS), failures=8)
    async with Hive(sleep=sleep, clock=FakeClock()) as hive:
        hive.add_module(module)
        await _until(lambda: module.runs == 9)

    assert sleep.delays == [1, 2, 4, 8, 16, 30, 30, 30]


async def test_always_restarts_a_module_that_returned() -> None:
    sleep = FakeSleep()
    module = Flaky(RestartPolicy(RestartType.ALWAYS, growth_rate=1), failures=0, after="return")
    async with Hive(sleep=sleep, clock=FakeClock()) as hive:
        hive.add_module(module)
        await _until(lambda: module.runs >= 3)

    assert sleep.delays[:2] == [1, 1]


async def test_on_failure_stops_restarting_after_a_clean_return() -> None:
    stopped: list[tuple[str, BaseException | None]] = []
    sleep = FakeSleep()
    module = Flaky(RestartPolicy(RestartType.ON_FAILURE), failures=2, after="return")
    async with Hive(
        sleep=sleep, clock=FakeClock(), on_module_stopped=lambda n, e: stopped.append((n, e))
    ) as hive:
        hive.add_module(module)
        await _until(lambda: bool(stopped))

    assert module.runs == 3
    assert sleep.delays == [1, 2]
    assert stopped == [("flaky", None)]


async def test_never_runs_once_and_reports_the_failure() -> None:
    stopped: list[tuple[str, BaseException | None]] = []
    sleep = FakeSleep()
    module = Flaky(NEVER, failures=1)
    async with Hive(sleep=sleep, on_module_stopped=lambda n, e: stopped.append((n, e))) as hive:
        hive.add_module(module)
        await _until(lambda: bool(stopped))

    assert module.runs == 1
    assert sleep.delays == []
    name, error = stopped[0]
    assert name == "flaky"
    assert isinstance(error, RuntimeError)


async def test_retries_limit_gives_up() -> None:
    stopped: list[tuple[str, BaseException | None]] = []
    sleep = FakeSleep()
    module = Flaky(RestartPolicy(RestartType.ON_FAILURE, retries=3, interval=0.5))
    async with Hive(
        sleep=sleep, clock=FakeClock(), on_module_stopped=lambda n, e: stopped.append((n, e))
    ) as hive:
        hive.add_module(module)
        await _until(lambda: bool(stopped))

    assert module.runs == 4
    assert sleep.delays == [0.5, 1, 2]
    assert str(stopped[0][1]) == "crash 4"


async def test_a_long_stable_run_resets_retries_and_backoff() -> None:
    clock = FakeClock()
    sleep = FakeSleep()
    policy = RestartPolicy(RestartType.ON_FAILURE, retries=2, stable_after=60)
    module = Flaky(policy, failures=6, run_time=61, clock=clock)
    async with Hive(sleep=sleep, clock=clock) as hive:
        hive.add_module(module)
        await _until(lambda: module.runs == 7)

    assert sleep.delays == [1] * 6


async def test_a_failing_stopped_hook_does_not_break_the_hive() -> None:
    def hook(name: str, error: BaseException | None) -> None:
        raise RuntimeError("hook bug")

    module = Flaky(NEVER, failures=1)
    async with Hive(on_module_stopped=hook) as hive:
        hive.add_module(module)
        await _until(lambda: module.runs == 1)
        await asyncio.sleep(0)
        hive.add_module(Echo())
        assert (await hive.send_sync("echo", _msg(1), timeout=WAIT)).content == {"echo": 1}


def test_restart_policy_validation() -> None:
    with pytest.raises(ValueError, match="negative"):
        RestartPolicy(RestartType.ALWAYS, retries=-1)
    assert RestartPolicy(interval=60).first_interval == 30
    assert RestartPolicy(growth_rate=1).next_interval(3) == 3


# -- shutdown --------------------------------------------------------------------------------


@dataclass
class Worker:
    """Runs a child task in its own TaskGroup; records how both ended."""

    name: str = "worker"
    group: str = "g"
    restart_policy: RestartPolicy = field(default_factory=lambda: RestartPolicy(RestartType.ALWAYS))
    started: asyncio.Event = field(default_factory=asyncio.Event)
    ended: list[str] = field(default_factory=list)

    async def start(self, ctx: BeehiveContext) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._child())
                self.started.set()
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.ended.append("module cancelled")
            raise

    async def _child(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.ended.append("child cancelled")
            raise


async def test_leaving_the_hive_cancels_every_module_and_its_tasks() -> None:
    worker = Worker()
    before = asyncio.all_tasks()
    async with Hive() as hive:
        hive.add_module(worker)
        await asyncio.wait_for(worker.started.wait(), WAIT)

    assert sorted(worker.ended) == ["child cancelled", "module cancelled"]
    assert asyncio.all_tasks() == before
    assert hive.closed


async def test_closed_hive_refuses_everything() -> None:
    async with Hive() as hive:
        hive.add_module(Idle("a"))

    with pytest.raises(HiveClosedError):
        await hive.send("a", _msg())
    with pytest.raises(HiveClosedError):
        hive.try_send("a", _msg())
    with pytest.raises(HiveClosedError):
        await hive.send_to_group("idle", _msg())
    with pytest.raises(HiveClosedError):
        await hive.receive("a")
    with pytest.raises(HiveClosedError):
        hive.add_module(Idle("b"))
    with pytest.raises(RuntimeError, match="only once"):
        async with hive:
            pass


async def test_close_wakes_every_waiter_with_hive_closed() -> None:
    hive = Hive(queue_size=1)
    hive.add_module(Idle("full"))
    hive.add_module(Idle("empty"))
    async with hive:
        await hive.send("full", _msg())
        syncing = asyncio.create_task(hive.send_sync("full", _msg(), timeout=WAIT))
        sending = await _is_blocked(hive.send("full", _msg()))
        receiving = await _is_blocked(hive.receive("empty"))
        await _until(lambda: hive.pending_sync() == 1)

        hive.close()
        await asyncio.wait_for(hive.wait_closed(), WAIT)

        for task in (syncing, sending, receiving):
            with pytest.raises(HiveClosedError):
                await asyncio.wait_for(task, WAIT)
    assert hive.pending_sync() == 0


async def test_a_module_that_swallows_cancellation_is_not_restarted() -> None:
    @dataclass
    class Stubborn:
        name: str = "stubborn"
        group: str = "g"
        restart_policy: RestartPolicy = field(
            default_factory=lambda: RestartPolicy(RestartType.ALWAYS)
        )
        runs: int = 0

        async def start(self, ctx: BeehiveContext) -> None:
            self.runs += 1
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                return  # wrong, but it must not keep the hive alive

    module = Stubborn()
    async with asyncio.timeout(WAIT), Hive(sleep=FakeSleep()) as hive:
        hive.add_module(module)
        await _until(lambda: module.runs == 1)

    assert module.runs == 1


async def test_an_error_in_the_body_still_shuts_the_hive_down() -> None:
    worker = Worker()

    async def body() -> None:
        async with Hive() as hive:
            hive.add_module(worker)
            await asyncio.wait_for(worker.started.wait(), WAIT)
            raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await body()

    assert "module cancelled" in worker.ended


async def _serve_until(done: asyncio.Event, handle: Callable[[Message], Awaitable[None] | None],
                       *contents: str) -> None:
    """``serve`` a module holding ``contents`` until ``done``, then cancel it."""
    async with Hive() as hive:
        hive.add_module(Idle("worker"))
        for content in contents:
            await hive.send("worker", _msg(content))
        task = asyncio.create_task(serve(hive, "worker", handle))
        async with asyncio.timeout(WAIT):
            await done.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_serve_logs_a_message_its_handler_fails_on_and_serves_the_next(
        caplog: pytest.LogCaptureFixture) -> None:
    served: list[object] = []
    done = asyncio.Event()

    async def handle(msg: Message) -> None:
        if msg.content == "bad":
            raise ValueError("no")
        served.append(msg.content)
        if msg.content == "b":
            done.set()

    await _serve_until(done, handle, "a", "bad", "b")
    assert served == ["a", "b"]
    assert "worker failed to handle" in caplog.text and "ValueError: no" in caplog.text


async def test_serve_takes_a_plain_handler_too() -> None:
    done = asyncio.Event()
    served: list[object] = []

    def handle(msg: Message) -> None:
        served.append(msg.content)
        done.set()

    await _serve_until(done, handle, "x")
    assert served == ["x"]
