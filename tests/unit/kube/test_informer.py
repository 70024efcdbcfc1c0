"""Informer logic with a scripted fake API: list/watch/relist bookkeeping and backoff."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pykubeedge.core import errors
from pykubeedge.core.backoff import Backoff
from pykubeedge.kube.informer import Informer, InformerEvent
from pykubeedge.kube.resources import CONFIGMAPS


def obj(name: str, rv: str, v: str = "") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv},
            "data": {"v": v}}


class FakeKube:
    """Each list() pops a scripted list; each watch() plays a scripted stream then raises."""

    def __init__(self, lists: list[list[dict]], watches: list[list[Any]]) -> None:
        self.lists = lists
        self.watches = watches
        self.watch_rvs: list[str | None] = []
        self.list_calls = 0

    async def list(self, res: Any, **kw: Any) -> dict[str, Any]:
        self.list_calls += 1
        items = self.lists.pop(0)
        rv = max((int(o["metadata"]["resourceVersion"]) for o in items), default=1)
        return {"items": items, "metadata": {"resourceVersion": str(rv)}}

    async def watch(self, res: Any, *, resource_version: str | None = None,
                    **kw: Any) -> AsyncIterator[dict]:
        self.watch_rvs.append(resource_version)
        if not self.watches:
            await asyncio.Event().wait()  # block forever: end of script
        for item in self.watches.pop(0):
            if isinstance(item, Exception):
                raise item
            yield item


async def run_until(inf: Informer, seen: list, n: int) -> None:
    task = asyncio.create_task(inf.run())
    try:
        for _ in range(200):
            if len(seen) >= n:
                break
            await asyncio.sleep(0)
        await asyncio.sleep(0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def make(fake: FakeKube, seen: list, sleeps: list[float] | None = None) -> Informer:
    async def handle(ev: InformerEvent) -> None:
        seen.append((ev.type, ev.obj["metadata"]["name"], ev.obj["metadata"]["resourceVersion"]))

    async def fake_sleep(s: float) -> None:
        if sleeps is not None:
            sleeps.append(s)

    return Informer(fake, CONFIGMAPS, handle, sleep=fake_sleep)  # type: ignore[arg-type]


async def test_watch_skips_replays_and_unknown_deletes() -> None:
    fake = FakeKube(
        lists=[[obj("a", "5")]],
        watches=[[
            {"type": "ADDED", "object": obj("a", "5")},  # replay of the listed state
            {"type": "MODIFIED", "object": obj("a", "6")},
            {"type": "DELETED", "object": obj("ghost", "7")},  # never seen
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}},
        ]],
    )
    seen: list = []
    inf = make(fake, seen)
    await run_until(inf, seen, 2)
    assert seen == [("ADDED", "a", "5"), ("MODIFIED", "a", "6")]
    assert inf.resource_version == "9"
    assert fake.watch_rvs[:2] == ["5", "9"]  # resumes from the bookmark, no relist
    assert fake.list_calls == 1


async def test_gone_relists_and_reports_only_the_difference() -> None:
    fake = FakeKube(
        lists=[[obj("a", "1"), obj("b", "2"), obj("c", "3")],
               [obj("a", "1"), obj("b", "8"), obj("d", "9")]],
        watches=[[errors.Gone("too old", status=410)]],
    )
    seen: list = []
    inf = make(fake, seen)
    await run_until(inf, seen, 6)
    assert seen[:3] == [("ADDED", "a", "1"), ("ADDED", "b", "2"), ("ADDED", "c", "3")]
    assert sorted(seen[3:]) == [("ADDED", "d", "9"), ("DELETED", "c", "3"), ("MODIFIED", "b", "8")]
    assert inf.relists == 1
    assert set(inf.store) == {"ns/a", "ns/b", "ns/d"}


async def test_broken_watch_backs_off_and_resumes_without_relisting() -> None:
    fake = FakeKube(
        lists=[[obj("a", "1")]],
        watches=[
            [{"type": "MODIFIED", "object": obj("a", "2")}, errors.KubeConnectionError("reset")],
            [errors.ServerError("boom", status=500)],
            [{"type": "MODIFIED", "object": obj("a", "3")}],
        ],
    )
    seen: list = []
    sleeps: list[float] = []
    inf = make(fake, seen, sleeps)
    await run_until(inf, seen, 3)
    assert [s[2] for s in seen] == ["1", "2", "3"]
    assert fake.list_calls == 1
    assert fake.watch_rvs[:3] == ["1", "2", "2"]
    assert len(sleeps) == 2 and all(0 < s <= 30 for s in sleeps)


def test_backoff_grows_is_capped_and_resets() -> None:
    b = Backoff(initial=1, cap=8)
    delays = [b.next_delay(lambda: 1.0) for _ in range(6)]
    assert delays == [1, 2, 4, 8, 8, 8]
    b.reset()
    assert b.next_delay(lambda: 0.0) == 0.5  # full jitter: between half and all of it


@pytest.mark.parametrize("exc", [errors.Forbidden("no", status=403),
                                 errors.NotFound("no crd", status=404)])
async def test_non_transient_errors_relist_after_backoff(exc: Exception) -> None:
    fake = FakeKube(lists=[[obj("a", "1")], [obj("a", "1")]], watches=[[exc]])
    seen: list = []
    sleeps: list[float] = []
    inf = make(fake, seen, sleeps)
    await run_until(inf, seen, 1)
    for _ in range(50):
        await asyncio.sleep(0)
    assert seen == [("ADDED", "a", "1")]  # the relist found nothing new
