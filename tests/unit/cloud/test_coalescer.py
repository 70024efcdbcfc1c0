"""DeviceController's per-device coalescing and rate limit, in fake time."""

from __future__ import annotations

from pykubeedge.cloud.devicecontroller.coalescer import StatusCoalescer
from pykubeedge.core.twin import MsgTwin, TwinValue, TwinVersion


def report(value: str, edge: int) -> dict[str, MsgTwin | None]:
    return {"t": MsgTwin(actual=TwinValue(value), actual_version=TwinVersion(0, edge))}


def test_first_report_at_once_then_a_flood_becomes_few_writes() -> None:
    c: StatusCoalescer[str] = StatusCoalescer(rate=10, burst=1)
    c.add_twins("d", report("1", 1), "r1", now=0.0)
    ((key, first),) = c.due(0.0)
    assert (key, first.replies) == ("d", ["r1"])
    for i in range(2, 102):  # while the first write is in flight
        c.add_twins("d", report(str(i), i), f"r{i}", now=0.001)
    assert c.due(0.001) == []
    assert c.done("d", 0.002, ok=True) == ["r1"]
    assert c.due(0.05) == []  # 10 writes a second
    ((_, second),) = c.due(0.1)
    assert second.twins["t"].actual.value == "101"  # type: ignore[union-attr]
    assert len(second.replies) == 100
    assert len(c.done("d", 0.11, ok=True)) == 100 and len(c) == 0


def test_an_older_report_never_overwrites_a_newer_one() -> None:
    c: StatusCoalescer[str] = StatusCoalescer(rate=100, burst=10)
    c.add_twins("d", report("5", 5), None, now=0)
    c.add_twins("d", report("4", 4), None, now=0)  # stale while waiting
    ((_, p),) = c.due(0)
    assert p.twins["t"].actual.value == "5"  # type: ignore[union-attr]
    c.done("d", 0, ok=True)
    c.add_twins("d", report("3", 3), "late", now=1)  # stale after it was written
    ((_, p),) = c.due(1)
    assert p.twins == {} and p.replies == ["late"]
    c.done("d", 1, ok=True)
    c.add_twins("d", report("fresh", 1), None, now=2)  # a new twin (wiped edge): taken
    ((_, p),) = c.due(2)
    assert p.twins["t"].actual.value == "fresh"  # type: ignore[union-attr]


def test_a_failed_write_is_retried_with_what_came_meanwhile_then_given_up() -> None:
    c: StatusCoalescer[str] = StatusCoalescer(rate=100, burst=10, max_attempts=2,
                                              retry_after=1.0)
    c.add_state("d", "online", "t0", "a", now=0)
    (_,) = c.due(0)
    c.add_state("d", "offline", "", "b", now=0.5)
    assert c.done("d", 0.5, ok=False) == []
    assert c.due(1.0) == []
    ((_, p),) = c.due(1.5)
    assert (p.state, p.replies) == (("offline", ""), ["a", "b"])
    assert c.done("d", 1.6, ok=False) == ["a", "b"]  # given up: the edge sends them again
    assert c.replies_waiting == 0
