"""Edged's pod side: workers, status patches, restart policies, deletion, configmaps."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from pykubeedge.core.message import new_message
from pykubeedge.edge.edged import ContainerScript, FakeRuntime
from pykubeedge.edge.edged.timefmt import rfc3339
from tests.unit.edge.edged.harness import (
    FakeMetaManager,
    FakeTime,
    make_edged,
    make_pod,
    pod_message,
    running,
)


async def test_inserted_pod_runs_and_is_reported_running_once() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock)
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        await hive.send("edged", pod_message("insert", make_pod("web")))
        await t.advance(1)

        patches = meta.requests("patch", "podpatch")
        assert len(patches) == 1
        msg = patches[0]
        assert msg.resource == "default/podpatch/web"
        assert (msg.source, msg.group) == ("edged", "meta")
        assert isinstance(msg.content, str)
        patch = orjson.loads(msg.content)
        assert patch["metadata"] == {"uid": "uid-web"}
        status = patch["status"]
        assert status["phase"] == "Running"
        assert status["hostIP"] == "192.168.1.10"
        assert status["podIP"] == "10.88.0.2"
        assert status["startTime"] == rfc3339(t.now - 1)
        conditions = {c["type"]: c["status"] for c in status["conditions"]}
        for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready"):
            assert conditions[kind] == "True"
        [container] = status["containerStatuses"]
        assert container["name"] == "app"
        assert container["ready"] is True
        assert container["started"] is True
        assert container["restartCount"] == 0
        assert container["image"] == "nginx:1.27"
        assert container["imageID"].startswith("nginx@sha256:")
        assert container["containerID"].startswith("fake://")
        assert container["state"] == {"running": {"startedAt": rfc3339(t.now - 1)}}

        await t.advance(60)  # periodic sync: nothing changed, nothing sent
        assert len(meta.requests("patch", "podpatch")) == 1
        assert runtime.sandboxes_created == 1
        assert runtime.containers_started == 1


@pytest.mark.parametrize(
    ("policy", "exit_code", "phase", "restarts"),
    [
        ("Never", 0, "Succeeded", 0),
        ("Never", 3, "Failed", 0),
        ("OnFailure", 0, "Succeeded", 0),
        ("OnFailure", 3, "Running", 1),
        ("Always", 0, "Running", 1),
        ("Always", 3, "Running", 1),
    ],
)
async def test_container_exit_gives_the_phase_of_the_restart_policy(
    policy: str, exit_code: int, phase: str, restarts: int
) -> None:
    t, meta = FakeTime(), FakeMetaManager()
    script = ContainerScript(exit_code=exit_code, exit_after_ms=500)
    runtime = FakeRuntime(clock=t.clock, scripts={"job": script})
    pod = make_pod("batch", restart_policy=policy,
                   containers=[{"name": "job", "image": "busybox"}])
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        await hive.send("edged", pod_message("insert", pod))
        await t.advance(0.1)
        assert meta.last_status("batch")["phase"] == "Running"
        await t.advance(1)
        status = meta.last_status("batch")
        assert status["phase"] == phase
        [container] = status["containerStatuses"]
        assert container["restartCount"] == restarts
        if restarts:
            assert container["state"].keys() == {"running"}
            terminated = container["lastState"]["terminated"]
            assert terminated["exitCode"] == exit_code
            assert terminated["reason"] == ("Completed" if exit_code == 0 else "Error")
        else:
            terminated = container["state"]["terminated"]
            assert terminated["exitCode"] == exit_code
            assert terminated["finishedAt"] == rfc3339(t.now - 1 + 0.5)
            assert container["ready"] is False
            ready = next(c for c in status["conditions"] if c["type"] == "Ready")
            assert ready["status"] == "False"
            assert ready["reason"] == ("PodCompleted" if phase == "Succeeded"
                                       else "PodFailed")
        sent = len(meta.pod_patches("batch"))
        await t.advance(30)
        if not restarts:
            assert len(meta.pod_patches("batch")) == sent  # terminal: quiet
            assert runtime.containers_started == 1


async def test_crash_loop_backs_off_ten_seconds_then_twenty() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock,
                          scripts={"app": ContainerScript(exit_code=1, exit_after_ms=100)})
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        await hive.send("edged", pod_message("insert", make_pod("crash")))
        await t.advance(1.05)  # 1st exit: restarted at once (kubelet does the same)
        assert runtime.containers_started == 2
        await t.advance(1)  # 2nd exit: back-off 10 s
        status = meta.last_status("crash")
        [container] = status["containerStatuses"]
        assert container["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        assert "back-off 10s restarting failed container=app" in (
            container["state"]["waiting"]["message"]
        )
        assert container["lastState"]["terminated"]["exitCode"] == 1
        assert container["restartCount"] == 1
        assert status["phase"] == "Running"
        await t.advance(8)
        assert runtime.containers_started == 2
        await t.advance(2)
        assert runtime.containers_started == 3
        assert meta.last_status("crash")["containerStatuses"][0]["restartCount"] == 2
        await t.advance(15)  # 3rd exit, now back-off 20 s
        assert runtime.containers_started == 3
        await t.advance(10)
        assert runtime.containers_started == 4


async def test_delete_stops_the_pod_and_no_status_follows() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock)
    pod = make_pod("web")
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        await hive.send("edged", pod_message("insert", pod))
        await t.advance(1)
        assert len(await runtime.list_pods()) == 1
        sent = len(meta.requests("patch", "podpatch"))

        await hive.send("edged", pod_message("delete", pod))
        await t.advance(1)
        assert await runtime.list_pods() == []
        await t.advance(60)
        assert len(meta.requests("patch", "podpatch")) == sent
        assert meta.requests("delete", "pod") == []  # already gone from the API


async def test_graceful_deletion_stops_reports_final_status_and_confirms() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock)
    pod = make_pod("web")
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        await hive.send("edged", pod_message("insert", pod))
        await t.advance(1)

        deleting = make_pod("web", rv="2")
        deleting["metadata"]["deletionTimestamp"] = rfc3339(t.now)
        deleting["metadata"]["deletionGracePeriodSeconds"] = 30
        await hive.send("edged", pod_message("update", deleting))
        await t.advance(1)

        final = meta.last_status("web")
        assert final["phase"] == "Succeeded"
        assert final["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
        [delete] = meta.requests("delete", "pod")
        assert delete.resource == "default/pod/web"
        assert delete.content == {"gracePeriodSeconds": 0, "preconditions": {"uid": "uid-web"}}
        assert await runtime.list_pods() == []
        sent = len(meta.requests("patch", "podpatch"))
        await hive.send("edged", pod_message("delete", deleting))
        await t.advance(30)
        assert len(meta.requests("patch", "podpatch")) == sent


async def test_missing_configmap_keeps_the_pod_pending_until_it_arrives() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock)
    pod = make_pod(
        "cfg-user",
        containers=[{
            "name": "app",
            "image": "nginx",
            "env": [{"name": "MODE", "valueFrom": {
                "configMapKeyRef": {"name": "settings", "key": "mode"}}}],
            "volumeMounts": [{"name": "conf", "mountPath": "/etc/app"}],
        }],
        volumes=[{"name": "conf", "configMap": {"name": "settings"}}],
    )
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        await hive.send("edged", pod_message("insert", pod))
        await t.advance(1)
        status = meta.last_status("cfg-user")
        assert status["phase"] == "Pending"
        waiting = status["containerStatuses"][0]["state"]["waiting"]
        assert waiting == {"reason": "ContainerCreating"}  # kubelet: FailedMount, no message
        [event] = [e for e in meta.events() if e["reason"] == "FailedMount"][:1]
        assert event["message"] == (
            'MountVolume.SetUp failed for volume "conf" : configmap "settings" not found'
        )
        assert event["type"] == "Warning"
        assert event["involvedObject"]["uid"] == "uid-cfg-user"
        assert runtime.sandboxes_created == 0
        queries = len(meta.requests("query", "configmap"))
        assert queries >= 1
        assert meta.requests("query", "configmap")[0].resource == "default/configmap/settings"

        await t.advance(10)  # retried, still missing: no new status
        assert len(meta.requests("query", "configmap")) > queries
        assert len(meta.pod_patches("cfg-user")) == 1

        meta.objects["default/configmap/settings"] = {
            "metadata": {"name": "settings", "namespace": "default"},
            "data": {"mode": "fast", "app.conf": "x=1"},
        }
        await hive.send("edged", new_message(
            source="metamanager", group="edged", resource="default/configmap/settings",
            operation="insert", content=meta.objects["default/configmap/settings"]))
        await t.advance(0.5)  # woken by the configmap, not by the 10 s retry
        assert meta.last_status("cfg-user")["phase"] == "Running"
        [sandbox] = await runtime.list_pods()
        assert runtime.sandbox_config(sandbox.id).volumes == {
            "conf": {"mode": b"fast", "app.conf": b"x=1"}
        }
        spec = runtime.container_spec(sandbox.containers[0].id)
        assert spec.env["MODE"] == "fast"
        assert spec.mounts[0].path == "/etc/app"


async def test_secret_env_and_missing_key() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock)
    meta.objects["default/secret/creds"] = {
        "metadata": {"name": "creds"},
        "data": {"user": base64.b64encode(b"admin").decode()},
    }
    pod = make_pod("sec", containers=[{
        "name": "app", "image": "nginx",
        "env": [
            {"name": "USER", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "user"}}},
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "pass"}}},
        ],
    }])
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        await hive.send("edged", pod_message("insert", pod))
        await t.advance(1)
        waiting = meta.last_status("sec")["containerStatuses"][0]["state"]["waiting"]
        assert waiting == {
            "reason": "CreateContainerConfigError",
            "message": "couldn't find key pass in Secret default/creds",
        }
        meta.objects["default/secret/creds"]["data"]["pass"] = base64.b64encode(b"pw").decode()
        await t.advance(10)
        assert meta.last_status("sec")["phase"] == "Running"
        [sandbox] = await runtime.list_pods()
        env = runtime.container_spec(sandbox.containers[0].id).env
        assert (env["USER"], env["PASS"]) == ("admin", "pw")


async def test_image_pull_failure_backs_off_and_stays_pending() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(
        clock=t.clock,
        scripts={"ghost:1": ContainerScript(pull_failures=-1, pull_error="manifest unknown")},
    )
    pod = make_pod("ghost", containers=[{"name": "app", "image": "ghost:1"}])
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        await hive.send("edged", pod_message("insert", pod))
        await t.advance(0.5)
        status = meta.last_status("ghost")
        assert status["phase"] == "Pending"
        waiting = status["containerStatuses"][0]["state"]["waiting"]
        assert waiting["reason"] == "ErrImagePull"
        assert "manifest unknown" in waiting["message"]
        await t.advance(1)  # a relist wakes the worker inside the back-off
        waiting = meta.last_status("ghost")["containerStatuses"][0]["state"]["waiting"]
        assert waiting["reason"] in ("ImagePullBackOff", "ErrImagePull")
        assert runtime.containers_started == 0


async def test_image_pull_recovers() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock,
                          scripts={"flaky:1": ContainerScript(pull_failures=1)})
    pod = make_pod("flaky", containers=[{"name": "app", "image": "flaky:1"}])
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        await hive.send("edged", pod_message("insert", pod))
        await t.advance(0.5)
        assert meta.last_status("flaky")["phase"] == "Pending"
        await t.advance(10)
        assert meta.last_status("flaky")["phase"] == "Running"


async def test_pods_beyond_max_pods_are_rejected_as_out_of_pods() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock)
    async with running(make_edged(t, runtime=runtime, max_pods=1), meta) as hive:
        await hive.send("edged", pod_message("insert", make_pod("one")))
        await hive.send("edged", pod_message("insert", make_pod("two")))
        await t.advance(1)
        status = meta.last_status("two")
        assert status["phase"] == "Failed"
        assert status["reason"] == "OutOfpods"
        assert runtime.sandboxes_created == 1
        await hive.send("edged", pod_message("update", make_pod("two", rv="5")))
        await t.advance(1)
        assert len(meta.pod_patches("two")) == 1


async def test_a_refused_status_is_sent_again_by_the_periodic_sync() -> None:
    t, meta = FakeTime(), FakeMetaManager(refuse_podpatch=1)
    async with running(make_edged(t), meta) as hive:
        await hive.send("edged", pod_message("insert", make_pod("web")))
        await t.advance(0.5)
        assert len(meta.requests("patch", "podpatch")) == 1  # refused
        await t.advance(10)
        first, second = meta.pod_patches("web")
        assert first == second  # the same status, sent again
        assert second["status"]["phase"] == "Running"
        await t.advance(30)
        assert len(meta.requests("patch", "podpatch")) == 2


async def test_cloud_copy_disagreeing_with_the_reported_status_is_resent() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    async with running(make_edged(t), meta) as hive:
        await hive.send("edged", pod_message("insert", make_pod("web")))
        await t.advance(1)
        stale = make_pod("web", rv="7")  # the API still says Pending
        await hive.send("edged", pod_message("update", stale))
        await t.advance(1)
        assert len(meta.pod_patches("web")) == 2


async def test_same_name_new_uid_replaces_the_pod() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock)
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        await hive.send("edged", pod_message("insert", make_pod("web", uid="a")))
        await t.advance(1)
        await hive.send("edged", pod_message("insert", make_pod("web", uid="b", rv="9")))
        await t.advance(1)
        sandboxes = await runtime.list_pods()
        assert [s.uid for s in sandboxes] == ["b"]
        assert meta.pod_patches("web")[-1]["metadata"]["uid"] == "b"


class StopRecorder(FakeRuntime):
    """Records the grace period each container stop is given."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stops: list[float] = []

    async def stop_container(self, container_id: str, timeout: float) -> None:
        self.stops.append(timeout)
        await super().stop_container(container_id, timeout)


async def test_grace_periods_are_honoured() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = StopRecorder(clock=t.clock)
    graceful = make_pod("graceful", terminationGracePeriodSeconds=5)
    deleted = make_pod("deleted", terminationGracePeriodSeconds=5)
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        await hive.send("edged", pod_message("insert", graceful))
        await hive.send("edged", pod_message("insert", deleted))
        await t.advance(1)
        update = make_pod("graceful", rv="2", terminationGracePeriodSeconds=5)
        update["metadata"]["deletionTimestamp"] = rfc3339(t.now)
        update["metadata"]["deletionGracePeriodSeconds"] = 12
        await hive.send("edged", pod_message("update", update))
        await t.advance(1)
        assert runtime.stops == [12]
        await hive.send("edged", pod_message("delete", deleted))
        await t.advance(1)
        assert runtime.stops == [12, 5]


async def test_a_delete_for_another_uid_of_the_same_name_is_ignored() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock)
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        await hive.send("edged", pod_message("insert", make_pod("web", uid="new")))
        await t.advance(1)
        await hive.send("edged", pod_message("delete", make_pod("web", uid="old")))
        await t.advance(1)
        assert [s.uid for s in await runtime.list_pods()] == ["new"]
        await hive.send("edged", pod_message("delete", {"metadata": {}}, "default/pod/web"))
        await t.advance(1)
        assert await runtime.list_pods() == []
