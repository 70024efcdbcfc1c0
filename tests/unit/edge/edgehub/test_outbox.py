"""EdgeHub's SQLite outbox: order, bound, coalescing of status, survival across reopen."""

from __future__ import annotations

from pathlib import Path

from pykubeedge.core.message import new_message
from pykubeedge.edge.edgehub.hub import coalesce_key
from pykubeedge.edge.edgehub.outbox import Outbox


def msg(resource: str, op: str = "patch", seq: int = 0):
    return new_message(source="metamanager", group="resource", operation=op,
                       resource=resource, content={"seq": seq})


async def test_order_bound_and_reopen(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "edge.db", limit=3)
    for i in range(3):
        assert await box.put(msg(f"default/event/e{i}", "insert", i))
    assert not await box.put(msg("default/event/e3", "insert", 3))  # full: refused, not lost
    await box.close()
    box = await Outbox.open(tmp_path / "edge.db", limit=3)  # an edgecore restart
    rows = await box.peek(10)
    assert [m.content["seq"] for _, m in rows if m] == [0, 1, 2]
    await box.delete_through(rows[1][0])
    assert len(box) == 1
    await box.close()


async def test_only_the_newest_status_is_kept(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "edge.db", limit=10)
    for i in range(5):
        m = msg("default/podpatch/web", seq=i)
        assert await box.put(m, replace=coalesce_key(m))
    other = msg("default/event/e", "insert", 99)
    await box.put(other, replace=coalesce_key(other))
    lease = msg("kube-node-lease/lease/edge-1", "update", 7)
    await box.put(lease, replace=coalesce_key(lease))
    rows = [m for _, m in await box.peek(10) if m]
    assert [(m.resource, m.content["seq"]) for m in rows] == [
        ("default/podpatch/web", 4), ("default/event/e", 99), ("kube-node-lease/lease/edge-1", 7)]
    assert len(box) == 3
    await box.close()


def test_what_coalesces() -> None:
    assert coalesce_key(msg("null/nodepatch/edge-1")) == "null/nodepatch/edge-1"
    assert coalesce_key(msg("default/pod/web", "delete")) is None
    assert coalesce_key(msg("default/event/x", "insert")) is None
