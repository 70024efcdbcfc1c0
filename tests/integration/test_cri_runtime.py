"""CRIRuntime against a real containerd: a private one started for this module, with images
made from /bin/busybox (no registry). Pods really run; everything is removed through CRI
before containerd stops, and nothing of ours (containers, shims, mounts) is left after.

Needs the Debian packages containerd, runc, containernetworking-plugins and busybox-static
(``scripts/setup.sh`` installs them) and root. Missing ones fail these tests; they never skip.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pykubeedge.devcluster.containerd import PrivateContainerd
from pykubeedge.devcluster.localimages import BUSYBOX_IMAGES, PAUSE_IMAGE, build_local_images
from pykubeedge.edge.edged import ContainerSpec, ContainerState, Edged, HostInfo, SandboxState
from pykubeedge.edge.edged.cri import CRIRuntime
from pykubeedge.edge.edged.runtime import Mount, PodSandboxStatus, SandboxConfig
from pykubeedge.edge.edged.volumes import pod_log_dir
from tests.conftest import eventually
from tests.unit.edge.edged.harness import (
    NODE,
    FakeMetaManager,
    host_info,
    make_pod,
    pod_message,
    running,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BUSYBOX = "busybox"  # as a pod spec says it: docker.io/library/busybox:latest, made locally
CRI_LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d) (stdout|stderr) [FP] (.*)$")


@pytest.fixture(scope="module")
async def containerd() -> AsyncIterator[PrivateContainerd]:
    """A private containerd with the busybox and pause images imported."""
    for tool in ("containerd", "ctr", "runc", "containerd-shim-runc-v2"):
        assert shutil.which(tool), f"{tool} is not installed (scripts/setup.sh installs it)"
    base = Path(tempfile.mkdtemp(prefix="pke-cri-", dir="/tmp"))  # short: a unix socket path
    ctd = PrivateContainerd(base)
    try:
        await ctd.start()
        archive = base / "images.tar"
        await build_local_images(archive)
        await ctd.import_images(archive)
        yield ctd
    finally:
        cleaned = await ctd.stop()
        shutil.rmtree(base, ignore_errors=True)
    assert not cleaned, f"left behind after the pods were removed through CRI: {cleaned}"


@pytest.fixture
async def runtime(containerd: PrivateContainerd) -> AsyncIterator[CRIRuntime]:
    """A CRIRuntime with its own pod and log directories; removes what a test left."""
    base = containerd.base / f"t-{uuid.uuid4().hex[:8]}"
    rt = CRIRuntime(containerd.endpoint, pods_dir=base / "pods", pod_logs_dir=base / "logs",
                    timeout=60, query_timeout=10)
    try:
        yield rt
    finally:
        await containerd.remove_all_pods()
        await rt.close()


def sandbox_config(name: str, **changes: Any) -> SandboxConfig:
    params: dict[str, Any] = {"uid": str(uuid.uuid4()), "name": name, "namespace": "default",
                              "host_network": True, "hostname": name}
    params.update(changes)
    return SandboxConfig(**params)


async def wait_state(rt: CRIRuntime, uid: str, container_id: str, state: ContainerState,
                     timeout: float = 30.0) -> PodSandboxStatus:
    """The pod once ``container_id`` is in ``state``."""
    found: list[PodSandboxStatus] = []

    async def reached() -> bool:
        found[:] = await rt.list_pods(uid)
        return any(c.id == container_id and c.state is state
                   for p in found for c in p.containers)

    await eventually(reached, timeout=timeout, what=f"container {container_id[:12]} {state}")
    return found[0]


def log_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def test_images_are_local_and_the_runtime_is_ready(containerd: PrivateContainerd,
                                                         runtime: CRIRuntime) -> None:
    version = await runtime.version()
    assert version.name == "containerd"
    assert str(version).startswith("containerd://1.")
    await runtime.status()  # RuntimeReady and NetworkReady (the loopback CNI config)
    images = await runtime.image_names()
    for name in (*BUSYBOX_IMAGES, PAUSE_IMAGE):
        assert name in images
    present = await runtime.image_status(BUSYBOX)
    assert present is not None and present.id.startswith("sha256:")


async def test_container_runs_to_completion_and_logs_in_cri_format(runtime: CRIRuntime) -> None:
    config = sandbox_config("hello")
    sandbox = await runtime.run_pod_sandbox(config)
    assert sandbox.state is SandboxState.READY
    assert sandbox.uid == config.uid
    assert sandbox.ip  # host network: the node's address
    spec = ContainerSpec(name="say", image=BUSYBOX,
                         command=("sh", "-c", 'echo "hello from $WHO"; echo oops >&2; exit 0'),
                         env={"WHO": "busybox"})
    container_id = await runtime.start_container(sandbox.id, spec)
    assert re.fullmatch(r"[0-9a-f]{64}", container_id)

    pod = await wait_state(runtime, config.uid, container_id, ContainerState.EXITED)
    [container] = pod.containers
    assert container.exit_code == 0
    assert container.reason == "Completed"
    assert container.image == BUSYBOX
    assert container.image_ref.startswith("sha256:")
    # containerd may stamp started_at just after a quick container has already exited
    assert 0 < container.created_at <= container.started_at
    assert container.created_at <= container.finished_at
    assert container.finished_at <= time.time() + 1

    log = pod_log_dir(runtime.pod_logs_dir, "default", "hello", config.uid) / "say" / "0.log"
    lines = log_lines(log)
    parsed = [CRI_LOG_LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert ("stdout", "hello from busybox") in [(m.group(3), m.group(4)) for m in parsed if m]
    assert ("stderr", "oops") in [(m.group(3), m.group(4)) for m in parsed if m]

    await runtime.remove_container(container_id)
    await runtime.stop_pod_sandbox(sandbox.id)
    await runtime.remove_pod_sandbox(sandbox.id)
    assert await runtime.list_pods(config.uid) == []


async def test_long_running_container_is_stopped_then_removed(runtime: CRIRuntime) -> None:
    config = sandbox_config("sleeper", volumes={"cfg": {"key": b"from-configmap\n"}})
    sandbox = await runtime.run_pod_sandbox(config)
    spec = ContainerSpec(
        name="sleep", image=BUSYBOX, mounts=(Mount("cfg", "/cfg"),),
        command=("sh", "-c", "cat /cfg/key; touch /cfg/x || echo read-only; exec sleep 3600"))
    container_id = await runtime.start_container(sandbox.id, spec)
    await wait_state(runtime, config.uid, container_id, ContainerState.RUNNING)
    log = pod_log_dir(runtime.pod_logs_dir, "default", "sleeper", config.uid) / "sleep" / "0.log"
    await eventually(lambda: len(log_lines(log)) >= 3, what="the container's output")
    # stdout and stderr are copied separately: their lines may interleave either way.
    texts = [line.split(" ", 3)[3] for line in log_lines(log)]
    assert "from-configmap" in texts
    assert any(line.endswith(" read-only") for line in log_lines(log))

    started = time.monotonic()
    await runtime.stop_container(container_id, 1)  # PID 1 ignores SIGTERM: killed after 1 s
    assert time.monotonic() - started < 20
    pod = await wait_state(runtime, config.uid, container_id, ContainerState.EXITED)
    assert pod.containers[0].exit_code == 137

    await runtime.remove_container(container_id)
    await runtime.remove_container(container_id)  # idempotent
    [pod] = await runtime.list_pods(config.uid)
    assert pod.containers == ()
    await runtime.stop_pod_sandbox(sandbox.id)
    [pod] = await runtime.list_pods(config.uid)
    assert pod.state is SandboxState.NOT_READY
    await runtime.remove_pod_sandbox(sandbox.id)
    await runtime.remove_pod_sandbox(sandbox.id)  # idempotent
    assert await runtime.list_pods(config.uid) == []
    assert not (runtime.pods_dir / config.uid).exists()


async def test_a_command_that_does_not_exist_fails_to_start(runtime: CRIRuntime) -> None:
    config = sandbox_config("broken")
    sandbox = await runtime.run_pod_sandbox(config)
    with pytest.raises(Exception, match="no-such-binary"):
        await runtime.start_container(
            sandbox.id, ContainerSpec(name="c", image=BUSYBOX, command=("/no-such-binary",)))
    [pod] = await runtime.list_pods(config.uid)
    assert pod.containers == ()  # the failed container was removed


async def test_bridge_network_gives_pods_their_own_address() -> None:
    base = Path(tempfile.mkdtemp(prefix="pke-crib-", dir="/tmp"))
    ctd = PrivateContainerd(base, network="bridge", bridge="pketest0",
                            pod_subnet="10.254.77.0/24")
    try:
        await ctd.start()
        await build_local_images(base / "images.tar")
        await ctd.import_images(base / "images.tar")
        async with ctd.runtime(pods_dir=base / "pods", pod_logs_dir=base / "logs") as rt:
            config = sandbox_config("netpod", host_network=False)
            sandbox = await rt.run_pod_sandbox(config)
            assert sandbox.ip.startswith("10.254.77.")
            container_id = await rt.start_container(sandbox.id, ContainerSpec(
                name="c", image=BUSYBOX, command=("sh", "-c", "hostname; ip -4 addr show eth0")))
            await wait_state(rt, config.uid, container_id, ContainerState.EXITED)
            log = pod_log_dir(rt.pod_logs_dir, "default", "netpod", config.uid) / "c" / "0.log"
            text = "\n".join(log_lines(log))
            assert " stdout F netpod" in text  # its own UTS namespace, named after the pod
            assert f"inet {sandbox.ip}/24" in text
    finally:
        cleaned = await ctd.stop()
        shutil.rmtree(base, ignore_errors=True)
    assert not cleaned
    assert not await asyncio.to_thread(Path("/sys/class/net/pketest0").exists)


async def test_stop_after_containerd_was_killed_cleans_up_its_pods() -> None:
    """Shims and containers outlive a killed containerd; stop() sweeps them by our socket."""
    base = Path(tempfile.mkdtemp(prefix="pke-crik-", dir="/tmp"))
    ctd = PrivateContainerd(base)
    try:
        await ctd.start()
        await build_local_images(base / "images.tar")
        await ctd.import_images(base / "images.tar")
        async with ctd.runtime(pods_dir=base / "pods", pod_logs_dir=base / "logs") as rt:
            sandbox = await rt.run_pod_sandbox(sandbox_config("orphan"))
            await rt.start_container(sandbox.id, ContainerSpec(
                name="c", image=BUSYBOX, command=("sleep", "3600")))
        [shim] = ctd.shim_pids()
        assert ctd.process is not None
        ctd.process.kill()
        await ctd.process.wait()
        assert ctd.shim_pids() == [shim]  # the shim outlived containerd
        cleaned = await ctd.stop()
    finally:
        await ctd.stop()
        shutil.rmtree(base, ignore_errors=True)
    assert f"killed shim pid {shim}" in cleaned
    assert sum(line.startswith("killed container ") for line in cleaned) == 2  # pause + c
    assert any(line.startswith("unmounted ") for line in cleaned)
    assert ctd.shim_pids() == []
    assert not await asyncio.to_thread(ctd.shim_socket(sandbox.id).exists)


# -- Edged on containerd ------------------------------------------------------------------------


def edged_for(rt: CRIRuntime) -> Edged:
    host = host_info()

    async def probe() -> HostInfo:
        return host

    return Edged(node_name=NODE, runtime=rt, host_probe=probe, relist_period=0.2,
                 retry_interval=1.0, request_timeout=5.0, pod_status_sync_period=1.0)


async def test_edged_runs_a_pod_with_a_configmap_volume_on_containerd(
        runtime: CRIRuntime) -> None:
    meta = FakeMetaManager()
    meta.objects["default/configmap/app-config"] = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "app-config", "namespace": "default", "uid": "cm-1"},
        "data": {"key": "value-from-configmap", "greeting": "hello-env"},
    }
    uid = str(uuid.uuid4())
    pod = make_pod(
        "cri-web", uid=uid, hostNetwork=True, terminationGracePeriodSeconds=1,
        volumes=[{"name": "cfg", "configMap": {"name": "app-config"}}],
        containers=[{
            "name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",  # local image
            "command": ["sh", "-c", "cat /cfg/key; echo; echo $GREETING; exec sleep 3600"],
            "env": [{"name": "GREETING", "valueFrom": {
                "configMapKeyRef": {"name": "app-config", "key": "greeting"}}}],
            "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}],
        }],
    )
    async with running(edged_for(runtime), meta) as hive:
        await hive.send("edged", pod_message("insert", pod))

        def running_status() -> dict[str, Any] | None:
            patches = meta.pod_patches("cri-web")
            status = patches[-1]["status"] if patches else None
            return status if status and status.get("phase") == "Running" else None

        await eventually(lambda: running_status() is not None, what="pod Running")
        status = running_status()
        assert status is not None
        [container] = status["containerStatuses"]
        assert container["ready"] is True
        assert "running" in container["state"]
        assert re.fullmatch(r"containerd://[0-9a-f]{64}", container["containerID"])
        assert container["imageID"].startswith("sha256:")
        [sandbox] = await runtime.list_pods(uid)
        assert [c.id for c in sandbox.containers] == [
            container["containerID"].removeprefix("containerd://")]

        log = pod_log_dir(runtime.pod_logs_dir, "default", "cri-web", uid) / "app" / "0.log"
        await eventually(lambda: len(log_lines(log)) >= 2, what="the container's output")
        assert [line.split(" ", 3)[3] for line in log_lines(log)[:2]] == [
            "value-from-configmap", "hello-env"]

        await hive.send("edged", pod_message("delete", pod))

        async def gone() -> bool:
            return await runtime.list_pods(uid) == [] and not (runtime.pods_dir / uid).exists()

        await eventually(gone, what="the pod's sandbox and volume files removed")
        await asyncio.sleep(0.5)  # a relist later: nothing came back
        assert await runtime.list_pods(uid) == []
