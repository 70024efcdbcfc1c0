"""Edge autonomy: a restarted Edged runs the stored pods again, adopting what still runs."""

from __future__ import annotations

from pykubeedge.edge.edged import FakeRuntime
from tests.unit.edge.edged.harness import (
    FakeMetaManager,
    FakeTime,
    make_edged,
    make_pod,
    pod_message,
    running,
)


async def test_restart_adopts_running_pods_without_recreating_them() -> None:
    t = FakeTime()
    runtime = FakeRuntime(clock=t.clock)
    first_meta = FakeMetaManager()
    pod = make_pod("web", uid="uid-kept")
    async with running(make_edged(t, runtime=runtime), first_meta) as hive:
        await hive.send("edged", pod_message("insert", pod))
        await t.advance(1)
    [before] = await runtime.list_pods()
    container_id = before.containers[0].id

    # edgecore restarts while the cloud is unreachable: MetaManager has the pod in SQLite
    meta = FakeMetaManager(online=False)
    meta.pods["default/pod/web"] = pod
    async with running(make_edged(t, runtime=runtime), meta):
        await t.advance(2)
        [query] = meta.requests("query", "pod")
        assert query.resource == "null/pod"
        [after] = await runtime.list_pods()
        assert after.id == before.id
        assert [c.id for c in after.containers] == [container_id]
        assert runtime.sandboxes_created == 1
        assert runtime.containers_started == 1
        patch = meta.pod_patches("web")[-1]
        assert patch["metadata"]["uid"] == "uid-kept"
        assert patch["status"]["phase"] == "Running"
        assert patch["status"]["containerStatuses"][0]["containerID"] == f"fake://{container_id}"


async def test_restart_on_a_fresh_runtime_starts_the_stored_pods_with_the_same_uid() -> None:
    t = FakeTime()
    runtime = FakeRuntime(clock=t.clock)
    meta = FakeMetaManager(online=False)
    for name in ("a", "b"):
        meta.pods[f"default/pod/{name}"] = make_pod(name, uid=f"stored-{name}")
    meta.pods["default/pod/done"] = make_pod("done", uid="stored-done")
    meta.pods["default/pod/done"]["status"]["phase"] = "Succeeded"
    meta.pods["default/pod/other"] = make_pod("other", node="edge-2")
    async with running(make_edged(t, runtime=runtime), meta):
        await t.advance(1)
        uids = sorted(s.uid for s in await runtime.list_pods())
        assert uids == ["stored-a", "stored-b"]  # not the Succeeded one, not another node's
        assert meta.pod_patches("a")[-1]["metadata"]["uid"] == "stored-a"
        assert meta.last_status("b")["phase"] == "Running"


async def test_pods_are_restarted_after_a_reboot_with_a_restart_count() -> None:
    t = FakeTime()
    runtime = FakeRuntime(clock=t.clock)
    pod = make_pod("web")
    meta = FakeMetaManager()
    meta.pods["default/pod/web"] = pod
    async with running(make_edged(t, runtime=runtime), meta):
        await t.advance(1)
    runtime.reboot()
    meta = FakeMetaManager(online=False)
    meta.pods["default/pod/web"] = pod
    async with running(make_edged(t, runtime=runtime), meta):
        await t.advance(1)
        status = meta.last_status("web")
        assert status["phase"] == "Running"
        [container] = status["containerStatuses"]
        assert container["restartCount"] == 1
        assert container["lastState"]["terminated"]["exitCode"] == 137
        assert runtime.sandboxes_created == 2


async def test_orphans_left_by_a_pod_deleted_while_down_are_removed() -> None:
    t = FakeTime()
    runtime = FakeRuntime(clock=t.clock)
    meta = FakeMetaManager()
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        await hive.send("edged", pod_message("insert", make_pod("gone")))
        await hive.send("edged", pod_message("insert", make_pod("kept")))
        await t.advance(1)
    meta = FakeMetaManager()
    meta.pods["default/pod/kept"] = make_pod("kept")
    async with running(make_edged(t, runtime=runtime), meta):
        await t.advance(2)
        assert [s.uid for s in await runtime.list_pods()] == ["uid-kept"]


async def test_the_stored_pod_query_is_retried_until_metamanager_answers() -> None:
    t = FakeTime()
    runtime = FakeRuntime(clock=t.clock)
    meta = FakeMetaManager(fail_pod_query=2)
    meta.pods["default/pod/web"] = make_pod("web")
    async with running(make_edged(t, runtime=runtime), meta):
        assert runtime.sandboxes_created == 0
        await t.advance(5)
        assert len(meta.requests("query", "pod")) == 3
        assert runtime.sandboxes_created == 1


async def test_a_stale_stored_copy_does_not_override_a_newer_cloud_update() -> None:
    t = FakeTime()
    runtime = FakeRuntime(clock=t.clock)
    meta = FakeMetaManager(fail_pod_query=1)
    meta.pods["default/pod/web"] = make_pod("web", rv="3")
    edged = make_edged(t, runtime=runtime)
    async with running(edged, meta) as hive:
        newer = make_pod("web", rv="5", containers=[{"name": "app", "image": "nginx:2"}])
        await hive.send("edged", pod_message("update", newer))
        await t.advance(5)
        [sandbox] = await runtime.list_pods()
        running_images = [c.image for c in sandbox.containers if c.state == "running"]
        assert running_images == ["nginx:2"]
        assert edged.workers["uid-web"].pod["metadata"]["resourceVersion"] == "5"
