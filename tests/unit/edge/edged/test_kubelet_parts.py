"""Edged's kubelet parts in fake time: the crash-loop schedule, init containers, probes,
events, hold-upgrade, refusals, the image manager and the volume manager."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest

from pykubeedge.core.message import new_message
from pykubeedge.edge.edged import ContainerScript, FakeRuntime
from pykubeedge.edge.edged.containers import container_resources, refusal, security_context
from pykubeedge.edge.edged.events import EventRecorder
from pykubeedge.edge.edged.images import credentials_for, keyring, pull_policy, repository
from pykubeedge.edge.edged.podworker import _go_duration
from pykubeedge.edge.edged.volumemanager import (
    File,
    VolumeError,
    check_host_path,
    write_atomic,
)
from tests.unit.edge.edged.harness import (
    FakeMetaManager,
    FakeTime,
    make_edged,
    make_pod,
    pod_message,
    running,
)


def _restarts(meta: FakeMetaManager, name: str) -> int:
    statuses = meta.last_status(name)["containerStatuses"]
    return int(statuses[0]["restartCount"])


async def test_crash_loop_schedule_is_kubelets_in_fake_time() -> None:
    """First crash: at once; then 10 s, 20 s, 40 s, 80 s, 160 s, 300 s, 300 s; after 10 min
    of running the back-off is reset."""
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock, scripts={"app": ContainerScript(exit_code=1,
                                                                         exit_after_ms=100)})
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        await hive.send("edged", pod_message("insert", make_pod("crash")))
        starts: list[float] = []
        seen = 0
        for _ in range(2500):
            await t.advance(0.5)
            if runtime.containers_started != seen:
                seen = runtime.containers_started
                starts.append(t.now)
            if len(starts) >= 9:
                break
        gaps = [round(b - a) for a, b in itertools.pairwise(starts)]
        # the first crash restarts at once, then the window doubles from the exit
        assert gaps == [0, 10, 20, 40, 80, 160, 300, 300], gaps
        waiting = meta.last_status("crash")["containerStatuses"][0]
        assert waiting["restartCount"] == 8
        assert next(e["message"] for e in meta.events() if e["reason"] == "BackOff").startswith(
            "Back-off restarting failed container app in pod crash_default(uid-crash)")


def test_go_durations_in_back_off_messages() -> None:
    assert [_go_duration(s) for s in (10, 20, 40, 80, 160, 300)] == [
        "10s", "20s", "40s", "1m20s", "2m40s", "5m0s"]


async def test_configurable_backoff_base() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock, scripts={"app": ContainerScript(exit_code=1,
                                                                         exit_after_ms=100)})
    edged = make_edged(t, runtime=runtime, crash_backoff_initial=1.0, crash_backoff_cap=4.0)
    async with running(edged, meta) as hive:
        await hive.send("edged", pod_message("insert", make_pod("fast")))
        await t.advance(30)
        assert runtime.containers_started >= 8  # 1 s, 2 s, 4 s, 4 s ...


async def test_init_containers_run_one_at_a_time_then_the_app() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    slow = ContainerScript(exit_after_ms=2000)
    runtime = FakeRuntime(clock=t.clock, scripts={"first": slow, "second": slow})
    pod = make_pod("init", initContainers=[{"name": "first", "image": "busybox:1.35"},
                                           {"name": "second", "image": "busybox:1.35"}])
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        await hive.send("edged", pod_message("insert", pod))
        await t.advance(1)
        status = meta.last_status("init")
        assert status["phase"] == "Pending"
        inits = {s["name"]: s for s in status["initContainerStatuses"]}
        assert "running" in inits["first"]["state"]
        assert inits["second"]["state"] == {"waiting": {"reason": "PodInitializing"}}
        assert status["containerStatuses"][0]["state"] == {
            "waiting": {"reason": "PodInitializing"}}
        initialized = next(c for c in status["conditions"] if c["type"] == "Initialized")
        assert initialized["reason"] == "ContainersNotInitialized"
        await t.advance(2.5)
        inits = {s["name"]: s for s in meta.last_status("init")["initContainerStatuses"]}
        assert inits["first"]["state"]["terminated"]["exitCode"] == 0
        assert "running" in inits["second"]["state"]
        await t.advance(3)
        status = meta.last_status("init")
        assert status["phase"] == "Running"
        assert "running" in status["containerStatuses"][0]["state"]
        assert [s["ready"] for s in status["initContainerStatuses"]] == [True, True]


async def test_a_sidecar_keeps_running_beside_the_app() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock)
    pod = make_pod("sidecar", initContainers=[{"name": "proxy", "image": "busybox:1.35",
                                               "restartPolicy": "Always"}])
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        await hive.send("edged", pod_message("insert", pod))
        await t.advance(2)
        status = meta.last_status("sidecar")
        assert status["phase"] == "Running"
        [proxy] = status["initContainerStatuses"]
        assert "running" in proxy["state"] and proxy["started"] is True
        ready = next(c for c in status["conditions"] if c["type"] == "ContainersReady")
        assert ready["status"] == "True"


async def test_liveness_failure_kills_and_restarts_with_events() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock, scripts={"app": ContainerScript(
        exec_exit_code=1, exec_output="unhealthy")})
    pod = make_pod("live", containers=[{
        "name": "app", "image": "busybox:1.35",
        "livenessProbe": {"exec": {"command": ["check"]}, "periodSeconds": 1,
                          "failureThreshold": 2}}])
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        await hive.send("edged", pod_message("insert", pod))
        await t.advance(4)
        assert runtime.containers_started >= 2
        reasons = [(e["reason"], e["message"]) for e in meta.events()]
        assert ("Unhealthy", "Liveness probe failed: unhealthy") in reasons
        assert ("Killing", "Container app failed liveness probe, will be restarted") in reasons
        assert runtime.execs[0][1] == ("check",)


async def test_readiness_gates_the_ready_condition() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock, scripts={"app": ContainerScript(exec_exit_code=1)})
    pod = make_pod("ready", containers=[{
        "name": "app", "image": "busybox:1.35",
        "readinessProbe": {"exec": {"command": ["ready"]}, "periodSeconds": 1}}])
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        await hive.send("edged", pod_message("insert", pod))
        await t.advance(3)
        status = meta.last_status("ready")
        assert status["phase"] == "Running"
        assert status["containerStatuses"][0]["ready"] is False
        runtime.scripts["app"] = ContainerScript(exec_exit_code=0)
        await t.advance(2)
        status = meta.last_status("ready")
        assert status["containerStatuses"][0]["ready"] is True
        assert next(c for c in status["conditions"] if c["type"] == "Ready")["status"] == "True"


async def test_active_deadline_fails_the_pod() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    async with running(make_edged(t), meta) as hive:
        await hive.send("edged", pod_message("insert", make_pod("deadline",
                                                                activeDeadlineSeconds=5)))
        await t.advance(7)
        status = meta.last_status("deadline")
        assert (status["phase"], status["reason"]) == ("Failed", "DeadlineExceeded")
        assert any(e["reason"] == "DeadlineExceeded" for e in meta.events())


async def test_held_pod_waits_for_unhold() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock)
    pod = make_pod("held")
    pod["metadata"]["annotations"] = {"edge.kubeedge.io/hold-upgrade": "true"}
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        await hive.send("edged", pod_message("update", pod))
        await t.advance(1)
        assert runtime.sandboxes_created == 0
        [patch] = meta.pod_patches("held")
        [condition] = patch["status"]["conditions"]
        assert (condition["type"], condition["reason"]) == ("HeldUpgrade", "HoldUpgradeEnabled")
        await hive.send("edged", new_message(source="metamanager", group="",
                                             resource="default/pod/held",
                                             operation="unhold-upgrade"))
        await t.advance(1)
        assert runtime.sandboxes_created == 1
        assert meta.last_status("held")["phase"] == "Running"


async def test_unsupported_volumes_and_fields_are_refused_with_a_reason() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock)
    pod = make_pod("pvc", volumes=[{"name": "data", "persistentVolumeClaim": {
        "claimName": "c"}}])
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        await hive.send("edged", pod_message("insert", pod))
        await t.advance(1)
        status = meta.last_status("pvc")
        assert status["phase"] == "Failed"
        assert status["reason"] == "UnsupportedPodSpec"
        assert "persistentVolumeClaim volumes are not supported" in status["message"]
        assert runtime.sandboxes_created == 0
        assert any(e["reason"] == "FailedMount" for e in meta.events())
    assert "hostUsers" in refusal({"spec": {"hostUsers": False, "containers": []}})
    assert refusal({"spec": {"containers": [{"name": "c", "image": "i"}],
                             "volumes": [{"name": "v", "emptyDir": {}}]}}) == ""


def test_event_correlator_dedups_and_rate_limits() -> None:
    sent: list[tuple[str, str, Any]] = []
    now = [1000.0]
    recorder = EventRecorder(lambda *a: None, node_name="n", clock=lambda: now[0])  # type: ignore[arg-type,return-value]
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}}
    for _ in range(3):
        recorder.pod(pod, "Normal", "Pulled", "same")
    while not recorder._queue.empty():
        sent.append(recorder._queue.get_nowait())
    assert [op for op, _, _ in sent] == ["insert", "patch", "patch"]
    assert sent[2][2]["event"]["count"] == 3
    assert json.loads(sent[2][2]["patchData"])["count"] == 3
    for i in range(40):
        recorder.pod(pod, "Normal", "Started", f"m{i}")
    assert recorder.dropped > 0  # the spam filter: 25 per object, then one per 5 min
    combined = [e["message"] for e in recorder.recorded if e["reason"] == "Started"]
    assert any(m.startswith("(combined from similar events): ") for m in combined)


# -- pure parts ---------------------------------------------------------------------------------


def test_pull_policy_and_credentials() -> None:
    assert pull_policy({"image": "busybox"}) == "Always"
    assert pull_policy({"image": "busybox:1.35"}) == "IfNotPresent"
    assert pull_policy({"image": "a@sha256:00"}) == "IfNotPresent"
    assert repository("busybox") == "docker.io/library/busybox"
    config = json.dumps({"auths": {"http://127.0.0.1:5000/v2/": {
        "auth": base64.b64encode(b"u:p").decode()}}})
    secret = {"type": "kubernetes.io/dockerconfigjson",
              "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()}}
    creds = keyring([secret])
    [auth] = credentials_for("127.0.0.1:5000/team/app:1", creds)
    assert (auth.username, auth.password) == ("u", "p")
    assert credentials_for("127.0.0.1:5001/team/app:1", creds) == []


def test_resources_and_security_context_to_cri() -> None:
    c = {"name": "c", "resources": {"requests": {"cpu": "100m", "memory": "32Mi"},
                                    "limits": {"cpu": "2", "memory": "128Mi"}}}
    r = container_resources({"spec": {"containers": [c]}}, c, node_memory=1 << 30)
    assert (r.cpu_shares, r.cpu_quota, r.memory_limit) == (102, 200000, 128 << 20)
    assert 3 <= r.oom_score_adj <= 999
    s = security_context({"spec": {}}, {"securityContext": {
        "privileged": True, "capabilities": {"add": ["NET_ADMIN"]},
        "allowPrivilegeEscalation": False}})
    assert s.privileged and s.add_capabilities == ("NET_ADMIN",) and s.no_new_privs


def test_atomic_writer_swaps_the_data_dir(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    assert write_atomic(target, {"a": File(b"1"), "d/b": File(b"2", 0o600)})
    first = os.readlink(target / "..data")
    assert (target / "a").read_text() == "1"
    assert os.readlink(target / "a") == "..data/a"
    assert oct((target / "d" / "b").stat().st_mode & 0o777) == "0o600"
    assert not write_atomic(target, {"a": File(b"1"), "d/b": File(b"2", 0o600)})
    assert write_atomic(target, {"a": File(b"changed")})
    assert os.readlink(target / "..data") != first
    assert (target / "a").read_text() == "changed"
    assert not (target / "d").exists()
    assert not (target / first).exists()


def test_host_path_type_checks(tmp_path: Path) -> None:
    check_host_path(str(tmp_path / "new"), "DirectoryOrCreate")
    assert (tmp_path / "new").is_dir()
    check_host_path(str(tmp_path / "f"), "FileOrCreate")
    with pytest.raises(VolumeError, match="is not a directory"):
        check_host_path(str(tmp_path / "f"), "Directory")
    with pytest.raises(VolumeError, match="is not a socket file"):
        check_host_path(str(tmp_path / "f"), "Socket")
    with pytest.raises(VolumeError, match="must not contain"):
        check_host_path("/tmp/../etc", "")


async def test_crash_backoff_resets_after_ten_minutes_of_running() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock, scripts={"app": ContainerScript(exit_code=1,
                                                                         exit_after_ms=100)})
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        await hive.send("edged", pod_message("insert", make_pod("reset")))
        await t.advance(40)  # restarts at 0, 10, 30 s: the window is 40 s now
        assert runtime.containers_started == 4
        runtime.scripts["app"] = ContainerScript(exit_code=1, exit_after_ms=11 * 60 * 1000)
        await t.advance(41)  # the next instance starts, then runs 11 minutes
        started = runtime.containers_started
        await t.advance(11 * 60 + 1)  # it exits: ran > 10 min, so it restarts at once
        assert runtime.containers_started == started + 1


async def test_an_empty_dir_over_its_size_limit_evicts_the_pod(tmp_path: Path) -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock)
    pod = make_pod("big", volumes=[{"name": "scratch", "emptyDir": {"sizeLimit": "1Ki"}}],
                   containers=[{"name": "app", "image": "busybox:1.35",
                                "volumeMounts": [{"name": "scratch", "mountPath": "/s"}]}])
    async def settled(check: Any) -> None:
        for _ in range(500):  # the volume work runs in threads: give them real time
            if check():
                return
            await t.advance(0.01)
            await asyncio.sleep(0.005)

    async with running(make_edged(t, runtime=runtime, pods_dir=str(tmp_path)), meta) as hive:
        await hive.send("edged", pod_message("insert", pod))
        await settled(lambda: meta.pod_patches("big"))
        assert meta.last_status("big")["phase"] == "Running"
        volume = tmp_path / "uid-big" / "volumes" / "kubernetes.io~empty-dir" / "scratch"
        (volume / "blob").write_bytes(b"x" * 64 * 1024)
        await t.advance(11)
        await settled(lambda: meta.last_status("big")["phase"] == "Failed")
        status = meta.last_status("big")
        assert (status["phase"], status["reason"]) == ("Failed", "Evicted")
        assert status["message"] == 'Usage of EmptyDir volume "scratch" exceeds the limit "1Ki". '


async def test_image_gc_frees_unused_images_only() -> None:
    from pykubeedge.edge.edged.images import ImageManager

    runtime = FakeRuntime()
    for image in ("used:1", "old:1", "older:1"):
        await runtime.pull_image(image)
    recorder = EventRecorder(lambda *a: None, node_name="n", clock=lambda: 0.0)  # type: ignore[arg-type,return-value]
    images = ImageManager(runtime, recorder, clock=lambda: 1000.0, high_threshold=0,
                          low_threshold=0, minimum_age=0)

    async def fs_info() -> tuple[str, int]:
        return "/", 0

    runtime.image_fs_info = fs_info  # type: ignore[method-assign]
    in_use = {runtime.images["used:1"].digests[0]}
    await images.garbage_collect(in_use)
    assert set(runtime.images) == {"used:1"}


async def test_an_in_place_resize_updates_the_cgroup_limits_without_a_restart() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock)
    pod = make_pod("resize", containers=[{"name": "app", "image": "busybox:1.35",
                                          "resources": {"limits": {"memory": "64Mi"}}}])
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        await hive.send("edged", pod_message("insert", pod))
        await t.advance(2)
        bigger = make_pod("resize", rv="2", containers=[{
            "name": "app", "image": "busybox:1.35", "resources": {"limits": {"memory": "128Mi"}}}])
        await hive.send("edged", pod_message("update", bigger))
        await t.advance(1)
        [sandbox] = await runtime.list_pods()
        [container] = sandbox.containers
        assert runtime.container_spec(container.id).resources.memory_limit == 128 << 20
        assert runtime.containers_started == 1
