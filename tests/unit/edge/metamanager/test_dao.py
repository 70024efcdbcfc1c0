"""MetaManager's DAO: contract tables, the batching writer, UID-guarded deletes, the change feed."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from pykubeedge.core.errors import StoreClosedError, StoreError
from pykubeedge.edge.metamanager.dao import DeleteOutcome, MetaStore
from pykubeedge.edge.metamanager.feed import ChangeType, RevisionExpired
from tests.unit.edge.metamanager.objects import configmap, node, pod

WAIT = 5.0  # a safety net for a hung test, never reached when the code works


def rows(path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    """Read the database file directly, as another program (or upstream edgecore) would."""
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, args).fetchall()


async def test_contract_tables_and_pragmas(store: MetaStore) -> None:
    await store.upsert("default/pod/web", pod("web"))
    path = Path(store.path)
    meta = rows(path, "SELECT key, type, value FROM meta")
    assert [(k, t) for k, t, _ in meta] == [("default/pod/web", "pod")]
    v2 = rows(path, "SELECT key, group_version_resource, namespace, name, resource_version "
                    "FROM meta_v2")
    assert v2 == [("/core/v1/pods/default/web", "/v1, Resource=pods", "default", "web", 1)]
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]


async def test_upsert_get_list(store: MetaStore) -> None:
    await store.upsert("default/pod/a", pod("a"))
    await store.upsert("kube-system/pod/b", pod("b", "kube-system"))
    await store.upsert("default/configmap/c", configmap("c", x="1"))
    await store.upsert("null/node/edge-1", node())

    assert (await store.get("default/pod/a"))["metadata"]["uid"] == "uid-a"
    assert await store.get("default/pod/missing") is None
    def names(items: list[dict]) -> list[str]:
        return [item["metadata"]["name"] for item in items]

    assert names(await store.list_by_type("pod")) == ["a", "b"]
    assert names(await store.list_by_type("pod", "null")) == ["a", "b"]
    assert names(await store.list_by_type("pod", "kube-system")) == ["b"]
    assert await store.list_by_type("secret") == []
    nodes, _ = await store.list_objects("nodes")
    assert [n["metadata"]["name"] for n in nodes] == ["edge-1"]


async def test_meta_keeps_the_cloud_object_and_meta_v2_serves_the_revision(
        store: MetaStore) -> None:
    rev = await store.upsert("default/pod/web", pod("web", rv="12345"))
    assert (await store.get("default/pod/web"))["metadata"]["resourceVersion"] == "12345"
    served, list_rev = await store.get_object("pods", "default", "web")
    assert served["metadata"]["resourceVersion"] == str(rev)
    assert (served["kind"], served["apiVersion"]) == ("Pod", "v1")
    assert list_rev == rev


async def test_identical_value_is_not_rewritten(store: MetaStore) -> None:
    first = await store.upsert("default/pod/web", pod("web"))
    again = await store.upsert("default/pod/web", pod("web"))
    assert again == first
    assert store.revision == first
    assert len(store.feed.since(0)) == 1


async def test_revisions_are_monotonic_and_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "edgecore.db"
    async with await MetaStore.open(path) as store:
        revs = [await store.upsert(f"default/configmap/c{i}", configmap(f"c{i}"))
                for i in range(5)]
        await store.delete("default/configmap/c4")
        last = store.revision
    assert revs == sorted(revs) and len(set(revs)) == 5
    assert last == revs[-1] + 1
    async with await MetaStore.open(path) as store:
        assert store.revision == last
        assert await store.upsert("default/configmap/new", configmap("new")) == last + 1
        with pytest.raises(RevisionExpired):
            store.feed.since(last - 1)  # history before the restart is gone: relist


async def test_concurrent_writes_are_committed_in_batches(store: MetaStore) -> None:
    n = 500
    async with asyncio.timeout(WAIT):
        revs = await asyncio.gather(*(
            store.upsert(f"default/pod/p{i}", pod(f"p{i}")) for i in range(n)))
    assert sorted(revs) == list(range(1, n + 1))
    assert store.batches < n / 5, f"{store.batches} transactions for {n} writes"
    pods, rev = await store.list_objects("pods")
    assert (len(pods), rev) == (n, n)


async def test_small_write_queue_applies_backpressure_without_losing_writes(
        tmp_path: Path) -> None:
    async with await MetaStore.open(tmp_path / "db", write_queue=2, batch_size=3) as store:
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*(
                store.upsert(f"default/configmap/c{i}", configmap(f"c{i}")) for i in range(50)))
        assert len(await store.list_by_type("configmap")) == 50


async def test_a_failing_write_does_not_fail_its_batch(store: MetaStore) -> None:
    def broken(conn: sqlite3.Connection, op: object) -> None:
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    results = await asyncio.gather(
        store.upsert("default/configmap/a", configmap("a")),
        store._write(broken),
        store.upsert("default/configmap/b", configmap("b")),
        return_exceptions=True)
    assert isinstance(results[1], StoreError)
    assert results[0] == 1 and results[2] == 2
    assert len(await store.list_by_type("configmap")) == 2


async def test_unserializable_value_and_bad_key_are_refused(store: MetaStore) -> None:
    with pytest.raises(StoreError):
        await store.upsert("default/configmap/x", {"bad": object()})
    with pytest.raises(StoreError):
        await store.upsert("default/configmap", configmap("x"))
    assert store.revision == 0


async def test_uid_guarded_pod_delete(store: MetaStore) -> None:
    await store.upsert("default/pod/web", pod("web", uid="new-uid"))
    await store.upsert("default/podpatch/web", '{"status":{"phase":"Running"}}')

    stale = await store.delete("default/pod/web", uid="old-uid", also=("default/podpatch/web",))
    assert stale is DeleteOutcome.UID_MISMATCH
    assert await store.get("default/pod/web") is not None
    assert await store.get("default/podpatch/web") is not None

    done = await store.delete("default/pod/web", uid="new-uid", also=("default/podpatch/web",))
    assert done is DeleteOutcome.DELETED
    assert await store.get("default/pod/web") is None
    assert await store.get("default/podpatch/web") is None
    assert (await store.get_object("pods", "default", "web"))[0] is None

    assert await store.delete("default/pod/web", uid="new-uid") is DeleteOutcome.MISSING


async def test_delete_without_uid_is_unconditional(store: MetaStore) -> None:
    await store.upsert("default/pod/web", pod("web"))
    assert await store.delete("default/pod/web") is DeleteOutcome.DELETED


async def test_change_feed_reports_every_write(store: MetaStore) -> None:
    await store.upsert("default/pod/web", pod("web", phase="Pending"))
    await store.upsert("default/pod/web", pod("web", phase="Running"))
    await store.upsert("default/podpatch/web", '{"status":{}}')
    await store.delete("default/pod/web")
    changes = store.feed.since(0)
    assert [(c.revision, c.type, c.key) for c in changes] == [
        (1, ChangeType.ADDED, "default/pod/web"),
        (2, ChangeType.MODIFIED, "default/pod/web"),
        (3, ChangeType.ADDED, "default/podpatch/web"),
        (4, ChangeType.DELETED, "default/pod/web"),
    ]
    modified, deleted = changes[1], changes[3]
    assert modified.previous["status"]["phase"] == "Pending"
    assert modified.object["status"]["phase"] == "Running"
    assert modified.object["metadata"]["resourceVersion"] == "2"
    assert deleted.object["metadata"]["resourceVersion"] == "4"  # as Kubernetes shows deletes
    assert modified.served is not None and changes[2].served is None
    assert store.feed.since(3) == [deleted]
    assert store.feed.since(4) == []


async def test_feed_wait_wakes_on_a_write_and_times_out(store: MetaStore) -> None:
    assert not await store.feed.wait(0, timeout=0.01)
    waiter = asyncio.create_task(store.feed.wait(0, timeout=WAIT))
    await asyncio.sleep(0)
    await store.upsert("default/configmap/c", configmap("c"))
    assert await waiter


async def test_feed_is_bounded_and_old_revisions_expire(tmp_path: Path) -> None:
    async with await MetaStore.open(tmp_path / "db", feed_size=3) as store:
        for i in range(6):
            await store.upsert(f"default/configmap/c{i}", configmap(f"c{i}"))
        assert [c.revision for c in store.feed.since(3)] == [4, 5, 6]
        with pytest.raises(RevisionExpired):
            store.feed.since(2)


async def test_pod_patch_shows_status_in_the_served_pod_only(store: MetaStore) -> None:
    await store.upsert("default/pod/web", pod("web", uid="u1", phase="Pending"))
    text = '{"metadata":{"uid":"u1"},"status":{"phase":"Running","podIP":"10.0.0.9"}}'
    await store.save_pod_patch("default/podpatch/web", text, uid="u1",
                               status={"phase": "Running", "podIP": "10.0.0.9",
                                       "$setElementOrder/conditions": []})
    assert await store.get("default/podpatch/web") == {
        "metadata": {"uid": "u1"}, "status": {"phase": "Running", "podIP": "10.0.0.9"}}
    assert (await store.get("default/pod/web"))["status"] == {"phase": "Pending"}
    served, _ = await store.get_object("pods", "default", "web")
    assert served["status"] == {"phase": "Running", "podIP": "10.0.0.9"}

    await store.save_pod_patch("default/podpatch/web", '{"status":{"phase":"Failed"}}',
                               uid="another-uid", status={"phase": "Failed"})
    served, _ = await store.get_object("pods", "default", "web")
    assert served["status"]["phase"] == "Running"


async def test_reads_on_the_writer_thread_for_memory_databases() -> None:
    async with await MetaStore.open(":memory:") as store:
        await store.upsert("default/configmap/c", configmap("c", k="v"))
        assert (await store.get("default/configmap/c"))["data"] == {"k": "v"}
        items, rev = await store.list_objects("configmaps", "default")
        assert (len(items), rev) == (1, 1)


async def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = await MetaStore.open(tmp_path / "db")
    pending = store.upsert("default/configmap/c", configmap("c"))
    task = asyncio.ensure_future(pending)
    await asyncio.sleep(0)
    await store.close()
    assert await task == 1  # queued before close: finished, not dropped
    with pytest.raises(StoreClosedError):
        await store.get("default/configmap/c")
    with pytest.raises(StoreClosedError):
        await store.upsert("default/configmap/d", configmap("d"))
