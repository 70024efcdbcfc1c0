"""FakeRuntime: immediate Running, scripted exits and pull failures, bounds, determinism."""

from __future__ import annotations

import pytest

from pykubeedge.edge.edged import (
    ContainerScript,
    ContainerSpec,
    ContainerState,
    FakeRuntime,
    ImagePullError,
    RuntimeUnavailableError,
    SandboxConfig,
    SandboxState,
)
from pykubeedge.edge.edged.runtime import CapacityError, NotFoundError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _config(uid: str = "u1", **kw: object) -> SandboxConfig:
    return SandboxConfig(uid=uid, name=f"pod-{uid}", namespace="default", **kw)  # type: ignore[arg-type]


async def test_containers_run_at_once_and_scripted_ones_exit() -> None:
    clock = Clock()
    rt = FakeRuntime(clock=clock, scripts={"job": ContainerScript(exit_code=2, exit_after_ms=1500)})
    sandbox = await rt.run_pod_sandbox(_config())
    assert (sandbox.state, sandbox.ip) == (SandboxState.READY, "10.88.0.2")
    web = await rt.start_container(sandbox.id, ContainerSpec(name="web", image="nginx"))
    job = await rt.start_container(sandbox.id, ContainerSpec(name="job", image="busybox",
                                                             attempt=3))
    [pod] = await rt.list_pods()
    states = {c.name: c.state for c in pod.containers}
    assert states == {"web": ContainerState.RUNNING, "job": ContainerState.RUNNING}

    clock.now += 1.5
    [pod] = await rt.list_pods()
    by_name = {c.name: c for c in pod.containers}
    assert by_name["web"].state is ContainerState.RUNNING
    exited = by_name["job"]
    assert (exited.state, exited.exit_code, exited.reason) == (ContainerState.EXITED, 2, "Error")
    assert exited.finished_at == 1001.5
    assert exited.attempt == 3
    assert exited.id == job and by_name["web"].id == web


async def test_ids_are_deterministic() -> None:
    async def ids() -> list[str]:
        rt = FakeRuntime(clock=Clock())
        sandbox = await rt.run_pod_sandbox(_config())
        cid = await rt.start_container(sandbox.id, ContainerSpec(name="a", image="x"))
        return [sandbox.id, cid]

    assert await ids() == await ids()


async def test_stop_and_remove() -> None:
    rt = FakeRuntime(clock=Clock(), stop_exit_code=143)
    sandbox = await rt.run_pod_sandbox(_config())
    cid = await rt.start_container(sandbox.id, ContainerSpec(name="a", image="x"))
    await rt.stop_container(cid, timeout=30)
    [pod] = await rt.list_pods()
    assert (pod.containers[0].state, pod.containers[0].exit_code) == (ContainerState.EXITED, 143)
    await rt.stop_pod_sandbox(sandbox.id)
    [pod] = await rt.list_pods()
    assert pod.state is SandboxState.NOT_READY
    with pytest.raises(Exception, match="not ready"):
        await rt.start_container(sandbox.id, ContainerSpec(name="b", image="x"))
    await rt.remove_container(cid)
    await rt.remove_pod_sandbox(sandbox.id)
    await rt.remove_pod_sandbox(sandbox.id)  # idempotent
    assert await rt.list_pods() == []
    with pytest.raises(NotFoundError):
        await rt.start_container(sandbox.id, ContainerSpec(name="b", image="x"))


async def test_pull_failures_then_success() -> None:
    rt = FakeRuntime(clock=Clock(), scripts={
        "flaky:1": ContainerScript(pull_failures=2, pull_error="timeout"),
        "ghost:1": ContainerScript(pull_failures=-1),
    })
    for _ in range(2):
        with pytest.raises(ImagePullError, match='failed to pull image "flaky:1": timeout'):
            await rt.pull_image("flaky:1")
    assert (await rt.pull_image("flaky:1")).startswith("flaky@sha256:")
    for _ in range(5):
        with pytest.raises(ImagePullError):
            await rt.pull_image("ghost:1")
    assert (await rt.pull_image("registry.local:5000/team/app:2")).startswith(
        "registry.local:5000/team/app@sha256:"
    )


async def test_bounds_and_ip_reuse() -> None:
    rt = FakeRuntime(clock=Clock(), max_sandboxes=2, max_containers=1)
    first = await rt.run_pod_sandbox(_config("a"))
    second = await rt.run_pod_sandbox(_config("b"))
    with pytest.raises(CapacityError):
        await rt.run_pod_sandbox(_config("c"))
    await rt.start_container(first.id, ContainerSpec(name="x", image="x"))
    with pytest.raises(CapacityError):
        await rt.start_container(second.id, ContainerSpec(name="y", image="y"))
    await rt.remove_pod_sandbox(first.id)
    third = await rt.run_pod_sandbox(_config("c"))
    assert third.ip == first.ip == "10.88.0.2"
    assert second.ip == "10.88.0.3"
    host = FakeRuntime(clock=Clock(), host_ip="192.168.1.10")
    assert (await host.run_pod_sandbox(_config(host_network=True))).ip == "192.168.1.10"


async def test_unhealthy_runtime_and_uid_filter() -> None:
    rt = FakeRuntime(clock=Clock())
    await rt.run_pod_sandbox(_config("a"))
    await rt.run_pod_sandbox(_config("b"))
    assert [p.uid for p in await rt.list_pods("b")] == ["b"]
    rt.healthy = False
    with pytest.raises(RuntimeUnavailableError):
        await rt.status()
    with pytest.raises(RuntimeUnavailableError):
        await rt.list_pods()
    assert str(await rt.version()) == "fake://0.1.0"


async def test_reboot_exits_everything() -> None:
    rt = FakeRuntime(clock=Clock())
    sandbox = await rt.run_pod_sandbox(_config())
    await rt.start_container(sandbox.id, ContainerSpec(name="a", image="x"))
    rt.reboot()
    [pod] = await rt.list_pods()
    assert pod.state is SandboxState.NOT_READY
    assert (pod.containers[0].state, pod.containers[0].exit_code) == (ContainerState.EXITED, 137)
