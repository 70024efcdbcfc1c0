"""CRIRuntime against a fake CRI server: the requests it builds, how it reads replies, and
how failures become runtime errors."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from pykubeedge.core.errors import ConfigError
from pykubeedge.edge.edged.cri import api_pb2 as api
from pykubeedge.edge.edged.cri.remote import (
    CRINotServedError,
    CRIRuntime,
    parse_endpoint,
    sandbox_hostname,
)
from pykubeedge.edge.edged.runtime import (
    AuthConfig,
    ContainerRuntimeError,
    ContainerSpec,
    ContainerState,
    ImagePullError,
    Mount,
    NotFoundError,
    RuntimeUnavailableError,
    SandboxConfig,
    SandboxState,
)
from tests.unit.edge.edged.cri.fakecri import FakeCRI, serve_fake_cri

UID = "3f1c7a52-0000-4000-8000-000000000001"


@pytest.fixture
async def cri(tmp_path: Path) -> AsyncIterator[tuple[FakeCRI, CRIRuntime]]:
    async with serve_fake_cri() as (fake, endpoint):
        runtime = CRIRuntime(endpoint, pods_dir=tmp_path / "pods", pod_logs_dir=tmp_path / "logs",
                             timeout=5, query_timeout=5, host_ip=lambda: "192.168.1.10")
        yield fake, runtime
        await runtime.close()


def sandbox_config(**changes: object) -> SandboxConfig:
    base: dict[str, object] = {
        "uid": UID, "name": "web", "namespace": "ns1", "hostname": "web",
        "labels": {"app": "web"},
        "volumes": {"cfg": {"key": b"v1\n", "sub/dir/f": b"deep"}, "empty-cm": {}},
    }
    base.update(changes)
    return SandboxConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:1", "relative/sock", "npipe:////./p"])
def test_only_unix_socket_endpoints_are_accepted(endpoint: str) -> None:
    with pytest.raises(ConfigError, match="not a unix socket"):
        parse_endpoint(endpoint)


def test_plain_socket_paths_are_accepted() -> None:
    assert parse_endpoint("/run/k3s.sock") == ("unix:///run/k3s.sock", "/run/k3s.sock")


def test_hostname_empty_with_host_network_and_cut_to_63_otherwise() -> None:
    assert sandbox_hostname(sandbox_config(host_network=True)) == ""
    long = "a" * 62 + "-b" * 10
    assert sandbox_hostname(sandbox_config(hostname=long)) == "a" * 62


async def test_host_network_sandbox_request_and_status(
        cri: tuple[FakeCRI, CRIRuntime], tmp_path: Path) -> None:
    fake, runtime = cri
    sandbox = await runtime.run_pod_sandbox(sandbox_config(host_network=True, attempt=2))

    [request] = fake.calls("RunPodSandbox")
    config = request.config
    assert config.hostname == ""
    assert (config.metadata.name, config.metadata.uid, config.metadata.namespace,
            config.metadata.attempt) == ("web", UID, "ns1", 2)
    assert config.log_directory == str(tmp_path / "logs" / f"ns1_web_{UID}")
    assert dict(config.labels) == {"app": "web", "io.kubernetes.pod.name": "web",
                                   "io.kubernetes.pod.namespace": "ns1",
                                   "io.kubernetes.pod.uid": UID}
    options = config.linux.security_context.namespace_options
    assert (options.network, options.pid, options.ipc) == (api.NODE, api.CONTAINER, api.POD)
    assert sandbox.ip == "192.168.1.10"  # host network: the node's IP
    assert sandbox.state is SandboxState.READY
    assert sandbox.created_at == 1_700_000_000.0
    assert (sandbox.uid, sandbox.name, sandbox.namespace, sandbox.attempt) == (
        UID, "web", "ns1", 2)
    assert (tmp_path / "logs" / f"ns1_web_{UID}").is_dir()


async def test_pod_network_sandbox_gets_the_runtime_ip(cri: tuple[FakeCRI, CRIRuntime]) -> None:
    fake, runtime = cri
    sandbox = await runtime.run_pod_sandbox(sandbox_config())
    [request] = fake.calls("RunPodSandbox")
    assert request.config.hostname == "web"
    assert request.config.linux.security_context.namespace_options.network == api.POD
    assert sandbox.ip == "10.88.0.7"


async def test_volume_files_are_written_under_the_pod_directory(
        cri: tuple[FakeCRI, CRIRuntime], tmp_path: Path) -> None:
    _, runtime = cri
    await runtime.run_pod_sandbox(sandbox_config())
    volume = tmp_path / "pods" / UID / "volumes" / "pykubeedge.io~files" / "cfg"
    assert (volume / "key").read_bytes() == b"v1\n"
    assert (volume / "sub" / "dir" / "f").read_bytes() == b"deep"
    assert stat.S_IMODE((volume / "key").stat().st_mode) == 0o644
    assert (volume.parent / "empty-cm").is_dir()

    # a new sandbox rewrites them (a key removed from the ConfigMap disappears)
    await runtime.run_pod_sandbox(sandbox_config(volumes={"cfg": {"other": b"x"}}))
    assert sorted(p.name for p in volume.iterdir()) == ["other"]


@pytest.mark.parametrize(("volumes", "what"), [
    ({"cfg": {"../../escape": b"x"}}, "path in volume"),
    ({"cfg": {"/etc/passwd": b"x"}}, "path in volume"),
    ({"../up": {"k": b"x"}}, "volume name"),
])
async def test_volume_paths_cannot_escape_the_pod_directory(
        cri: tuple[FakeCRI, CRIRuntime], tmp_path: Path,
        volumes: dict[str, dict[str, bytes]], what: str) -> None:
    fake, runtime = cri
    with pytest.raises(ContainerRuntimeError, match=what):
        await runtime.run_pod_sandbox(sandbox_config(volumes=volumes))
    assert not fake.calls("RunPodSandbox")
    assert not (tmp_path / "escape").exists()
    assert not (tmp_path / "pods" / UID / "volumes" / "up").exists()


@pytest.mark.parametrize(("changes", "what"), [
    ({"uid": "../../etc"}, "pod UID"),
    ({"name": "a/../../b"}, "pod name"),
    ({"namespace": ".."}, "pod namespace"),
])
async def test_pod_names_cannot_be_paths(cri: tuple[FakeCRI, CRIRuntime],
                                         changes: dict[str, str], what: str) -> None:
    fake, runtime = cri
    with pytest.raises(ContainerRuntimeError, match=what):
        await runtime.run_pod_sandbox(sandbox_config(**changes))
    assert not fake.calls("RunPodSandbox")


async def test_container_request_mounts_logs_and_labels(
        cri: tuple[FakeCRI, CRIRuntime], tmp_path: Path) -> None:
    fake, runtime = cri
    sandbox = await runtime.run_pod_sandbox(sandbox_config(host_network=True))
    spec = ContainerSpec(
        name="app", image="busybox", command=("sh", "-c"), args=("echo $(A)",),
        env={"A": "1", "B": "two"}, working_dir="/work", attempt=2,
        mounts=(Mount("cfg", "/cfg", read_only=False), Mount("scratch", "/scratch"),
                Mount("scratch", "/data", sub_path="a/b")),
    )
    container_id = await runtime.start_container(sandbox.id, spec)

    [create] = fake.calls("CreateContainer")
    assert create.pod_sandbox_id == sandbox.id
    config = create.config
    assert (config.metadata.name, config.metadata.attempt) == ("app", 2)
    assert config.image.image == "busybox"
    assert list(config.command) == ["sh", "-c"]
    assert list(config.args) == ["echo $(A)"]
    assert config.working_dir == "/work"
    assert [(e.key, e.value) for e in config.envs] == [("A", "1"), ("B", "two")]
    assert config.log_path == "app/2.log"
    assert create.sandbox_config.log_directory == str(tmp_path / "logs" / f"ns1_web_{UID}")
    assert create.sandbox_config.hostname == ""
    assert config.labels["io.kubernetes.container.name"] == "app"
    assert config.labels["io.kubernetes.pod.uid"] == UID
    assert config.annotations["io.kubernetes.container.restartCount"] == "2"
    assert config.linux.security_context.namespace_options.network == api.NODE
    volumes = tmp_path / "pods" / UID / "volumes"
    mounts = [(m.container_path, m.host_path, m.readonly) for m in config.mounts]
    assert mounts == [
        ("/cfg", str(volumes / "pykubeedge.io~files" / "cfg"), True),  # files: always read-only
        ("/scratch", str(volumes / "kubernetes.io~empty-dir" / "scratch"), False),
        ("/data", str(volumes / "kubernetes.io~empty-dir" / "scratch" / "a" / "b"), False),
    ]
    assert (volumes / "kubernetes.io~empty-dir" / "scratch" / "a" / "b").is_dir()
    assert [r.container_id for r in fake.calls("StartContainer")] == [container_id]

    [pod] = await runtime.list_pods(UID)
    [container] = pod.containers
    assert container.id == container_id
    assert container.state is ContainerState.RUNNING
    assert container.image == "busybox"  # as the spec said, not the runtime's resolved name
    assert container.image_ref == "sha256:" + "ab" * 32
    assert (container.created_at, container.started_at) == (1_700_000_001.0, 1_700_000_002.0)


async def test_sub_path_cannot_escape_the_volume(cri: tuple[FakeCRI, CRIRuntime]) -> None:
    fake, runtime = cri
    sandbox = await runtime.run_pod_sandbox(sandbox_config())
    spec = ContainerSpec(name="app", image="busybox",
                         mounts=(Mount("scratch", "/x", sub_path="../../../etc"),))
    with pytest.raises(ContainerRuntimeError, match="subPath"):
        await runtime.start_container(sandbox.id, spec)
    assert not fake.calls("CreateContainer")


async def test_a_container_that_fails_to_start_is_removed(
        cri: tuple[FakeCRI, CRIRuntime]) -> None:
    fake, runtime = cri
    sandbox = await runtime.run_pod_sandbox(sandbox_config())
    fake.fail["StartContainer"] = (grpc.StatusCode.UNKNOWN,
                                   'exec: "nope": executable file not found in $PATH')
    with pytest.raises(ContainerRuntimeError, match="executable file not found"):
        await runtime.start_container(sandbox.id, ContainerSpec(name="app", image="busybox"))
    assert len(fake.calls("RemoveContainer")) == 1
    assert not fake.containers


async def test_start_in_a_missing_or_stopped_sandbox_fails(
        cri: tuple[FakeCRI, CRIRuntime]) -> None:
    _, runtime = cri
    with pytest.raises(NotFoundError):
        await runtime.start_container("f" * 64, ContainerSpec(name="app", image="busybox"))
    sandbox = await runtime.run_pod_sandbox(sandbox_config())
    await runtime.stop_pod_sandbox(sandbox.id)
    with pytest.raises(ContainerRuntimeError, match="not ready"):
        await runtime.start_container(sandbox.id, ContainerSpec(name="app", image="busybox"))


async def test_relist_asks_status_only_for_new_or_changed_containers(
        cri: tuple[FakeCRI, CRIRuntime]) -> None:
    fake, runtime = cri
    sandbox = await runtime.run_pod_sandbox(sandbox_config())
    container_id = await runtime.start_container(sandbox.id,
                                                 ContainerSpec(name="app", image="busybox"))
    await runtime.list_pods()
    before = len(fake.calls("ContainerStatus"))
    await runtime.list_pods()
    await runtime.list_pods()
    assert len(fake.calls("ContainerStatus")) == before  # running: nothing new to learn

    fake.exit(container_id, 3)
    [pod] = await runtime.list_pods()
    [container] = pod.containers
    assert container.state is ContainerState.EXITED
    assert (container.exit_code, container.reason) == (3, "Error")
    assert container.finished_at == 1_700_000_003.0
    assert len(fake.calls("ContainerStatus")) == before + 1


async def test_relist_filters_by_pod_uid_and_skips_foreign_sandboxes(
        cri: tuple[FakeCRI, CRIRuntime]) -> None:
    fake, runtime = cri
    mine = await runtime.run_pod_sandbox(sandbox_config())
    other = await runtime.run_pod_sandbox(sandbox_config(uid="other-uid", name="db"))
    fake.sandboxes["f" * 64] = api.PodSandboxStatus(  # made by someone else: no pod UID label
        id="f" * 64, metadata=api.PodSandboxMetadata(name="x", uid="u", namespace="n"))

    assert [p.id for p in await runtime.list_pods(UID)] == [mine.id]
    assert fake.calls("ListPodSandbox")[-1].filter.label_selector == {
        "io.kubernetes.pod.uid": UID}
    assert {p.id for p in await runtime.list_pods()} == {mine.id, other.id}


async def test_stop_and_remove_are_idempotent(cri: tuple[FakeCRI, CRIRuntime],
                                              tmp_path: Path) -> None:
    _, runtime = cri
    sandbox = await runtime.run_pod_sandbox(sandbox_config())
    container_id = await runtime.start_container(sandbox.id,
                                                 ContainerSpec(name="app", image="busybox"))
    for _ in range(2):
        await runtime.stop_container(container_id, 1.5)
        await runtime.remove_container(container_id)
    for _ in range(2):
        await runtime.stop_pod_sandbox(sandbox.id)
        await runtime.remove_pod_sandbox(sandbox.id)
    assert await runtime.list_pods() == []
    # the pod's last sandbox is gone: its volume files and logs too
    assert not (tmp_path / "pods" / UID).exists()
    assert not (tmp_path / "logs" / f"ns1_web_{UID}").exists()


async def test_stop_sends_whole_seconds_of_grace(cri: tuple[FakeCRI, CRIRuntime]) -> None:
    fake, runtime = cri
    sandbox = await runtime.run_pod_sandbox(sandbox_config())
    container_id = await runtime.start_container(sandbox.id,
                                                 ContainerSpec(name="app", image="busybox"))
    await runtime.stop_container(container_id, 1.2)
    assert fake.calls("StopContainer")[-1].timeout == 2


async def test_image_status_and_pull_with_credentials(cri: tuple[FakeCRI, CRIRuntime]) -> None:
    fake, runtime = cri
    fake.images["busybox"] = api.Image(id="sha256:" + "12" * 32)
    present = await runtime.image_status("busybox")
    assert present is not None and present.id == "sha256:" + "12" * 32
    assert await runtime.image_status("nginx:1.27") is None

    auth = AuthConfig("user", "secret")
    assert await runtime.pull_image("nginx:1.27", auth) == "sha256:" + "cd" * 32
    [request] = fake.calls("PullImage")
    assert request.image.image == "nginx:1.27"
    assert (request.auth.username, request.auth.password) == ("user", "secret")
    assert "nginx:1.27" in await runtime.image_names()


async def test_pull_failure_is_an_image_pull_error(cri: tuple[FakeCRI, CRIRuntime]) -> None:
    fake, runtime = cri
    fake.fail["PullImage"] = (grpc.StatusCode.UNKNOWN,
                              'failed to resolve reference "nope:1": dial tcp: connection refused')
    with pytest.raises(ImagePullError, match=r'rpc error: code = Unknown desc = failed to '
                                             r'resolve reference "nope:1".*connection refused'):
        await runtime.pull_image("nope:1")


async def test_version_and_ready_status(cri: tuple[FakeCRI, CRIRuntime]) -> None:
    fake, runtime = cri
    assert str(await runtime.version()) == "fakecri://9.9.9"
    assert fake.calls("Version")[0].version == "v1"
    await runtime.status()
    fake.network_ready = False
    with pytest.raises(RuntimeUnavailableError) as info:
        await runtime.status()
    assert str(info.value) == (
        "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady"
        " message:Network plugin returns error: cni plugin not initialized")


async def test_a_slow_runtime_hits_the_deadline(cri: tuple[FakeCRI, CRIRuntime]) -> None:
    fake, runtime = cri
    runtime.timeout = 0.2
    fake.delay["RunPodSandbox"] = 2.0
    with pytest.raises(ContainerRuntimeError, match=r"RunPodSandbox at unix://.*no answer "
                                                    r"within 0\.2s"):
        await runtime.run_pod_sandbox(sandbox_config())
    runtime.query_timeout = 0.2
    fake.delay["Version"] = 2.0
    with pytest.raises(RuntimeUnavailableError, match="no answer"):
        await runtime.version()


async def test_a_socket_without_cri_is_reported_as_such(cri: tuple[FakeCRI, CRIRuntime]) -> None:
    fake, runtime = cri
    fake.fail["Version"] = (grpc.StatusCode.UNIMPLEMENTED,
                            "unknown service runtime.v1.RuntimeService")
    with pytest.raises(CRINotServedError, match="cri plugin"):
        await runtime.version()


async def test_unreachable_socket_is_one_line_naming_the_endpoint(tmp_path: Path) -> None:
    endpoint = f"unix://{tmp_path}/missing.sock"
    async with CRIRuntime(endpoint, pods_dir=tmp_path, query_timeout=5) as runtime:
        for call in (runtime.version(), runtime.status(), runtime.list_pods()):
            with pytest.raises(RuntimeUnavailableError) as info:
                await call
            text = str(info.value)
            assert text.startswith(f"container runtime at {endpoint} is unreachable: ")
            assert "\n" not in text


async def test_sub_path_through_a_planted_symlink_is_refused(
        cri: tuple[FakeCRI, CRIRuntime]) -> None:
    """A container may put `ln -s / x` in its emptyDir: `subPath: x/etc` must not mount the
    host's /etc (kubelet's CVE-2017-1002101)."""
    _fake, runtime = cri
    config = sandbox_config()
    await runtime.run_pod_sandbox(config)
    runtime.host_mounts(config.uid, [Mount("scratch", "/data")])  # makes the emptyDir
    empty_dir = next(runtime.pods_dir.glob(f"{config.uid}/volumes/*/scratch"))
    (empty_dir / "x").symlink_to("/")
    with pytest.raises(ContainerRuntimeError, match="leaves the volume"):
        runtime.host_mounts(config.uid, [Mount("scratch", "/y", sub_path="x/etc")])
