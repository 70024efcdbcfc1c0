"""CRIRuntime's streaming and stats calls against a fake CRI server: the requests sent, the
URLs checked, and CRI's stats messages turned into records."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from pykubeedge.edge.edged.cri import CRIRuntime
from pykubeedge.edge.edged.cri import api_pb2 as api
from pykubeedge.edge.edged.cri.stats import container_stats, sandbox_stats
from pykubeedge.edge.edged.runtime import ContainerRuntimeError, NotFoundError
from tests.unit.edge.edged.cri.fakecri import FakeCRI, serve_fake_cri

NS = 1_000_000_000
LABELS = {"io.kubernetes.pod.name": "web", "io.kubernetes.pod.namespace": "default",
          "io.kubernetes.pod.uid": "u1", "io.kubernetes.container.name": "c"}


def cpu(at: int, used: int) -> api.CpuUsage:
    return api.CpuUsage(timestamp=at, usage_core_nano_seconds=api.UInt64Value(value=used),
                        usage_nano_cores=api.UInt64Value(value=999))


def memory(at: int, working: int) -> api.MemoryUsage:
    return api.MemoryUsage(timestamp=at, working_set_bytes=api.UInt64Value(value=working),
                           usage_bytes=api.UInt64Value(value=working * 2),
                           rss_bytes=api.UInt64Value(value=working // 2))


class StreamingCRI(FakeCRI):
    url = "http://127.0.0.1:4242/exec/tok"

    async def Exec(self, request: Any, context: Any) -> api.ExecResponse:
        await self._enter("Exec", request, context)
        return api.ExecResponse(url=self.url)

    async def Attach(self, request: Any, context: Any) -> api.AttachResponse:
        await self._enter("Attach", request, context)
        return api.AttachResponse(url="http://127.0.0.1:4242/attach/tok")

    async def PortForward(self, request: Any, context: Any) -> api.PortForwardResponse:
        await self._enter("PortForward", request, context)
        return api.PortForwardResponse(url="http://127.0.0.1:4242/portforward/tok")

    async def ListContainerStats(self, request: Any, context: Any) -> Any:
        await self._enter("ListContainerStats", request, context)
        ours = api.ContainerStats(
            attributes=api.ContainerAttributes(id="c1", metadata=api.ContainerMetadata(name="c"),
                                               labels=LABELS),
            cpu=cpu(5 * NS, 3 * NS), memory=memory(5 * NS, 1 << 20))
        foreign = api.ContainerStats(attributes=api.ContainerAttributes(id="x"))
        return api.ListContainerStatsResponse(stats=[ours, foreign])

    async def ListPodSandboxStats(self, request: Any, context: Any) -> Any:
        await self._enter("ListPodSandboxStats", request, context)
        return api.ListPodSandboxStatsResponse(stats=[api.PodSandboxStats(
            attributes=api.PodSandboxAttributes(
                id="s1", metadata=api.PodSandboxMetadata(name="web", namespace="default",
                                                         uid="u1")),
            linux=api.LinuxPodSandboxStats(cpu=cpu(6 * NS, 4 * NS), memory=memory(6 * NS, 2))),
        ])


async def test_exec_attach_and_port_forward_send_kubelets_options() -> None:
    async with serve_fake_cri(StreamingCRI()) as (fake, endpoint), CRIRuntime(endpoint) as rt:
        url = await rt.exec("c1", ["sh", "-c", "ls"], tty=True, stdin=True, stdout=True,
                            stderr=False)
        assert url == "http://127.0.0.1:4242/exec/tok"
        [req] = fake.calls("Exec")
        assert (list(req.cmd), req.tty, req.stdin, req.stdout, req.stderr) == (
            ["sh", "-c", "ls"], True, True, True, False)
        assert (await rt.attach("c1", tty=False, stdin=False, stdout=True, stderr=True)
                ).endswith("/attach/tok")
        assert (await rt.port_forward("s1", [80, 8080])).endswith("/portforward/tok")
        assert list(fake.calls("PortForward")[0].port) == [80, 8080]


async def test_an_unusable_streaming_url_is_a_runtime_error() -> None:
    cri = StreamingCRI()
    cri.url = "/exec/relative"
    async with serve_fake_cri(cri) as (_, endpoint), CRIRuntime(endpoint) as rt:
        with pytest.raises(ContainerRuntimeError, match="unusable streaming URL"):
            await rt.exec("c1", ["ls"], tty=False, stdin=False, stdout=True, stderr=True)


async def test_a_failed_exec_names_the_call() -> None:
    cri = StreamingCRI()
    cri.fail["Exec"] = (grpc.StatusCode.NOT_FOUND, "container c1 not found")
    async with serve_fake_cri(cri) as (_, endpoint), CRIRuntime(endpoint) as rt:
        with pytest.raises(NotFoundError, match="CRI Exec: container c1 not found"):
            await rt.exec("c1", ["ls"], tty=False, stdin=False, stdout=True, stderr=True)


async def test_stats_become_records_and_foreign_containers_are_left_out() -> None:
    async with serve_fake_cri(StreamingCRI()) as (_, endpoint), CRIRuntime(endpoint) as rt:
        [stats] = await rt.list_container_stats()
        assert (stats.container_id, stats.name, stats.pod_name, stats.pod_namespace,
                stats.pod_uid) == ("c1", "c", "web", "default", "u1")
        assert stats.usage is not None
        assert (stats.usage.timestamp, stats.usage.cpu_core_nanoseconds,
                stats.usage.memory_working_set_bytes) == (5.0, 3 * NS, 1 << 20)
        [pod] = await rt.list_pod_sandbox_stats()
        assert (pod.sandbox_id, pod.pod_uid, pod.usage.cpu_core_nanoseconds) == (  # type: ignore[union-attr]
            "s1", "u1", 4 * NS)


def test_a_container_without_cpu_figures_has_no_usage() -> None:
    bare = api.ContainerStats(attributes=api.ContainerAttributes(id="c", labels=LABELS))
    assert container_stats(bare).usage is None
    network = api.NetworkUsage(
        default_interface=api.NetworkInterfaceUsage(name="eth0",
                                                    rx_bytes=api.UInt64Value(value=5)),
        interfaces=[api.NetworkInterfaceUsage(name="eth0", rx_bytes=api.UInt64Value(value=5)),
                    api.NetworkInterfaceUsage(name="eth1")])
    pod = sandbox_stats(api.PodSandboxStats(linux=api.LinuxPodSandboxStats(network=network)))
    assert [i.name for i in pod.interfaces] == ["eth0", "eth1"] and pod.default_interface == "eth0"
    assert pod.usage is None and pod.process_count is None
